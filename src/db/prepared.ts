import { createHash } from 'node:crypto';
import { sql, type RawBuilder } from 'kysely';
import pg from 'pg';

/**
 * Server-side prepared statements for the few statements every session runs
 * many times a second (claims and transitions).
 *
 * Planning a transition (a statement with an UPDATE, an INSERT and the
 * state-machine check) cost about as much as running it for ten runs. node-postgres
 * prepares a statement once per connection when the query carries a `name`;
 * Kysely never passes one. So statements written with `preparedSql` start with
 * a marker comment, and `PreparingClient`, the pool's client class, gives every
 * marked text a name derived from the text itself: each connection parses it
 * once and the server may keep a generic plan for it.
 *
 * Only mark statements whose text is fixed (values as parameters, arrays
 * instead of `IN (...)` lists): a connection keeps one prepared statement per
 * distinct marked text for as long as it lives. Unmarked statements are sent
 * as before (unnamed, planned each time).
 *
 * A pooler in transaction mode (PgBouncer before 1.21) does not carry named
 * statements between server connections: set RUN_PRODUCTION_PREPARED_STATEMENTS=off
 * there.
 */

const MARK = '/* prepared */ ';

export const PREPARE_ENV = 'RUN_PRODUCTION_PREPARED_STATEMENTS';

/** Like Kysely's `sql` tag, for a statement run often with a fixed text: prepared once per connection. */
export function preparedSql<T = unknown>(strings: TemplateStringsArray, ...values: unknown[]): RawBuilder<T> {
  const marked = Object.assign([MARK + strings[0], ...strings.slice(1)], { raw: [MARK + strings.raw[0], ...strings.raw.slice(1)] });
  return sql<T>(marked as unknown as TemplateStringsArray, ...values);
}

/** The statement name for a marked text, or null for a text to send unnamed. */
export function preparedStatementName(text: string): string | null {
  if (!text.startsWith(MARK)) return null;
  return `rp_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
}

const enabled = () => process.env[PREPARE_ENV]?.toLowerCase() !== 'off';

/** The pool's client class: names marked statements so that each connection prepares them once. */
export class PreparingClient extends pg.Client {
  // pg's query() has a dozen overloads; this override only rewrites the plain (text, values) form Kysely uses.
  override query(...args: unknown[]): never {
    const [text, ...rest] = args;
    const name = typeof text === 'string' && enabled() ? preparedStatementName(text) : null;
    const first = name ? { name, text } : text;
    return (pg.Client.prototype.query as (...a: unknown[]) => never).call(this, first, ...rest);
  }
}
