import { sql, type Kysely } from 'kysely';
import type { EventReason } from '../core/event-reasons.js';
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
  /** Why, as a code (src/core/event-reasons.ts). */
  reason: EventReason;
  /** The run's attempt, job, exit code, host and error line the event concerns, where it has them. */
  attempt: number | null;
  jobId: string | null;
  exitCode: number | null;
  host: string | null;
  error: string | null;
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
       ${filter.sessionId ? await sessionBounds(db, filter.sessionId) : sql``}
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
    reason: EventReason;
    attempt: number | null;
    job_id: string | null;
    exit_code: number | null;
    host: string | null;
    error: string | null;
    message: string | null;
  }>`
    SELECT e.id, e.at, p.type || ' v' || p.version AS production, e.run_number, e.session_id::text AS session_id, e.user_name,
           e.kind, e.from_status::text AS from_status, e.to_status::text AS to_status,
           e.reason, e.attempt, e.job_id, e.exit_code, e.host, e.error, e.message
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
    reason: r.reason,
    attempt: r.attempt,
    jobId: r.job_id,
    exitCode: r.exit_code,
    host: r.host,
    error: r.error,
    message: r.message,
  }));
}

/**
 * The events of one session. The log keeps no index by session (every session
 * appending to its own point of one cost a quarter of the transition rate with
 * 16 sessions, see sql/006), so the search is bounded instead by what the
 * sessions table knows: the session's production and its lifetime (the BRIN
 * index on `at`), with an hour's grace after its end for the session-end event
 * and for a session that went on writing warnings after it was reaped.
 */
async function sessionBounds(db: Kysely<Database>, sessionId: string) {
  const session = await db
    .selectFrom('sessions')
    .select(['production_id', 'started_at', sql<Date | null>`ended_at + interval '1 hour'`.as('until')])
    .where('id', '=', sessionId)
    .executeTakeFirst();
  if (!session) return sql`AND false`;
  return sql`
       AND e.session_id = ${sessionId}::uuid
       AND ${session.production_id === null ? sql`e.production_id IS NULL` : sql`e.production_id = ${session.production_id}::int`}
       AND e.at >= ${session.started_at}::timestamptz
       AND e.at <= ${session.until ?? 'infinity'}::timestamptz`;
}
