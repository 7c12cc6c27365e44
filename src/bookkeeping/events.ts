import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

/** The event log, filtered, oldest first; read again from the last id seen for --follow. */

export interface EventFilter {
  productionId?: number;
  run?: number;
  sessionId?: string;
  /** Only events newer than this many seconds. */
  sinceSeconds?: number;
  /** Only events with a larger id (the follow cursor). */
  afterId?: number;
}

export interface EventRow {
  id: number;
  at: Date;
  production: string | null;
  run: number | null;
  session: string | null;
  user: string;
  kind: string;
  from: string | null;
  to: string | null;
  message: string | null;
}

/**
 * Events matching the filter, returned oldest first: the newest `limit` of them, or with
 * take = 'oldest' the first `limit` after the cursor (how --follow catches up without gaps).
 */
export async function readEvents(db: Kysely<Database>, filter: EventFilter, limit: number, take: 'newest' | 'oldest' = 'newest'): Promise<EventRow[]> {
  const newest = take === 'newest';
  const where = sql`
     WHERE (${filter.productionId ?? null}::int IS NULL OR e.production_id = ${filter.productionId ?? null}::int)
       AND (${filter.run ?? null}::int IS NULL OR e.run_number = ${filter.run ?? null}::int)
       AND (${filter.sessionId ?? null}::uuid IS NULL OR e.session_id = ${filter.sessionId ?? null}::uuid)
       AND (${filter.sinceSeconds ?? null}::float8 IS NULL OR e.at > now() - ${filter.sinceSeconds ?? null}::float8 * interval '1 second')
       AND e.id > ${filter.afterId ?? 0}`;
  // Two literal orders (not an ORDER BY expression) so that the scan can walk the id index and stop at the limit.
  const order = newest ? sql`ORDER BY e.id DESC` : sql`ORDER BY e.id`;
  const rows = await sql<{
    id: number;
    at: Date;
    production: string | null;
    run_number: number | null;
    session_id: string | null;
    user_name: string;
    kind: string;
    from_status: string | null;
    to_status: string | null;
    message: string | null;
  }>`
    SELECT e.id, e.at, p.type || ' v' || p.version AS production, e.run_number, e.session_id::text AS session_id, e.user_name,
           e.kind, e.from_status::text AS from_status, e.to_status::text AS to_status, e.message
      FROM events AS e LEFT JOIN productions AS p ON p.id = e.production_id
     ${where}
     ${order}
     LIMIT ${limit}`.execute(db);
  if (newest) rows.rows.reverse();
  return rows.rows.map((r) => ({
    id: r.id,
    at: r.at,
    production: r.production,
    run: r.run_number,
    session: r.session_id,
    user: r.user_name,
    kind: r.kind,
    from: r.from_status,
    to: r.to_status,
    message: r.message,
  }));
}

/** One line per event, the way a shifter reads a log: time, who, what. */
export function formatEventLine(e: EventRow): string {
  const time = e.at.toISOString().slice(0, 19).replace('T', ' ');
  const who = `${e.user}${e.session ? `/${e.session.slice(0, 8)}` : ''}`;
  const what = e.kind === 'transition' ? `${e.from} -> ${e.to}` : e.kind;
  const run = e.run !== null ? ` run ${e.run}` : '';
  return `${time}  ${e.production ?? '-'}${run}  ${what}  (${who})${e.message ? `  ${e.message}` : ''}`;
}

export function eventJson(e: EventRow): Record<string, unknown> {
  return { id: e.id, at: e.at.toISOString(), production: e.production, run: e.run, session: e.session, user: e.user, kind: e.kind, from: e.from, to: e.to, message: e.message };
}
