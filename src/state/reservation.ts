import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { toDownloading, type SessionFence } from './moves.js';

/** What a reservation of staging room gave: the runs now `downloading`, or why none fit. */
export type Reservation = { kind: 'reserved'; runs: number[] } | { kind: 'full'; reason: string };

export interface ReservationRequest {
  stagingDir: string;
  /** --spacelim: the percent of the staging area that downloads may fill. */
  spacelimPercent: number;
  /** The staging area as measured from `measuredFrom` (epoch ms) on, before the lock. */
  space: { totalBytes: number; usedBytes: number };
  measuredFrom: number;
  /** In the order they should start: each with the bytes it expects and where they go. */
  candidates: readonly { run: number; bytes: number; stagedPath: string }[];
}

const formatGiB = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

/**
 * Moves runs to `downloading`, reserving their expected bytes, only as far as
 * the staging area stays below --spacelim counting every session's
 * reservations there. Serialised per staging directory, so two sessions
 * never both see the same room.
 *
 * `space` was measured before the lock: a download of another session that
 * ended since then is in neither that reading nor the reservations, so the
 * inputs that reached staging since then (a second of margin for the mover's
 * clock) are counted as reserved too.
 */
export async function reserveStagingRoom(db: Kysely<Database>, fence: SessionFence, request: ReservationRequest): Promise<Reservation> {
  const stagingDir = request.stagingDir.replace(/\/+$/, '') + '/';
  return db.transaction().execute(async (tx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${'run-production staging ' + stagingDir}))`.execute(tx);
    const reserved = await reservedBytes(tx, stagingDir, (Date.now() - request.measuredFrom) / 1000 + 1);
    const limitBytes = (request.space.totalBytes * request.spacelimPercent) / 100;
    let projected = request.space.usedBytes + reserved;
    const chosen: ReservationRequest['candidates'][number][] = [];
    for (const run of request.candidates) {
      if (projected + run.bytes >= limitBytes && chosen.length > 0) break;
      if (projected + run.bytes >= limitBytes) {
        const reason =
          `staging area would pass --spacelim ${request.spacelimPercent}%: ${formatGiB(request.space.usedBytes)} used + ` +
          `${formatGiB(reserved)} reserved by downloads in flight or just ended + ${formatGiB(run.bytes)} for run ${run.run}`;
        return { kind: 'full', reason };
      }
      projected += run.bytes;
      chosen.push(run);
    }
    // The reservation: expected bytes and where they go; a reaper also uses the path to clean up.
    const runs = await toDownloading(tx, fence, chosen.map((r) => ({ run: r.run, stagedBytes: r.bytes, stagedPath: r.stagedPath })));
    return { kind: 'reserved', runs };
  });
}

/** Bytes reserved in a staging area: downloads in flight, and inputs that reached it in the last `sinceSeconds`. */
async function reservedBytes(tx: Kysely<Database>, stagingDir: string, sinceSeconds: number): Promise<number> {
  const row = await sql<{ bytes: number }>`
    SELECT coalesce(sum(staged_bytes), 0)::bigint AS bytes FROM production_runs
     WHERE session_id IS NOT NULL -- downloads are held runs: read through the session index
       AND starts_with(staged_path, ${stagingDir})
       AND (status = 'downloading'
            OR (status IN ('staged', 'submitted', 'running')
                AND status_changed_at >= clock_timestamp() - ${sinceSeconds}::float8 * interval '1 second'))`.execute(tx);
  return Number(row.rows[0]!.bytes);
}
