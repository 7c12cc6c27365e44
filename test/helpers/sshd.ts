/**
 * A real OpenSSH sshd for the SFTP archive tests: its own config, host key,
 * user key and port in a temporary directory, listening on 127.0.0.1 only,
 * serving SFTP through internal-sftp. Each call starts its own daemon, so test
 * files can run side by side.
 *
 * When running as root it also creates a throw-away local account with a
 * random password for the password path, and removes it again in stop().
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freeLocalPort } from '../../src/db/embedded.js';

const SSHD = '/usr/sbin/sshd';
const SSH_KEYGEN = ['/usr/bin/ssh-keygen', '/bin/ssh-keygen'].find((path) => existsSync(path)) ?? 'ssh-keygen';

export interface SshdServer {
  port: number;
  /** `[127.0.0.1]:PORT ssh-ed25519 AAAA…`, a line for a known_hosts file. */
  hostKeyLine: string;
  /** Private key accepted for `user` (unencrypted, ed25519). */
  userKeyPath: string;
  /** The account the key logs in as: the user running the tests (root in CI). */
  user: string;
  /** A local account with a password, when the machine allows creating one. */
  passwordUser?: { name: string; password: string };
  /** The server's temporary directory; put files to serve anywhere below it. */
  root: string;
  /** Process ids of the sshd processes serving open connections (not the listener). */
  sessionPids(): number[];
  /** Sends a signal to every session process: cuts or freezes connections mid-transfer. */
  signalSessions(signal: NodeJS.Signals): number;
  stop(): Promise<void>;
}

/** Whether sshd and ssh-keygen are installed: the tests need a real server. */
export function sshdAvailable(): boolean {
  return existsSync(SSHD) && spawnSync(SSH_KEYGEN, ['-?'], { stdio: 'ignore' }).error === undefined;
}

export async function startSshd(): Promise<SshdServer> {
  const root = await mkdtemp(join(tmpdir(), 'rp-sshd-'));
  // Traversable by the password account, which reads the served files too.
  chmodSync(root, 0o755);
  let passwordUser: { name: string; password: string } | undefined;
  let daemon: ChildProcess | undefined;
  try {
    const hostKey = join(root, 'ssh_host_ed25519_key');
    const userKeyPath = join(root, 'id_ed25519');
    keygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'rp-test-host', '-f', hostKey]);
    keygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'rp-test-user', '-f', userKeyPath]);
    const authorizedKeys = join(root, 'authorized_keys');
    writeFileSync(authorizedKeys, readFileSync(`${userKeyPath}.pub`), { mode: 0o644 });

    if (isRoot()) {
      // Privilege separation directory; Debian creates it from systemd, which containers lack.
      mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
      passwordUser = createPasswordUser(root);
    }

    const logLines: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const port = await freeLocalPort();
      const config = writeConfig(root, port, hostKey, authorizedKeys);
      daemon = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
      daemon.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
        logLines.push(...chunk.split('\n').filter(Boolean));
        if (logLines.length > 200) logLines.splice(0, logLines.length - 200);
      });
      const exited = new Promise<number | null>((resolve) => daemon!.once('exit', (code) => resolve(code)));
      const ready = await Promise.race([waitForBanner(port, 10_000), exited.then(() => false)]);
      if (ready) {
        const pid = daemon.pid!;
        const hostKeyLine = `[127.0.0.1]:${port} ${readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ')}`;
        const running = daemon;
        const stopUser = passwordUser;
        return {
          port,
          hostKeyLine,
          userKeyPath,
          user: userInfo().username,
          ...(passwordUser ? { passwordUser } : {}),
          root,
          sessionPids: () => descendants(pid),
          signalSessions: (signal) => {
            let count = 0;
            for (const child of descendants(pid)) {
              try {
                process.kill(child, signal);
                count++;
              } catch {
                // already gone
              }
            }
            return count;
          },
          stop: async () => {
            for (const child of descendants(pid)) tryKill(child, 'SIGKILL');
            await terminate(running);
            if (stopUser) deleteUser(stopUser.name);
            await rm(root, { recursive: true, force: true });
          },
        };
      }
      daemon.kill('SIGKILL');
      // The port may have been taken between freeLocalPort() and sshd's bind: try another.
      if (attempt >= 3) throw new Error(`sshd did not start:\n${logLines.slice(-20).join('\n')}`);
    }
  } catch (error) {
    if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
    if (passwordUser) deleteUser(passwordUser.name);
    await rm(root, { recursive: true, force: true });
    throw error;
  }
}

