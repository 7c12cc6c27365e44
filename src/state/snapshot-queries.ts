import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { readCounts, type ProductionCounts } from './counts.js';

/**
 * The database reads behind one display snapshot, outside the operator loop so
 * that the benchmark (and any other caller) measures exactly what a session
 * pays per tick for its display. Three queries, run concurrently on the pool:
 * the maintained counters, runs finished in the last 15 minutes (for the rate
 * and ETA) and the other live sessions of the production with what they hold.
 * None of them scans the production: the counters are a few dozen rows, the
 * finished-recently count walks production_runs_finished_idx over a 15-minute
 * range, and each session's held count uses production_runs_session_idx.
 */

export interface OtherSessionRow {
  id: string;
  user_name: string;
  host: string;
  started_at: Date;
  /** Seconds since its last heartbeat (database clock). */
  age: number;
  lease_seconds: number;
  /** Runs it holds now. */
  held: number;
}

export interface SnapshotBaseRows {
  counts: ProductionCounts;
  /** Runs of the production finished in the last 15 minutes. */
  finishedLast15Minutes: number;
  /** Live sessions of the production other than `exceptSessionId`, oldest first. */
  sessions: OtherSessionRow[];
  /**
   * A child production's new runs whose parent run has not finished, among the next
   * WAITING_ON_PARENT_CAP runs to claim; null for a production without a parent.
   */
  waitingOnParent: number | null;
}

/** How many of a child's next new runs the snapshot looks at for waitingOnParent: bounded work per pass at 10^6 runs. */
export const WAITING_ON_PARENT_CAP = 1000;

/** Window of the throughput estimate; runs per hour = finished in the window × (60 / minutes). */
export const RATE_WINDOW_MINUTES = 15;

export async function readSnapshotBase(
  db: Kysely<Database>,
  productionId: number,
  exceptSessionId: string | null,
  parentId: number | null = null,
): Promise<SnapshotBaseRows> {
  const [counts, recent, sessions, waitingOnParent] = await Promise.all([
    readCounts(db, productionId),
    sql<{ n: number }>`SELECT count(*)::int AS n FROM production_runs
                        WHERE production_id = ${productionId} AND is_finished
                          AND finished_at > now() - make_interval(mins => ${RATE_WINDOW_MINUTES})`.execute(db),
    sql<OtherSessionRow>`
      SELECT s.id, s.user_name, s.host, s.started_at, extract(epoch FROM now() - s.heartbeat_at)::float8 AS age, s.lease_seconds,
             (SELECT count(*) FROM production_runs r WHERE r.session_id = s.id)::int AS held
        FROM sessions s
       WHERE s.production_id = ${productionId} AND s.ended_at IS NULL
         AND s.id IS DISTINCT FROM ${exceptSessionId}::uuid
       ORDER BY s.started_at`.execute(db),
    parentId === null ? null : countWaitingOnParent(db, productionId, parentId),
  ]);
  return { counts, finishedLast15Minutes: recent.rows[0]!.n, sessions: sessions.rows, waitingOnParent };
}

/**
 * Of a child production's next new runs (at most WAITING_ON_PARENT_CAP, in claim order, through the
 * claimable index), those whose parent run has not finished: an exact count would scan every new run.
 */
async function countWaitingOnParent(db: Kysely<Database>, productionId: number, parentId: number): Promise<number> {
  const row = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM (
      SELECT r.run_number FROM production_runs AS r
       WHERE r.production_id = ${productionId} AND r.is_new
       ORDER BY r.run_number LIMIT ${sql.lit(WAITING_ON_PARENT_CAP)}) AS next
     WHERE NOT EXISTS (SELECT 1 FROM production_runs AS p
                        WHERE p.production_id = ${parentId} AND p.run_number = next.run_number AND p.status = 'finished')`.execute(db);
  return row.rows[0]!.n;
}

/** Runs per hour and ETA as the display shows them, from the snapshot rows. */
export function throughputOf(base: SnapshotBaseRows): { runsPerHour: number; etaSeconds: number | null } {
  const runsPerHour = base.finishedLast15Minutes * (60 / RATE_WINDOW_MINUTES);
  const { counts, total } = base.counts;
  const remaining = total - counts.finished - counts.failed;
  return { runsPerHour, etaSeconds: runsPerHour > 0 ? Math.round((remaining / runsPerHour) * 3600) : null };
}
