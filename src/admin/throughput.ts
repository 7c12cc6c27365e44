import { sql, type Kysely } from 'kysely';
import type { ProductionCounts } from '../state/counts.js';
import type { Production } from '../state/productions.js';
import type { Database } from '../db/schema.js';

/**
 * How fast a production goes and when it will be done, for `status`. Reads
 * only the finished runs of the last 24 hours through the finished-runs index.
 */
export interface Throughput {
  finishedLast15m: number;
  finishedLast24h: number;
  /** Finished runs per hour over the last 15 minutes. */
  runsPerHour15m: number;
  /** Finished runs per hour over the last 24 hours, or since the production started when it is younger. */
  runsPerHour24h: number;
  /** Runs neither finished nor failed. */
  remaining: number;
  /** At the 15-minute rate, else the 24-hour rate; null when nothing finished in 24 h. */
  etaSeconds: number | null;
}

export async function readThroughput(db: Kysely<Database>, production: Production, counts: ProductionCounts): Promise<Throughput> {
  const row = await sql<{ last15: number; last24: number; window_hours: number }>`
    SELECT count(*) FILTER (WHERE finished_at > now() - interval '15 minutes')::int AS last15,
           count(*)::int AS last24,
           least(24, greatest(extract(epoch FROM now() - ${production.startedAt}::timestamptz) / 3600, 0.25))::float8 AS window_hours
      FROM production_runs
     WHERE production_id = ${production.id} AND is_finished AND finished_at > now() - interval '24 hours'`.execute(db);
  const { last15, last24, window_hours } = row.rows[0]!;
  const perHour15 = last15 * 4;
  const perHour24 = last24 / window_hours;
  const remaining = counts.total - counts.counts.finished - counts.counts.failed;
  const rate = perHour15 > 0 ? perHour15 : perHour24;
  return {
    finishedLast15m: last15,
    finishedLast24h: last24,
    runsPerHour15m: perHour15,
    runsPerHour24h: Math.round(perHour24 * 10) / 10,
    remaining,
    etaSeconds: remaining === 0 ? 0 : rate > 0 ? Math.round((remaining / rate) * 3600) : null,
  };
}

/** A child production's new runs that cannot be claimed yet because their parent run is not finished. */
export interface ParentWait {
  parent: string;
  /** Parent run still to be processed (new ... running). */
  waiting: number;
  /** Parent run failed (or missing): these wait until someone retries it. */
  parentFailed: number;
}

export async function readParentWait(db: Kysely<Database>, production: Production): Promise<ParentWait | null> {
  if (production.parentId === null) return null;
  const row = await sql<{ parent: string; waiting: number; parent_failed: number }>`
    SELECT (SELECT type || ' v' || version FROM productions WHERE id = ${production.parentId}) AS parent,
           count(*) FILTER (WHERE p.status IN ('new', 'claimed', 'downloading', 'staged', 'submitted', 'running'))::int AS waiting,
           count(*) FILTER (WHERE p.status IS NULL OR p.status = 'failed')::int AS parent_failed
      FROM production_runs AS c
      LEFT JOIN production_runs AS p ON p.production_id = ${production.parentId} AND p.run_number = c.run_number
     WHERE c.production_id = ${production.id} AND c.is_new`.execute(db);
  const r = row.rows[0]!;
  return { parent: r.parent, waiting: r.waiting, parentFailed: r.parent_failed };
}
