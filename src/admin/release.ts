import { rm } from 'node:fs/promises';
import { sql, type Kysely } from 'kysely';
import { ExpectedError } from '../core/errors.js';
import { isOnGridStatus } from '../core/held-run.js';
import { isInStaging } from '../session/attempt-files.js';
import { getProduction, type Production } from '../state/productions.js';
import { heldRuns, type HeldRun } from '../state/sessions.js';
import { recordEvent, returnRunsToPool, type Actor } from '../state/transition.js';
import type { Database } from '../db/schema.js';
import type { Grid } from '../grids/grid.js';
import { createGrid } from '../grids/index.js';
import { releasePathFor, revokeJob } from '../grids/wrapper.js';
import { partialDownloadPath, statusFilePath } from '../outputs/paths.js';
import type { SessionRow } from './sessions.js';

/**
 * Takes the runs of another shifter's session back into the pool, in three steps:
 *  1. on the locked session row, after any move of it under way, the session is ended: from then
 *     on it can move no run (session_may_act), so a live session that has not noticed yet cannot
 *     count the jobs cancelled below as failures, claim again or submit again;
 *  2. its runs, frozen now, are read and their jobs cancelled, outside any transaction (a
 *     scheduler call may take seconds); jobs this host cannot reach have their release revoked,
 *     so that they stop by themselves if they see this filesystem, and the shifter is warned;
 *  3. in a transaction, the runs are locked and go back to `new` from the status each is in, not
 *     counted as attempts, with the release event.
 * A release that dies between 1 and 3 leaves runs held by an ended session: a reaper recovers them
 * a lease later (reapExpiredSessions). A live session notices at its next heartbeat that it was
 * ended and leaves without touching the runs (OperatorLoop.fencedOut).
 */

export interface ReleaseOutcome {
  returned: number[];
  cancelledJobs: string[];
  /** Jobs the grid of this host cannot reach (another host's local jobs): they may still run. Their releases were revoked. */
  unreachableJobs: string[];
  wasLive: boolean;
}

export type GridFactory = (production: Production) => Promise<Grid>;

export async function releaseSession(
  db: Kysely<Database>,
  session: SessionRow,
  options: { force: boolean; actor: Actor; gridFor?: GridFactory },
): Promise<ReleaseOutcome> {
  const short = session.id.slice(0, 8);
  if (session.endedAt) {
    const left = await heldRuns(db, session.id);
    if (left.length === 0) {
      throw new ExpectedError(`Session ${short} (${session.user}@${session.host}) already ended (${session.endReason ?? 'no reason'}) and holds no runs; nothing to release.`, 1);
    }
  }
  const live = session.endedAt === null && session.leaseLeftSeconds > 0;
  if (live && !options.force) {
    throw new ExpectedError(
      `Session ${short} (${session.user}@${session.host} pid ${session.pid}) is live: its lease expires at ${session.leaseExpiresAt.toISOString()} ` +
        `(in ${Math.ceil(session.leaseLeftSeconds)}s) unless it heartbeats. Ask ${session.user} to stop it (Ctrl-C, or d to drain), ` +
        `wait for the lease to expire, or use --force to cancel its jobs and take its runs now.`,
      1,
    );
  }
  if (session.productionId === null) throw new ExpectedError(`Session ${short} works on no production; it holds no runs.`, 1);
  const production = await getProduction(db, session.productionId);
  const why = `released by ${options.actor.user}${options.force && live ? ' (--force, session was live)' : ''}: session ${short} (${session.user}@${session.host} pid ${session.pid})`;

  // 1. End it. The advisory lock first (it waits for a move of the session under way, and refuses
  // any later one), then the row, which a concurrent reaper or a second release also locks.
  await db.transaction().execute(async (tx) => {
    await sql`SELECT lock_session_for_ending(${session.id}::uuid)`.execute(tx);
    const locked = await sql<{ id: string }>`SELECT id FROM sessions WHERE id = ${session.id}::uuid FOR UPDATE`.execute(tx);
    if (locked.rows.length === 0) return;
    await tx
      .updateTable('sessions')
      .set({ ended_at: sql`coalesce(ended_at, now())`, end_reason: sql`coalesce(end_reason, ${why})` })
      .where('id', '=', session.id)
      .execute();
  });

  // 2. Its runs no longer change but by a reaper taking them: cancel their jobs, outside the transaction.
  const { runs, cancelled, unreachable } = await cancelJobsOf(db, production, session.id, options.gridFor);

  // 3. Return them, each from the status it is in now, under their row locks.
  const returned = await db.transaction().execute(async (tx) => {
    const locked = await heldRuns(tx, session.id, { lock: true });
    const moved = await returnRunsToPool(tx, {
      productionId: production.id,
      runs: locked,
      owner: session.id,
      actor: options.actor,
      message: `returned: ${why}`,
      reason: 'released',
    });
    await recordEvent(tx, {
      productionId: production.id,
      actor: options.actor,
      kind: 'release',
      reason: 'released',
      message: `${why}; returned runs [${moved.join(', ')}]${cancelled.length ? `; cancelled jobs ${cancelled.join(', ')}` : ''}${unreachable.length ? `; could not reach jobs ${unreachable.join(', ')} (releases revoked)` : ''}`,
    });
    return moved;
  });
  await removeStagedFiles(production, session.id, runs.filter((r) => returned.includes(r.run)));
  return { returned, cancelledJobs: cancelled, unreachableJobs: unreachable, wasLive: live };
}

/**
 * Cancels the jobs of an ended session's runs on the grid, and revokes the releases of those this
 * host cannot reach (best effort: a job that sees this filesystem stops within a second, see
 * bin/rp-job-wrapper). Returns the runs as they were read, and which jobs went which way.
 */
async function cancelJobsOf(
  db: Kysely<Database>,
  production: Production,
  sessionId: string,
  gridFor: GridFactory | undefined,
): Promise<{ runs: HeldRun[]; cancelled: string[]; unreachable: string[] }> {
  const runs = await heldRuns(db, sessionId);
  const onGrid = runs.filter((r) => isOnGridStatus(r.status) && r.jobId);
  const cancelled: string[] = [];
  const unreachable: string[] = [];
  if (onGrid.length === 0) return { runs, cancelled, unreachable };
  // A grid this build or host cannot drive (a backend not available here, a config without one)
  // leaves the jobs to be cancelled by hand: the caller warns, the runs are still released.
  const grid = await (gridFor ?? ((p: Production) => createGrid(p.config.job)))(production).catch(() => null);
  for (const run of onGrid) (grid?.canReach(run.jobId!) ? cancelled : unreachable).push(run.jobId!);
  if (grid && cancelled.length) await grid.cancel(cancelled);
  for (const run of onGrid.filter((r) => unreachable.includes(r.jobId!))) {
    const statusPath = () => statusFilePath(production.config, { type: production.type, version: production.version, run: run.run }, run.attempts + 1);
    await Promise.resolve()
      .then(() => revokeJob({ path: releasePathFor(statusPath()) }))
      .catch(() => undefined);
  }
  return { runs, cancelled, unreachable };
}

/** Staged inputs of the returned runs are of no use to anyone now (the next claimer downloads again). */
async function removeStagedFiles(production: Production, sessionId: string, runs: readonly HeldRun[]): Promise<void> {
  for (const run of runs) {
    if (!run.stagedPath || !isInStaging(production, run.stagedPath)) continue;
    await rm(run.stagedPath, { force: true }).catch(() => undefined);
    await rm(partialDownloadPath(run.stagedPath, sessionId, run.attempts + 1), { force: true }).catch(() => undefined);
  }
}
