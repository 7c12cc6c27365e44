import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
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
