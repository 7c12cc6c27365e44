import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { inFlightCount } from './counts.js';
import { transitionRuns } from './transition.js';

export interface ClaimRequest {
  productionId: number;
  session: { id: string; user: string };
  /** Claim up to this many runs. */
  limit: number;
  /** Only runs of these datasets (all when empty or absent). */
  datasets?: readonly string[];
}

/**
 * Claims up to `limit` runs for a session, in run order, skipping runs other
 * sessions are claiming at this moment (FOR UPDATE SKIP LOCKED), so a run is
 * never held by two sessions. Nothing is claimed for a paused or closed
 * production. With a production cap (max_running), admission is serialised
 * on the production row so that concurrent claims never exceed it. A child
 * production's run is claimable only once its parent run has finished.
 */
export async function claimRuns(db: Kysely<Database>, request: ClaimRequest): Promise<number[]> {
  if (request.limit <= 0) return [];
  return db.transaction().execute(async (tx) => {
    const production = await tx
      .selectFrom('productions')
      .select(['status', 'max_running', 'parent_id'])
      .where('id', '=', request.productionId)
      .executeTakeFirst();
    if (!production || production.status !== 'active') return [];

    let limit = request.limit;
    if (production.max_running !== null) {
      // Serialise admission: every claim of this production waits here, then reads the counters.
      await tx.selectFrom('productions').select('id').where('id', '=', request.productionId).forUpdate().execute();
      const inFlight = await inFlightCount(tx, request.productionId);
      limit = Math.min(limit, production.max_running - inFlight);
      if (limit <= 0) return [];
    }

    const datasets = request.datasets?.length ? [...request.datasets] : null;
    const candidates = await sql<{ run_number: number }>`
      SELECT r.run_number FROM production_runs AS r
       WHERE r.production_id = ${request.productionId}
         AND r.status = 'new'
         AND (${datasets}::text[] IS NULL OR r.dataset = ANY(${datasets}::text[]))
         AND (${production.parent_id}::int IS NULL OR EXISTS (
               SELECT 1 FROM production_runs AS p
                WHERE p.production_id = ${production.parent_id}::int
                  AND p.run_number = r.run_number AND p.status = 'finished'))
       ORDER BY r.run_number
       LIMIT ${limit}
       FOR UPDATE OF r SKIP LOCKED
    `.execute(tx);
    const runs = candidates.rows.map((r) => r.run_number);
    return transitionRuns(tx, {
      productionId: request.productionId,
      runs,
      from: 'new',
      to: 'claimed',
      owner: null,
      actor: { user: request.session.user, sessionId: request.session.id },
    });
  });
}
