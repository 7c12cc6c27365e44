import { existsSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { configPath, loadConfig, type LoadedConfig } from '../config/config.js';
import { describeUrl, openDatabase, type DatabaseHandle } from '../db/connection.js';
import { ensureEmbeddedServer } from '../db/embedded.js';
import { migrate } from '../db/migrate.js';
import type { Actor } from '../coordinator/transition.js';
import { ExpectedError } from './errors.js';
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
 * Which database: --database > DATABASE_URL (environment, or .env) > the config
 * file's "database" > the embedded server, started on first use.
 */
export async function resolveDatabaseUrl(options: GlobalOptions): Promise<{ url: string; embedded: boolean }> {
  if (options.database) return { url: options.database, embedded: false };
  if (process.env.DATABASE_URL) return { url: process.env.DATABASE_URL, embedded: false };
  const config = await optionalConfig(options).catch(() => null);
  if (config?.database) return { url: config.database, embedded: false };
  return { url: await ensureEmbeddedServer(), embedded: true };
}

function reachError(url: string, error: unknown): ExpectedError {
  let where: string;
  try {
    where = describeUrl(url).label;
  } catch {
    return new ExpectedError('The database URL is not a valid URL; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE.', 64);
  }
  const e = error as { code?: string; message?: string };
  const { host, port } = describeUrl(url);
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
