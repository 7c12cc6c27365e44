import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { PreparingClient } from './prepared.js';
import type { Database } from './schema.js';

// int8 (counts, sums, byte sizes) as numbers: every value we keep fits in 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (value) => Number(value));

export interface DatabaseHandle {
  db: Kysely<Database>;
  pool: pg.Pool;
  /** host:port/database, without credentials, for messages. */
  label: string;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Shown in pg_stat_activity, so a DBA can see which session a connection belongs to. */
  applicationName?: string;
  max?: number;
  /** Called for errors of idle pooled connections (a restarted server, a cut network). */
  onIdleError?: (error: Error) => void;
}

/** Reads host, port and database of a URL for messages; never the password. */
export function describeUrl(url: string): { host: string; port: number; database: string; label: string } {
  const parsed = new URL(url);
  const host = parsed.hostname || 'localhost';
  const port = Number(parsed.port || 5432);
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, '')) || parsed.username || 'postgres';
  return { host, port, database, label: `${host}:${port}/${database}` };
}

/** URL with the password removed, for `db status` and logs. */
export function redactUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

export function openDatabase(url: string, options: OpenOptions = {}): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString: url,
    application_name: options.applicationName ?? 'run-production',
    connectionTimeoutMillis: 8_000,
    idleTimeoutMillis: 30_000,
    max: options.max ?? 4,
    // A dead connection must not hang a query for ever: the server side keeps its own timeouts.
    keepAlive: true,
    // Names the statements marked with preparedSql, so each connection plans them once.
    Client: PreparingClient,
  });
  // Without a listener an error on an idle client crashes the process.
  pool.on('error', (error) => options.onIdleError?.(error));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    db,
    pool,
    label: describeUrl(url).label,
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}

const CONNECTION_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH']);

/**
 * Whether an error means the database cannot be reached right now (server down,
 * restarting, network cut) rather than that a query is wrong. A session rides
 * out the first kind; the second is a bug worth stopping for.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const e = error as { code?: string; message?: string } | null;
  if (!e) return false;
  if (e.code && CONNECTION_ERROR_CODES.has(e.code)) return true;
  // SQLSTATE class 08 (connection exception); 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
  if (e.code && (/^08/.test(e.code) || /^57P0[123]$/.test(e.code))) return true;
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable/i.test(e.message ?? '');
}
