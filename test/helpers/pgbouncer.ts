/**
 * A real PgBouncer (the Debian package `pgbouncer`) in front of the test run's
 * PostgreSQL server, in transaction pooling mode with a small pool: the setup
 * that teams put between many sessions and a shared database, and the one in
 * which anything that needs the same server connection across transactions
 * (session advisory locks, LISTEN, SET, named prepared statements) breaks.
 *
 * Each call starts its own daemon on a free 127.0.0.1 port with its own files
 * in a temporary directory, so test files can run side by side. PgBouncer
 * refuses to run as root: as root it runs as the `postgres` user (who owns the
 * directory), as anybody else as that user.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import pg from 'pg';
import { freeLocalPort } from '../../src/db/embedded.js';

const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer', '/usr/local/sbin/pgbouncer'];

function pgbouncerBinary(): string | undefined {
  const fromPath = (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, 'pgbouncer'));
  return [...CANDIDATES, ...fromPath].find((path) => existsSync(path));
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** Why the PgBouncer tests cannot run here, or null when they can. */
export function pgbouncerMissing(): string | null {
  if (!pgbouncerBinary()) return 'pgbouncer is not installed (Debian package `pgbouncer`; .ci/run installs it)';
  if (isRoot() && userIds('postgres') === undefined) return 'running as root, and there is no `postgres` user to run pgbouncer as (it refuses root)';
  return null;
}

export interface PgBouncerServer {
  port: number;
  /** Server connections per (database, user): default_pool_size. */
  poolSize: number;
  /** The same database URL (user, password, database), through the pooler. */
  urlFor(databaseUrl: string): string;
  /** A command on PgBouncer's admin console (SHOW POOLS, SHOW CONFIG, …); its rows. */
  admin<T extends Record<string, unknown> = Record<string, unknown>>(command: string): Promise<T[]>;
  /** PgBouncer's own log so far, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** A URL of the PostgreSQL server to pool (any database on it; user and password are taken from it). */
  serverUrl: string;
  poolSize?: number;
  maxClientConn?: number;
}

export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncerServer> {
  const binary = pgbouncerBinary();
  const missing = pgbouncerMissing();
  if (!binary || missing) throw new Error(`cannot start PgBouncer: ${missing}`);
  const server = new URL(options.serverUrl);
  const user = decodeURIComponent(server.username) || 'postgres';
  const password = decodeURIComponent(server.password);
  const poolSize = options.poolSize ?? 4;
  const runAs = isRoot() ? userIds('postgres') : undefined;

  const root = await mkdtemp(join(tmpdir(), 'rp-pgbouncer-'));
  let daemon: ChildProcess | undefined;
  try {
    if (runAs) chownSync(root, runAs.uid, runAs.gid);
    // PgBouncer answers the client's SCRAM (or md5) exchange itself from a plain password
    // here, and logs in to the server with it whatever method the server asks for.
    const userlist = join(root, 'userlist.txt');
    writeFileSync(userlist, `${quote(user)} ${quote(password)}\n`, { mode: 0o600 });
    if (runAs) chownSync(userlist, runAs.uid, runAs.gid);

    const logLines: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const port = await freeLocalPort();
      const config = join(root, 'pgbouncer.ini');
      writeFileSync(config, renderConfig({ server, port, userlist, user, poolSize, maxClientConn: options.maxClientConn ?? 1000 }), { mode: 0o600 });
      if (runAs) chownSync(config, runAs.uid, runAs.gid);
      chmodSync(root, 0o700);
      // In the foreground (no -d), so we hold the process and its log comes on stderr.
      daemon = spawn(binary, [config], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], ...(runAs ?? {}) });
      const collect = (chunk: string) => {
        logLines.push(...chunk.split('\n').filter(Boolean));
        if (logLines.length > 400) logLines.splice(0, logLines.length - 400);
      };
      daemon.stdout!.setEncoding('utf8').on('data', collect);
      daemon.stderr!.setEncoding('utf8').on('data', collect);
      const exited = new Promise<false>((resolve) => daemon!.once('exit', () => resolve(false)));
      const admin = adminUrl(port, user, password);
      const ready = await Promise.race([answers(admin, 15_000), exited]);
      if (ready) {
        const running = daemon;
        return {
          port,
          poolSize,
          urlFor(databaseUrl) {
            const url = new URL(databaseUrl);
            url.hostname = '127.0.0.1';
            url.port = String(port);
            return url.toString();
          },
          admin: (command) => adminQuery(admin, command),
          log: () => logLines.join('\n'),
          async stop() {
            await terminate(running);
            await rm(root, { recursive: true, force: true });
          },
        };
      }
      if (daemon.exitCode === null) daemon.kill('SIGKILL');
      // The port may have been taken between freeLocalPort() and PgBouncer's bind: try another.
      if (attempt >= 3) throw new Error(`PgBouncer did not start:\n${logLines.slice(-30).join('\n')}`);
    }
  } catch (error) {
    if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
    throw error;
  }
}

function renderConfig(c: { server: URL; port: number; userlist: string; user: string; poolSize: number; maxClientConn: number }): string {
  const host = c.server.hostname === 'localhost' ? '127.0.0.1' : c.server.hostname;
  return [
    '; Generated by test/helpers/pgbouncer.ts: a throw-away pooler for one test file.',
    '[databases]',
    // Any database name the client asks for, on the test server: each test file has its own.
    `* = host=${host} port=${c.server.port || 5432}`,
    '',
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${c.port}`,
    // No Unix socket: it would go to /tmp or /var/run/postgresql, shared with others.
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    `auth_file = ${c.userlist}`,
    `admin_users = ${c.user}`,
    `stats_users = ${c.user}`,
    // The point of the exercise: a server connection is a client's only for one transaction.
    'pool_mode = transaction',
    `default_pool_size = ${c.poolSize}`,
    'min_pool_size = 0',
    'reserve_pool_size = 0',
    `max_client_conn = ${c.maxClientConn}`,
    'server_tls_sslmode = disable',
    // Fail a test rather than wait for ever when every server connection is stuck.
    'query_wait_timeout = 120',
    'ignore_startup_parameters = extra_float_digits',
    'log_connections = 0',
    'log_disconnections = 0',
    '',
  ].join('\n');
}

/** userlist.txt quoting: in double quotes, a double quote doubled. */
function quote(text: string): string {
  return `"${text.replace(/"/g, '""')}"`;
}

function userIds(name: string): { uid: number; gid: number } | undefined {
  const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function adminUrl(port: number, user: string, password: string): string {
  return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/pgbouncer`;
}

/** The admin console speaks only the simple query protocol: a query without parameters. */
async function adminQuery<T>(url: string, command: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query(command)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Ready means the admin console answers our user with our password. */
async function answers(url: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await adminQuery(url, 'SHOW VERSION').then(() => true, () => false)) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}


async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // SIGTERM: shut down now, closing clients (SIGINT would wait for them to leave).
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}