function writeConfig(root: string, port: number, hostKey: string, authorizedKeys: string): string {
  const lines = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `PidFile ${join(root, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorizedKeys}`,
    // The temp dir is not owned the way StrictModes wants for a home directory.
    'StrictModes no',
    'PermitRootLogin yes',
    'PubkeyAuthentication yes',
    'PasswordAuthentication yes',
    'KbdInteractiveAuthentication no',
    // sshd checks passwords against /etc/shadow itself; PAM stacks in containers
    // often fail on things like pam_loginuid.
    'UsePAM no',
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
    // Tests open many connections quickly, on purpose some with bad credentials.
    'MaxStartups 100',
    'MaxAuthTries 10',
  ];
  const path = join(root, 'sshd_config');
  // OpenSSH >= 9.8 penalises addresses whose sessions crash or fail to log in;
  // the tests kill sessions and fail logins on purpose, so switch it off where known.
  writeFileSync(path, [...lines, 'PerSourcePenalties no'].join('\n') + '\n');
  if (spawnSync(SSHD, ['-t', '-f', path], { stdio: 'ignore' }).status !== 0) {
    writeFileSync(path, lines.join('\n') + '\n');
  }
  return path;
}

function createPasswordUser(home: string): { name: string; password: string } | undefined {
  if (!existsSync('/usr/sbin/useradd') || !existsSync('/usr/sbin/chpasswd')) return undefined;
  const name = `rpsftp${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('base64url');
  // nologin is enough: internal-sftp runs inside sshd, no shell is started.
  const shell = existsSync('/usr/sbin/nologin') ? '/usr/sbin/nologin' : '/bin/sh';
  // Another test process may hold the passwd lock for a moment: retry.
  for (let attempt = 1; attempt <= 10; attempt++) {
    const added = spawnSync('/usr/sbin/useradd', ['-M', '-d', home, '-s', shell, name], { encoding: 'utf8' });
    if (added.status === 0) {
      const set = spawnSync('/usr/sbin/chpasswd', [], { input: `${name}:${password}\n`, encoding: 'utf8' });
      if (set.status === 0) return { name, password };
      deleteUser(name);
      return undefined;
    }
    spawnSync('sleep', ['0.3']);
  }
  return undefined;
}

function deleteUser(name: string): void {
  for (let attempt = 1; attempt <= 10; attempt++) {
    if (spawnSync('/usr/sbin/userdel', [name], { stdio: 'ignore' }).status === 0) return;
    spawnSync('sleep', ['0.3']);
  }
}

function keygen(args: string[]): void {
  const result = spawnSync(SSH_KEYGEN, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ssh-keygen ${args.join(' ')} failed: ${result.stderr}`);
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}


/** Ready means the daemon greets: "SSH-2.0-OpenSSH_…". */
async function waitForBanner(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const greeted = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port });
      const finish = (ok: boolean) => {
        socket.destroy();
        resolve(ok);
      };
      socket.setTimeout(1_000, () => finish(false));
      socket.once('data', (data) => finish(data.toString('latin1').startsWith('SSH-')));
      socket.once('error', () => finish(false));
    });
    if (greeted) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

/** Child processes (transitively) of a pid, from /proc: sshd forks one or two per connection. */
function descendants(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name (field 2) may contain spaces; fields after its ')' are fixed.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(entry), Number(fields[1]));
    } catch {
      // the process ended while we looked
    }
  }
  const result: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift()!;
    for (const [child, ppid] of parents) {
      if (ppid === parent) {
        result.push(child);
        queue.push(child);
      }
    }
  }
  return result;
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
  await exited;
  clearTimeout(timer);
}
