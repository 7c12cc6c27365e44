/**
 * The SFTP archive against a real OpenSSH sshd (test/helpers/sshd.ts): no
 * mocks of ssh, the failures are produced by killing, freezing or misconfiguring
 * the real thing. With CI=true a missing sshd fails these tests instead of
 * skipping them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ArchiveAuthError, ArchiveTransientError, MissingInputError } from '../../src/archives/archive.js';
import type { Archive, FetchRequest } from '../../src/archives/archive.js';
import { createSftpArchive } from '../../src/archives/sftp.js';
import type { SftpArchiveOptions } from '../../src/archives/sftp.js';
import { sshdAvailable, startSshd } from '../helpers/sshd.js';
import type { SshdServer } from '../helpers/sshd.js';

const MiB = 1024 * 1024;

describe.skipIf(!sshdAvailable() && !process.env.CI)('SFTP archive against a real sshd', () => {
  let sshd: SshdServer;
  let data: string;
  let work: string;
  let knownHosts: string;
  let emptyNetrc: string;
  const archives: Archive[] = [];
  const small = { name: 'run02091.mid', bytes: 8 * MiB, sha256: '' };
  const large = { name: 'run02092.mid', bytes: 64 * MiB, sha256: '' };

  beforeAll(async () => {
    sshd = await startSshd();
    data = join(sshd.root, 'data');
    await mkdir(data, { mode: 0o755 });
    small.sha256 = await writeRandomFile(join(data, small.name), small.bytes);
    large.sha256 = await writeRandomFile(join(data, large.name), large.bytes);
    for (let run = 1; run <= 4; run++) await writeRandomFile(join(data, `par${run}.mid`), 16 * MiB);
  });

  afterAll(async () => {
    await sshd?.stop();
  });

  beforeEach(async () => {
    work = await mkdtemp(join(tmpdir(), 'rp-sftp-test-'));
    knownHosts = join(work, 'known_hosts');
    await writeFile(knownHosts, `${sshd.hostKeyLine}\n`);
    emptyNetrc = join(work, 'no-netrc');
  });

  afterEach(async () => {
    // A test that froze sessions must not leave them frozen for the next one.
    sshd.signalSessions('SIGCONT');
    await Promise.all(archives.splice(0).map((archive) => archive.close()));
    await rm(work, { recursive: true, force: true });
  });

  /** An archive logging in as sshd.user with the generated key. */
  function keyArchive(overrides: Partial<SftpArchiveOptions> & { env?: Record<string, string | undefined> } = {}): Archive & { log: string[] } {
    const log: string[] = [];
    const archive = createSftpArchive({
      netrcPath: emptyNetrc,
      knownHostsPath: knownHosts,
      onLog: (line) => log.push(line),
      ...overrides,
      env: { HOME: work, RUN_PRODUCTION_SFTP_KEY: sshd.userKeyPath, ...overrides.env },
    });
    archives.push(archive);
    return Object.assign(archive, { log });
  }

  function url(name: string, user: string = sshd.user): URL {
    return new URL(`sftp://${user}@127.0.0.1:${sshd.port}${data}/${name}`);
  }

  function request(name: string, extra: Partial<FetchRequest> = {}, user?: string): FetchRequest {
    return {
      run: 2091,
      url: url(name, user),
      destination: join(work, `${name}.part`),
      signal: new AbortController().signal,
      ...extra,
    };
  }

  it('downloads a file with progress: callbacks seen, rate-limited, final bytes and content equal', async () => {
    const archive = keyArchive();
    const calls: Array<{ at: number; done: number; total: number | undefined }> = [];
    const started = Date.now();
    const result = await archive.fetch(request(small.name, { onProgress: (done, total) => calls.push({ at: Date.now(), done, total }) }));
    const elapsed = Date.now() - started;

    expect(result.bytes).toBe(small.bytes);
    expect(await sha256(join(work, `${small.name}.part`))).toBe(small.sha256);
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.at(-1)).toMatchObject({ done: small.bytes, total: small.bytes });
    for (let i = 1; i < calls.length; i++) expect(calls[i]!.done).toBeGreaterThanOrEqual(calls[i - 1]!.done);
    // "At most a few times a second": one every 250 ms, plus the first and the final one.
    expect(calls.length).toBeLessThanOrEqual(Math.ceil(elapsed / 250) + 2);
    await expect(archive.size(url(small.name), new AbortController().signal)).resolves.toBe(small.bytes);
  });

  it('streams a 64 MiB file with the right content', async () => {
    const archive = keyArchive();
    const destination = join(work, 'large.part');
    const result = await archive.fetch(request(large.name, { destination }));
    expect(result.bytes).toBe(large.bytes);
    expect((await stat(destination)).size).toBe(large.bytes);
    expect(await sha256(destination)).toBe(large.sha256);
  });

  it('reuses one connection for consecutive downloads', async () => {
    const archive = keyArchive();
    await archive.fetch(request(small.name, { destination: join(work, 'a') }));
    await archive.size(url(large.name), new AbortController().signal);
    await archive.fetch(request(small.name, { destination: join(work, 'b') }));
    expect(archive.log.filter((line) => line.includes('connected to'))).toHaveLength(1);
  });

  it('a connection killed mid-file: partial file removed, ArchiveTransientError, the next fetch reconnects and succeeds', async () => {
    const archive = keyArchive();
    const destination = join(work, 'killed.part');
    let killed = 0;
    const failure = await archive
      .fetch(
        request(large.name, {
          destination,
          onProgress: (done) => {
            // Kill the sshd processes serving this session as soon as data flows.
            if (killed === 0 && done > 0 && done < large.bytes) killed = sshd.signalSessions('SIGKILL');
          },
        }),
      )
      .catch((error: unknown) => error);

    expect(killed).toBeGreaterThan(0);
    expect(failure).toBeInstanceOf(ArchiveTransientError);
    expect(existsSync(destination)).toBe(false);

    const result = await archive.fetch(request(large.name, { destination }));
    expect(result.bytes).toBe(large.bytes);
    expect(await sha256(destination)).toBe(large.sha256);
    expect(archive.log.filter((line) => line.includes('connected to'))).toHaveLength(2);
  });

  it('an idle connection the server dropped is replaced without an error', async () => {
    const archive = keyArchive();
    await archive.fetch(request(small.name, { destination: join(work, 'first') }));
    expect(sshd.signalSessions('SIGKILL')).toBeGreaterThan(0);
    await waitFor(() => archive.log.some((line) => line.includes('connection closed')));
    await expect(archive.fetch(request(small.name, { destination: join(work, 'second') }))).resolves.toEqual({ bytes: small.bytes });
    expect(archive.log.filter((line) => line.includes('connected to'))).toHaveLength(2);
  });

  it('retries connecting with backoff, then gives up with ArchiveTransientError', async () => {
    const archive = keyArchive();
    const closedPort = await unusedPort();
    const started = Date.now();
    const failure = await archive
      .fetch({ ...request(small.name), url: new URL(`sftp://${sshd.user}@127.0.0.1:${closedPort}${data}/${small.name}`) })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ArchiveTransientError);
    expect(archive.log.filter((line) => /attempt \d of 4/.test(line))).toHaveLength(3);
    // 0.5 + 1 + 2 s of backoff between the four attempts.
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_400);
  });

  it('close() ends a download in flight and every connection', async () => {
    const archive = keyArchive({ parallel: 2 });
    await archive.fetch(request(small.name, { destination: join(work, 'warm') }));
    const destination = join(work, 'closing.part');
    let closing: Promise<void> | undefined;
    const failure = await archive
      .fetch(
        request(large.name, {
          destination,
          onProgress: (done) => {
            if (!closing && done > 0) closing = archive.close();
          },
        }),
      )
      .catch((error: unknown) => error);
    await closing;
    expect(failure).toBeInstanceOf(ArchiveTransientError);
    expect(existsSync(destination)).toBe(false);
    await waitFor(() => sshd.sessionPids().length === 0);
    await expect(archive.fetch(request(small.name))).rejects.toThrow(/closed/);
  });

  it('a stalled transfer (server frozen) aborts after the timeout with ArchiveTransientError', async () => {
    const archive = keyArchive({ operationTimeoutSeconds: 2 });
    const destination = join(work, 'stalled.part');
    let frozen = 0;
    const started = Date.now();
    const failure = await archive
      .fetch(
        request(large.name, {
          destination,
          onProgress: (done) => {
            if (frozen === 0 && done > 0) frozen = sshd.signalSessions('SIGSTOP');
          },
        }),
      )
      .catch((error: unknown) => error);
    expect(frozen).toBeGreaterThan(0);
    expect(failure).toBeInstanceOf(ArchiveTransientError);
    expect((failure as Error).message).toMatch(/stalled/);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(existsSync(destination)).toBe(false);
    sshd.signalSessions('SIGKILL'); // the frozen session is useless now
    // The stalled connection is not reused: a new download works.
    await expect(archive.fetch(request(small.name))).resolves.toEqual({ bytes: small.bytes });
  });

  it('an abort stops the transfer promptly and removes the partial file', async () => {
    const archive = keyArchive();
    const controller = new AbortController();
    const destination = join(work, 'aborted.part');
    let abortedAt = 0;
    const failure = await archive
      .fetch(
        request(large.name, {
          destination,
          signal: controller.signal,
          onProgress: (done) => {
            if (abortedAt === 0 && done > 0) {
              abortedAt = Date.now();
              controller.abort(new Error('session ending'));
            }
          },
        }),
      )
      .catch((error: unknown) => error);
    expect(abortedAt).toBeGreaterThan(0);
    expect(Date.now() - abortedAt).toBeLessThan(3_000);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toMatch(/aborted/);
    expect(existsSync(destination)).toBe(false);
    await expect(archive.fetch(request(small.name))).resolves.toEqual({ bytes: small.bytes });
  });

  it('a missing file is a MissingInputError naming host and path, and leaves nothing behind', async () => {
    const archive = keyArchive();
    const destination = join(work, 'missing.part');
    const failure = await archive.fetch(request('run09999.mid', { destination })).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(MissingInputError);
    expect((failure as Error).message).toContain('127.0.0.1');
    expect((failure as Error).message).toContain(`${data}/run09999.mid`);
    expect(existsSync(destination)).toBe(false);
    await expect(archive.size(url('run09999.mid'), new AbortController().signal)).rejects.toBeInstanceOf(MissingInputError);
    // The server answered cleanly: the same connection goes on serving.
    await archive.fetch(request(small.name));
    expect(archive.log.filter((line) => line.includes('connected to'))).toHaveLength(1);
  });

  it('limits parallel downloads to `parallel` connections', async () => {
    const archive = keyArchive({ parallel: 2 });
    let active = 0;
    let maxActive = 0;
    let maxServerProcesses = 0;
    const fetches = [1, 2, 3, 4].map(async (run) => {
      let counted = false;
      try {
        return await archive.fetch({
          ...request(`par${run}.mid`),
          run,
          onProgress: () => {
            if (!counted) {
              counted = true;
              active++;
              maxActive = Math.max(maxActive, active);
            }
            maxServerProcesses = Math.max(maxServerProcesses, sshd.sessionPids().length);
          },
        });
      } finally {
        if (counted) active--;
      }
    });
    const results = await Promise.all(fetches);
    expect(results.map((result) => result.bytes)).toEqual([16 * MiB, 16 * MiB, 16 * MiB, 16 * MiB]);
    expect(maxActive).toBe(2);
    expect(archive.log.filter((line) => line.includes('connected to'))).toHaveLength(2);
    // OpenSSH runs up to two processes per connection (monitor and session).
    expect(maxServerProcesses).toBeLessThanOrEqual(4);
  });

  it('an unknown host key is an ArchiveAuthError with the ssh-keyscan advice; STRICT_HOST_KEY=no connects anyway', async () => {
    await writeFile(knownHosts, '');
    const strict = keyArchive();
    const failure = await strict.fetch(request(small.name)).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ArchiveAuthError);
    expect((failure as Error).message).toContain(`ssh-keyscan -p ${sshd.port} 127.0.0.1`);
    expect((failure as Error).message).toContain('SHA256:');

    const relaxed = keyArchive({ env: { RUN_PRODUCTION_SFTP_STRICT_HOST_KEY: 'no' } });
    await expect(relaxed.fetch(request(small.name))).resolves.toEqual({ bytes: small.bytes });
    expect(relaxed.log.some((line) => line.includes('WARNING') && line.includes('unknown host key'))).toBe(true);
  });

  it('a changed host key is an ArchiveAuthError that says so', async () => {
    const otherKey = join(work, 'other_host_key');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey]);
    const otherPub = (await readFile(`${otherKey}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    await writeFile(knownHosts, `[127.0.0.1]:${sshd.port} ${otherPub}\n`);
    const failure = await keyArchive().fetch(request(small.name)).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ArchiveAuthError);
    expect((failure as Error).message).toMatch(/CHANGED/);
    expect((failure as Error).message).toContain(`ssh-keygen -R '[127.0.0.1]:${sshd.port}'`);
  });

  it('logs in through a real ssh-agent holding the key', async () => {
    const socket = join(work, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      await waitFor(() => existsSync(socket));
      const added = spawnSync('ssh-add', [sshd.userKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: socket }, encoding: 'utf8' });
      expect(added.status, added.stderr).toBe(0);
      const archive = createSftpArchive({ env: { HOME: work, SSH_AUTH_SOCK: socket }, netrcPath: emptyNetrc, knownHostsPath: knownHosts });
      archives.push(archive);
      await expect(archive.fetch(request(small.name))).resolves.toEqual({ bytes: small.bytes });
    } finally {
      agent.kill();
    }
  });

  it('a loose .netrc (mode 0644) is refused as an ArchiveAuthError with the chmod advice', async () => {
    const netrc = join(work, '.netrc');
    await writeFile(netrc, `machine 127.0.0.1 login ${sshd.user} password hunter2\n`);
    await chmod(netrc, 0o644);
    const failure = await keyArchive({ netrcPath: netrc }).fetch(request(small.name)).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ArchiveAuthError);
    expect((failure as Error).message).toContain(`chmod 600 ${netrc}`);
    expect((failure as Error).message).not.toContain('hunter2');
  });

  it('an unreadable known_hosts is an ArchiveAuthError naming it, at once and without a retry', async () => {
    const unreadable = join(work, 'known_hosts.d');
    await mkdir(unreadable); // reading a directory fails with EISDIR
    const archive = keyArchive({ knownHostsPath: unreadable });
    const failure = await archive.fetch(request(small.name)).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ArchiveAuthError);
    expect((failure as Error).message).toContain(`cannot read ${unreadable}`);
    expect(archive.log.some((line) => line.includes('attempt 2'))).toBe(false);
    expect(existsSync(join(work, `${small.name}.part`))).toBe(false);
  });

  it('no credentials at all is an ArchiveAuthError that says how to configure them', async () => {
    const archive = createSftpArchive({ env: { HOME: work }, netrcPath: emptyNetrc, knownHostsPath: knownHosts });
    archives.push(archive);
    const failure = await archive.fetch(request(small.name)).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(ArchiveAuthError);
    expect((failure as Error).message).toMatch(/\.netrc/);
  });

  describe('password login', () => {
    const reason = 'needs root to create a local account with a password (useradd/chpasswd)';
    it.skipIf(!canCreateUsers() && !process.env.CI)(`works from .netrc, and a wrong password is an ArchiveAuthError without the password (${reason})`, async () => {
      const account = sshd.passwordUser;
      expect(account, 'startSshd() could not create the password account').toBeDefined();
      const { name, password } = account!;
      const netrc = join(work, '.netrc');
      await writeFile(netrc, `machine 127.0.0.1\n  login ${name}\n  password ${password}\n`, { mode: 0o600 });
      const good = createSftpArchive({ env: { HOME: work }, netrcPath: netrc, knownHostsPath: knownHosts });
      archives.push(good);
      // The user comes from .netrc here: the URL has none.
      const noUser = new URL(`sftp://127.0.0.1:${sshd.port}${data}/${small.name}`);
      await expect(good.fetch({ ...request(small.name), url: noUser })).resolves.toEqual({ bytes: small.bytes });

      const wrong = `wrong-${password}-x`;
      await writeFile(netrc, `machine 127.0.0.1 login ${name} password ${wrong}\n`, { mode: 0o600 });
      const bad = createSftpArchive({ env: { HOME: work }, netrcPath: netrc, knownHostsPath: knownHosts });
      archives.push(bad);
      const failure = await bad.fetch(request(small.name, {}, name)).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ArchiveAuthError);
      expect((failure as Error).message).not.toContain(wrong);
      expect((failure as Error).message).not.toContain(password);
      expect((failure as Error).message).toContain(netrc);

      // The same through the environment variables.
      const fromEnv = createSftpArchive({
        env: { HOME: work, RUN_PRODUCTION_SFTP_USER: name, RUN_PRODUCTION_SFTP_PASSWORD: wrong },
        netrcPath: emptyNetrc,
        knownHostsPath: knownHosts,
      });
      archives.push(fromEnv);
      const envFailure = await fromEnv.fetch({ ...request(small.name), url: noUser }).catch((error: unknown) => error);
      expect(envFailure).toBeInstanceOf(ArchiveAuthError);
      expect(JSON.stringify({ message: (envFailure as Error).message, stack: (envFailure as Error).stack })).not.toContain(wrong);
    });
  });
});

function canCreateUsers(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0 && existsSync('/usr/sbin/useradd') && existsSync('/usr/sbin/chpasswd');
}

function unusedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function writeRandomFile(path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  const out = createWriteStream(path, { mode: 0o644 });
  for (let written = 0; written < bytes; written += MiB) {
    const chunk = randomBytes(Math.min(MiB, bytes - written));
    hash.update(chunk);
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
  return hash.digest('hex');
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
