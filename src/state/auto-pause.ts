import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Production } from './productions.js';
import { recordEvent, type Actor } from './transition.js';

/**
 * Stops a production that only fails: after K consecutive failed job attempts
 * (K = config.autoPause.failures, default 10) since the last `resume`, it is
 * paused so that no session burns the remaining runs' attempts on a broken
 * software tag or a dead storage area. Running jobs go on; `resume` lifts it.
 *
 * Cheap enough to call after every failed attempt: one probe of the actions
 * index for the last resume and one backward scan of at most K rows of the
 * attempt-outcomes index (events with reason finished, retry or failed; sql/002
 * and sql/010_structured_events.sql).
 */

export const DEFAULT_AUTO_PAUSE_FAILURES = 10;

interface OutcomeRow {
  outcome: 'finished' | 'failed';
  exit_code: number | null;
  error: string | null;
}

/** Pauses the production when its last K attempt outcomes are all failures; returns the reason, or null. */
export async function checkAutoPause(db: Kysely<Database>, production: Production, actor: Actor): Promise<string | null> {
  const k = production.config.autoPause?.failures ?? DEFAULT_AUTO_PAUSE_FAILURES;
  const rows = await sql<OutcomeRow>`
    SELECT o.outcome, o.exit_code, o.error
      FROM attempt_outcomes AS o
     WHERE o.production_id = ${production.id}
       AND o.event_id > coalesce((SELECT max(e.id) FROM events AS e
                                   WHERE e.production_id = ${production.id} AND e.kind <> 'transition' AND e.kind = 'resume'), 0)
     ORDER BY o.event_id DESC
     LIMIT ${k}`.execute(db);
  if (rows.rows.length < k || rows.rows.some((r) => r.outcome !== 'failed')) return null;

  const reason = `auto-paused: ${k} consecutive failed job attempts (${describeExitCodes(rows.rows)}); check the job logs, then run-production resume --production ${production.type} --version ${production.version}`;
  return pauseAutomatically(db, production, actor, reason);
}

/**
 * Pauses the production because its downloads keep failing on the archive or the staging disk
 * (autoPause.infrastructure in a row, none counted against a run); returns the reason, or null.
 */
export async function pauseForInfrastructure(db: Kysely<Database>, production: Production, actor: Actor, what: string): Promise<string | null> {
  const reason = `auto-paused: ${what}; fix it, then run-production resume --production ${production.type} --version ${production.version}`;
  return pauseAutomatically(db, production, actor, reason);
}

async function pauseAutomatically(db: Kysely<Database>, production: Production, actor: Actor, reason: string): Promise<string | null> {
  return db.transaction().execute(async (tx) => {
    // Only an active production is paused, and only once when several sessions see the failures at the same time.
    const paused = await tx
      .updateTable('productions')
      .set({ status: 'paused', status_reason: reason, status_changed_at: sql`now()` })
      .where('id', '=', production.id)
      .where('status', '=', 'active')
      .returning('id')
      .executeTakeFirst();
    if (!paused) return null;
    await recordEvent(tx, { productionId: production.id, actor, kind: 'pause', reason: 'auto_paused', message: reason });
    return reason;
  });
}

/** "exit code 7 ×8, lost ×2": most frequent first. */
function describeExitCodes(rows: readonly OutcomeRow[]): string {
  const tally = new Map<string, number>();
  for (const row of rows) {
    const key =
      row.exit_code === null ? 'job lost' : row.exit_code === 0 ? 'exit code 0 with invalid outputs' : `exit code ${row.exit_code}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
  }
  return [...tally.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([key, n]) => `${key} ×${n}`)
    .join(', ');
}
