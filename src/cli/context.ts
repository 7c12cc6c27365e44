import { closeSync, existsSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { resolve } from 'node:path';
import dotenv from 'dotenv';
import { configPath, loadConfig, type LoadedConfig } from '../config/config.js';
import { connectionStringProblem, describeUrl, hasPassword, openDatabase, type DatabaseHandle } from '../db/connection.js';
import { registerDotenvNames } from '../grids/batch-script.js';
import { ensureEmbeddedServer } from '../db/embedded.js';
import { migrate } from '../db/migrate.js';
import type { Actor } from '../state/transition.js';
import { ExpectedError } from '../core/errors.js';
import { requireCommandRole } from './roles.js';

/** Options every command accepts (commander's optsWithGlobals). */
export interface GlobalOptions {
  database?: string;
  config?: string;
}

export interface Context {
  handle: DatabaseHandle;
  /** "embedded" or host:port/database, never a password. */
  databaseLabel: string;
  embedded: boolean;
  url: string;
  user: string;
  host: string;
  actor: Actor;
  close(): Promise<void>;
}

/**
 * The Unix account, as information beside the database login (which is the identity, see
 * sql/009_roles.sql): from the process's real uid, not $USER, which anyone can set.
 */
export const currentUser = (): string => userInfo().username;

/** The config file if it exists (commands that need it call requireConfig). */
export async function optionalConfig(options: GlobalOptions): Promise<LoadedConfig | null> {
  const file = configPath(options.config);
  if (!options.config && !process.env.RUN_PRODUCTION_CONFIG && !existsSync(file)) return null;
  return loadConfig(file);
}

export async function requireConfig(options: GlobalOptions): Promise<LoadedConfig> {
  return loadConfig(configPath(options.config));
}

/**
 * Loads `.env` of the current directory into process.env (variables already set win), the way
 * dotenv does, but refuses a file that group or others can read or write, as a loose ~/.netrc
 * is refused: it holds DATABASE_URL and RUN_PRODUCTION_SFTP_PASSWORD in clear text. The names
 * it defines are registered as secrets: no job gets them (src/grids/batch-script.ts). Returns
 * the names; none when there is no .env.
 */
export function loadDotenv(path = resolve('.env')): string[] {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    throw new ExpectedError(`cannot read ${path}: ${code === 'EACCES' ? 'permission denied (is it another user\'s?)' : (error as Error).message}`, 1);
  }
  try {
    // Mode and content of the same open file: nothing can change it between the check and the read.
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new ExpectedError(`cannot read ${path}: not a regular file`, 1);
    if ((stat.mode & 0o077) !== 0) {
      const shown = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new ExpectedError(
        `refusing to use ${path}: it holds secrets (DATABASE_URL, RUN_PRODUCTION_SFTP_PASSWORD) but group or others have access ` +
          `(mode ${shown}); protect it with: chmod 600 ${path}`,
        1,
      );
    }
    const parsed = dotenv.parse(readFileSync(fd));
    for (const [name, value] of Object.entries(parsed)) if (!Object.hasOwn(process.env, name)) process.env[name] = value;
    const names = Object.keys(parsed);
    registerDotenvNames(names);
    return names;
  } finally {
    closeSync(fd);
  }
}

/** The refusal of a password on the command line (--database). */
const ARGV_PASSWORD =
  '--database: refusing a password on the command line, where every user of this host can read it (ps, /proc). ' +
  'Give --database postgres://USER@HOST:PORT/DATABASE with the password in ~/.pgpass (chmod 600) or PGPASSWORD, ' +
  'or put the whole URL in DATABASE_URL in .env (chmod 600).';

/**
 * Which database: --database > DATABASE_URL (environment, or .env) > the config
 * file's "database" > the embedded server, started on first use. A connection string
 * the driver cannot use (key=value, not a postgres:// URL) is refused naming its
 * setting, never showing it; so is --database with a password.
 */
export async function resolveDatabaseUrl(options: GlobalOptions): Promise<{ url: string; embedded: boolean }> {
  if (options.database) {
    if (hasPassword(options.database)) throw new ExpectedError(connectionStringProblem(options.database, '--database') ?? ARGV_PASSWORD, 64);
    return { url: checked(options.database, '--database'), embedded: false };
  }
  if (process.env.DATABASE_URL) return { url: checked(process.env.DATABASE_URL, 'DATABASE_URL'), embedded: false };
  const config = await optionalConfig(options).catch(() => null);
  if (config?.database) return { url: checked(config.database, `${config.file}: "database"`), embedded: false };
  return { url: await ensureEmbeddedServer(), embedded: true };
}

function checked(url: string, where: string): string {
  const problem = connectionStringProblem(url, where);
  if (problem !== null) throw new ExpectedError(problem, 64);
  return url;
}

function reachError(url: string, error: unknown): ExpectedError {
  const { host, port, label: where } = describeUrl(url);
  const e = error as { code?: string; message?: string };
  const reason =
    e.code === 'ECONNREFUSED'
      ? 'connection refused'
      : e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN'
        ? `unknown host ${host}`
        : /timeout/i.test(e.message ?? '')
          ? 'no answer within 8 s'
          : e.code === '28P01'
            ? 'password authentication failed'
            : e.code === '3D000'
              ? 'that database does not exist'
              : (e.message ?? String(error)).split('\n')[0];
  return new ExpectedError(
    `Cannot reach the database at ${host}:${port} (${where}): ${reason}. Check --database / DATABASE_URL, or that the server is running.`,
    2,
  );
}

/** Opens the database, checks it answers, and applies pending migrations. */
export async function openContext(
  options: GlobalOptions,
  settings: { applicationName?: string; migrate?: boolean; poolSize?: number } = {},
): Promise<Context> {
  const { url, embedded } = await resolveDatabaseUrl(options);
  let handle: DatabaseHandle;
  try {
    handle = openDatabase(url, { applicationName: settings.applicationName ?? 'run-production', max: settings.poolSize ?? 4 });
  } catch (error) {
    throw reachError(url, error);
  }
  try {
    await handle.pool.query('SELECT 1');
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw reachError(url, error);
  }
  if (settings.migrate !== false) {
    try {
      await migrate(handle.pool);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }
  try {
    await requireCommandRole(handle.db);
  } catch (error) {
    await handle.close();
    throw error;
  }
  const user = currentUser();
  const host = hostname();
  return {
    handle,
    databaseLabel: embedded ? 'embedded' : describeUrl(url).label,
    embedded,
    url,
    user,
    host,
    actor: { user, sessionId: null },
    close: () => handle.close(),
  };
}

/** Runs `work` with an open context and always closes it. */
export async function withContext<T>(options: GlobalOptions, work: (context: Context) => Promise<T>): Promise<T> {
  const context = await openContext(options);
  try {
    return await work(context);
  } finally {
    await context.close();
  }
}
