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

/**
 * Connection strings as libpq accepts them, read for messages and checks. Two forms exist:
 * URLs (`postgres://` or `postgresql://`, the password in the userinfo or in `?password=`) and
 * key=value strings (`host=db01 port=5432 dbname=prod password='a b'`). Anything else, and any
 * URL whose parts do not parse cleanly (an unencoded `@`, `/` or `#` in a password shifts it
 * into host, port or path), is unparseable: messages then never show the text, since it may
 * hold a password in a place we cannot find.
 */
export type ConnectionString =
  | { readonly form: 'url'; readonly url: URL }
  | { readonly form: 'keyvalue'; readonly pairs: readonly (readonly [string, string])[] }
  | { readonly form: 'unparseable' };

/** What messages show for a connection string that cannot be read safely. */
export const UNPARSEABLE = '(unparseable connection string)';

const URL_SCHEME = /^postgres(?:ql)?:\/\//i;

export function parseConnectionString(text: string): ConnectionString {
  const trimmed = text.trim();
  if (URL_SCHEME.test(trimmed)) {
    let url: URL;
    try {
      url = new URL(trimmed);
    } catch {
      return { form: 'unparseable' };
    }
    // A password with an unencoded `/`, `?` or `#` ends the userinfo early: its rest lands in the
    // path, query or fragment, followed by the `@` that was meant to end it.
    if (/@/.test(url.pathname + url.search + url.hash)) return { form: 'unparseable' };
    return { form: 'url', url };
  }
  const pairs = parseKeyValue(trimmed);
  return pairs === null ? { form: 'unparseable' } : { form: 'keyvalue', pairs };
}

/** libpq's `key = value ...`: values bare or single-quoted (with `\'` and `\\`); null if it is not that. */
function parseKeyValue(text: string): [string, string][] | null {
  const pairs: [string, string][] = [];
  let i = 0;
  const space = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  space();
  while (i < text.length) {
    const key = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))?.[0];
    if (key === undefined) return null;
    i += key.length;
    space();
    if (text[i] !== '=') return null;
    i++;
    space();
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= text.length) return null;
        const c = text[i]!;
        if (c === '\\' && i + 1 < text.length) {
          value += text[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (i < text.length && !/\s/.test(text[i]!)) return null;
    } else {
      while (i < text.length && !/\s/.test(text[i]!)) {
        if (text[i] === "'") return null;
        if (text[i] === '\\' && i + 1 < text.length) i++;
        value += text[i];
        i++;
      }
    }
    pairs.push([key.toLowerCase(), value]);
    space();
  }
  return pairs.length > 0 ? pairs : null;
}

/** Whether the connection string carries a password (or cannot be read well enough to tell). */
export function hasPassword(text: string): boolean {
  const parsed = parseConnectionString(text);
  switch (parsed.form) {
    case 'url':
      return parsed.url.password !== '' || [...parsed.url.searchParams.keys()].some((key) => key.toLowerCase() === 'password');
    case 'keyvalue':
      return parsed.pairs.some(([key]) => key === 'password');
    case 'unparseable':
      return true;
  }
}

/**
 * Host, port and database of a connection string for messages; never the password, and never
 * throws: an unparseable string gives UNPARSEABLE as its label.
 */
export function describeUrl(text: string): { host: string; port: number; database: string; label: string } {
  const parsed = parseConnectionString(text);
  let host: string | undefined;
  let port: string | undefined;
  let database: string | undefined;
  let user: string | undefined;
  if (parsed.form === 'url') {
    const { url } = parsed;
    const param = (name: string) => url.searchParams.get(name) ?? undefined;
    host = param('host') ?? (url.hostname === '' ? undefined : safeDecode(url.hostname.replace(/^\[(.+)\]$/, '$1')));
    port = param('port') ?? (url.port || undefined);
    database = param('dbname') ?? (safeDecode(url.pathname.replace(/^\//, '')) || undefined);
    user = param('user') ?? (url.username === '' ? undefined : safeDecode(url.username));
  } else if (parsed.form === 'keyvalue') {
    const value = (name: string) => parsed.pairs.findLast(([key]) => key === name)?.[1] || undefined;
    host = value('host') ?? value('hostaddr');
    port = value('port');
    database = value('dbname');
    user = value('user');
  } else {
    return { host: 'unknown host', port: 5432, database: 'unknown', label: UNPARSEABLE };
  }
  const shownHost = host ?? 'localhost';
  const shownPort = /^\d+$/.test(port ?? '') ? Number(port) : 5432;
  const shownDatabase = database ?? user ?? 'postgres';
  return { host: shownHost, port: shownPort, database: shownDatabase, label: `${shownHost}:${shownPort}/${shownDatabase}` };
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * The connection string with every password replaced by `***`, for `db status` and logs: the
 * userinfo password and `?password=` of a URL, `password=` of a key=value string; the fragment
 * of a URL is dropped. Anything unparseable is shown as UNPARSEABLE, never as its text.
 */
export function redactUrl(text: string): string {
  const parsed = parseConnectionString(text);
  switch (parsed.form) {
    case 'url': {
      const url = new URL(parsed.url.href);
      if (url.password !== '') url.password = '***';
      url.hash = '';
      const query = [...url.searchParams.entries()];
      if (query.some(([key]) => key.toLowerCase() === 'password')) {
        url.search = '';
        for (const [key, value] of query) url.searchParams.append(key, key.toLowerCase() === 'password' ? '***' : value);
      }
      return url.toString();
    }
    case 'keyvalue':
      return parsed.pairs.map(([key, value]) => `${key}=${key === 'password' ? '***' : quoteValue(value)}`).join(' ');
    case 'unparseable':
      return UNPARSEABLE;
  }
}

function quoteValue(value: string): string {
  return value !== '' && !/[\s'\\]/.test(value) ? value : `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

/**
 * Why this connection string cannot be used, or null when it can: the PostgreSQL driver
 * (node-postgres) understands only the URL form; it would read a key=value string as a URL
 * relative to a dummy host and send the whole text, password included, as the database name.
 * `where` names the setting (`DATABASE_URL`, `--database`); the text itself is never shown.
 */
export function connectionStringProblem(text: string, where: string): string | null {
  const parsed = parseConnectionString(text);
  if (parsed.form === 'url') return null;
  const form = parsed.form === 'keyvalue' ? 'a key=value connection string' : 'not a well-formed postgres:// URL';
  return (
    `${where} is ${form}; run-production needs a URL: postgres://USER:PASSWORD@HOST:PORT/DATABASE ` +
    `(percent-encode @ / : # ? in the password, or leave it out and put it in ~/.pgpass or PGPASSWORD).`
  );
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
  // The pool listens only while a client is idle. One checked out but between two statements (inside
  // a transaction, while the caller does file work) that the server drops (a restart: 57P01) emits
  // 'error' with nobody listening, which becomes an uncaught exception. With this listener the next
  // query on it fails as "not queryable", an outage the caller rides out, and the pool discards it.
  pool.on('connect', (client) => client.on('error', (error) => options.onIdleError?.(error)));
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
