import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { onGridRuns, recordJudgements } from '../session/judge.js';
import { planClaim, planDownloads, planEnd, planSubmissions, type PlanInput } from '../session/plan.js';
import { claimRuns, nothingLeftToClaim } from '../state/claim.js';
import { readHeldRuns, type HeldRunDetail } from '../state/held-runs.js';
import { toDownloading, toRunning, toStaged, toSubmitted, type SessionFence } from '../state/moves.js';
import { getProduction } from '../state/productions.js';
import { heartbeat, reapExpiredSessions } from '../state/sessions.js';
import { readSnapshotBase } from '../state/snapshot-queries.js';
import type { Actor } from '../state/transition.js';

/**
 * One pass of the operator loop's database work, in the loop's order
 * (src/session/operator-loop.ts pass()), without a grid or files: jobs "end" on
 * the pass after they start and downloads complete at once. What to claim,
 * download and submit, and whether the session is done, come from the loop's
 * own plan (src/session/plan.ts); the moves, the held-run read, the claim and
 * the recording of ended jobs are the loop's own functions, so the statement
 * count per pass is the loop's.
 */

export interface TickSession {
  db: Kysely<Database>;
  productionId: number;
  actor: Actor & { sessionId: string };
  nproc: number;
  nprep: number;
}

const options = (s: TickSession) => ({ nproc: s.nproc, nprep: s.nprep, limit: null, until: 'idle' as const, datasets: [] });

const planOf = (s: TickSession, held: HeldRunDetail[]): PlanInput<HeldRunDetail> => ({ held, downloading: new Set(), options: options(s), claimsMade: 0, mayStartWork: true });

/** Resolves to the runs this pass finished. */
export async function tick(s: TickSession): Promise<number> {
  const fence: SessionFence = { productionId: s.productionId, actor: s.actor };
  if (!(await heartbeat(s.db, s.actor.sessionId))) throw new Error('bench session was reaped');
  await reapExpiredSessions(s.db, s.actor);
  const production = await getProduction(s.db, s.productionId);
  // Jobs: submitted ones start (one batch), running ones end and are recorded together.
  let held = await readHeldRuns(s.db, s.actor.sessionId);
  const started = held.filter((r) => r.status === 'submitted').map((r) => r.run);
  if (started.length) await toRunning(s.db, fence, started);
  const ended = onGridRuns(held).filter((h) => h.status === 'running');
  const outcomes = ended.length
    ? await recordJudgements(
        { db: s.db, production, actor: s.actor },
        ended.map((run) => ({ run, update: { run: run.run, exitCode: 0 }, outcome: { kind: 'finished' as const, run: run.run } })),
      )
    : [];
  const finished = outcomes.filter((o) => o.kind === 'finished').length;
  held = await readHeldRuns(s.db, s.actor.sessionId);
  const want = planClaim(planOf(s, held), false);
  if (want > 0) await claimRuns(s.db, { productionId: s.productionId, parentId: null, session: { id: s.actor.sessionId, user: s.actor.user }, limit: want });
  // Downloads: the planned ones start in one batch; each arrives on its own (no archive limit here).
  held = await readHeldRuns(s.db, s.actor.sessionId);
  const toDownload = planDownloads(planOf(s, held), Infinity).start.map((r) => r.run);
  if (toDownload.length) await toDownloading(s.db, fence, toDownload.map((run) => ({ run, stagedBytes: 1, stagedPath: `/bench/run${run}` })));
  for (const run of toDownload) await toStaged(s.db, fence, { run, stagedPath: `/bench/run${run}`, stagedBytes: 1 }, 'staged');
  // Submissions while fewer than nproc are on the grid, one by one.
  held = await readHeldRuns(s.db, s.actor.sessionId);
  for (const r of planSubmissions(planOf(s, held))) await toSubmitted(s.db, fence, { run: r.run, jobId: `bench-${r.run}`, jobToken: 'bench' }, 'submitted');
  held = await readHeldRuns(s.db, s.actor.sessionId);
  const base = await readSnapshotBase(s.db, s.productionId, s.actor.sessionId);
  const end = planEnd({ holding: held.length, draining: false, options: options(s), claimsMade: 0, claimingPaused: false, production, counts: base.counts });
  if (end.kind === 'stop-if-nothing-left') await nothingLeftToClaim(s.db, { productionId: s.productionId, parentId: null });
  return finished;
}
