import { sql, type Kysely } from 'kysely';
import { preparedSql } from '../db/prepared.js';
import type { Database } from '../db/schema.js';
import { inFlightCount } from './counts.js';
import { transitionRuns } from './transition.js';

export interface ClaimRequest {
  productionId: number;
  session: { id: string; user: string };
  /** Claim up to this many runs. */
  limit: number;
  /**
   * The production's parent (productions.parent_id, fixed when the production
   * is made): a child production's run waits until its parent run finished.
   */
  parentId: number | null;
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
 *
 * One statement, one round trip, in the usual case (no cap): under load every
 * extra round trip is another wait for a CPU. Only when it claims nothing does
 * it read the production, to tell "nothing left" from "capped".
 */
export async function claimRuns(db: Kysely<Database>, request: ClaimRequest): Promise<number[]> {
  if (request.limit <= 0) return [];
  const claim = (executor: Kysely<Database>, limit: number, uncappedOnly: boolean) =>
    transitionRuns(executor, {
      productionId: request.productionId,
      // The candidates are chosen and locked inside the transition statement itself.
      runs: claimCandidates(request, limit, uncappedOnly),
      from: 'new',
      to: 'claimed',
      owner: null,
      actor: { user: request.session.user, sessionId: request.session.id },
    });
  const claimed = await claim(db, request.limit, true);
  if (claimed.length > 0) return claimed;
  const production = (
    await preparedSql<{ status: string; max_running: number | null }>`
      SELECT status, max_running FROM productions WHERE id = ${request.productionId}::int`.execute(db)
  ).rows[0];
  if (!production || production.status !== 'active' || production.max_running === null) return [];
  return db.transaction().execute(async (tx) => {
    // Serialise admission: every claim of this production waits here, then reads the counters.
    const locked = await tx.selectFrom('productions').select(['status', 'max_running']).where('id', '=', request.productionId).forUpdate().executeTakeFirst();
    if (!locked || locked.status !== 'active') return [];
    const room = locked.max_running === null ? request.limit : Math.min(request.limit, locked.max_running - (await inFlightCount(tx, request.productionId)));
    return room > 0 ? claim(tx, room, false) : [];
  });
}

/**
 * New runs to claim, in run order, skipping those other sessions are locking
 * right now.
 *
 * Written so that the server keeps one plan per variant instead of planning
 * every claim (the claim is prepared, see preparedSql):
 *  - the dataset and parent conditions are left out of the text when they do
 *    not apply, rather than `$n IS NULL OR ...`;
 *  - the inner LIMIT is a literal power of two at least `limit`, and the exact
 *    `limit` is a parameter outside it. With a parameter alone the planner
 *    guesses a tenth of the production for a generic plan and so plans every
 *    claim anew; the literal bounds its guess. Rows are locked only as the
 *    outer LIMIT pulls them, so no more than `limit` rows are ever locked.
 */
function claimCandidates(request: ClaimRequest, limit: number, uncappedOnly: boolean) {
  // Outside the admission lock only a production without a cap may be claimed from.
  const uncapped = uncappedOnly ? sql`AND pr.max_running IS NULL` : sql``;
  const bound = 2 ** Math.ceil(Math.log2(limit));
  return sql<{ run_number: number }>`
    SELECT c.run_number FROM (
      SELECT r.run_number FROM production_runs AS r
       WHERE ${newRuns({ ...request, parent: 'finished' })}
         AND EXISTS (SELECT 1 FROM productions AS pr WHERE pr.id = ${request.productionId}::int AND pr.status = 'active' ${uncapped})
       ORDER BY r.run_number
       LIMIT ${sql.lit(bound)}
       FOR UPDATE OF r SKIP LOCKED
    ) AS c
    LIMIT ${limit}::int`;
}

/**
 * Which parent run lets a child production's run through: `finished`, to be claimable now;
 * `not-failed`, to be claimable now or later (its parent run is still in production). A run whose
 * parent run failed can never be claimed.
 */
export type ParentRule = 'finished' | 'not-failed';

/**
 * The one condition for a production's new runs (on `production_runs AS r`): the claim, the dry
 * run, "nothing left to claim" and the bench all select through it. Conditions that do not apply
 * are left out of the text rather than written `$n IS NULL OR ...`, so a prepared claim keeps one
 * plan per variant.
 */
export function newRuns(selection: { productionId: number; parentId: number | null; datasets?: readonly string[]; parent: ParentRule }) {
  const datasets = selection.datasets?.length ? [...selection.datasets] : null;
  const inDatasets = datasets ? sql`AND r.dataset = ANY(${datasets}::text[])` : sql``;
  const parentStatus = selection.parent === 'finished' ? sql`p.status = 'finished'` : sql`p.status <> 'failed'`;
  const parentAllows =
    selection.parentId === null
      ? sql``
      : sql`AND EXISTS (SELECT 1 FROM production_runs AS p
                         WHERE p.production_id = ${selection.parentId}::int AND p.run_number = r.run_number AND ${parentStatus})`;
  return sql`r.production_id = ${selection.productionId}::int
         AND r.is_new -- status = 'new', through the claimable index
         ${inDatasets}
         ${parentAllows}`;
}

/** No run of the selection to claim now, nor any that waits on a parent run still in production. */
export async function nothingLeftToClaim(
  db: Kysely<Database>,
  selection: { productionId: number; parentId: number | null; datasets?: readonly string[] },
): Promise<boolean> {
  const row = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM (
      SELECT 1 FROM production_runs AS r WHERE ${newRuns({ ...selection, parent: 'not-failed' })} LIMIT 1) AS left_to_claim`.execute(db);
  return row.rows[0]!.n === 0;
}

/** The runs a claim would take now, in order, with their catalogue entries; nothing is locked (the dry run). */
export async function claimableRuns(
  db: Kysely<Database>,
  selection: { productionId: number; parentId: number | null; datasets?: readonly string[]; limit: number },
): Promise<{ run_number: number; dataset: string; attempts: number; source: string | null; size_bytes: number | null }[]> {
  const rows = await sql<{ run_number: number; dataset: string; attempts: number; source: string | null; size_bytes: number | null }>`
    SELECT r.run_number, r.dataset, r.attempts, c.source, c.size_bytes
      FROM production_runs AS r JOIN runs AS c USING (run_number)
     WHERE ${newRuns({ ...selection, parent: 'finished' })}
     ORDER BY r.run_number LIMIT ${selection.limit}::int`.execute(db);
  return rows.rows;
}
