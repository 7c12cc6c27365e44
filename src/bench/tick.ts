import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { claimRuns } from '../state/claim.js';
import { readHeldRuns, recordJudgements, type HeldRunDetail } from '../session/jobs.js';
import { getProduction } from '../state/productions.js';
import { heartbeat, reapExpiredSessions } from '../state/sessions.js';
import { readSnapshotBase } from '../state/snapshot-queries.js';
import type { HeldStatus } from '../core/statuses.js';
import { transitionRuns, type Actor } from '../state/transition.js';

/**
 * One pass of the operator loop's database work, in the loop's order
 * (src/coordinator/loop.ts tick()), without a grid or files: jobs "end" on the
 * pass after they start and downloads complete at once. The coordinator
 * functions are the real ones (the held runs are read with the loop's own
 * readHeldRuns; nothingLeftToClaim is private to the loop and repeated here
 * with the same SQL). Moves the loop makes per run (a download arriving, a
 * submission) are made per run here too, and the ended jobs are recorded
 * together through the loop's own recordJudgements, so the statement count
 * per pass is the loop's.
 */

export interface TickSession {
  db: Kysely<Database>;
  productionId: number;
  actor: Actor & { sessionId: string };
  nproc: number;
  nprep: number;
}

const loadHeld = (s: TickSession): Promise<HeldRunDetail[]> => readHeldRuns(s.db, s.actor.sessionId);

async function nothingLeftToClaim(s: TickSession): Promise<boolean> {
  const row = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM (
      SELECT 1 FROM production_runs AS r
       WHERE r.production_id = ${s.productionId} AND r.is_new
       LIMIT 1) AS left_to_claim`.execute(s.db);
  return row.rows[0]!.n === 0;
}

const move = (s: TickSession, runs: number[], from: HeldStatus, to: 'downloading' | 'staged' | 'submitted' | 'running' | 'finished') =>
  transitionRuns(s.db, { productionId: s.productionId, runs, from, to, owner: s.actor.sessionId, actor: s.actor, countAttempt: to === 'finished' });

/** Resolves to the runs this pass finished. */
export async function tick(s: TickSession): Promise<number> {
  if (!(await heartbeat(s.db, s.actor.sessionId))) throw new Error('bench session was reaped');
  await reapExpiredSessions(s.db, s.actor);
  const production = await getProduction(s.db, s.productionId);
  // Jobs: submitted ones start (one batch), running ones end and are recorded together.
  let held = await loadHeld(s);
  const started = held.filter((r) => r.status === 'submitted').map((r) => r.run);
  if (started.length) await move(s, started, 'submitted', 'running');
  const ended = held.filter((h) => h.status === 'running');
  const outcomes = ended.length
    ? await recordJudgements(
        { db: s.db, production, actor: s.actor },
        ended.map((run) => ({ run, to: 'finished' as const, update: { run: run.run, exitCode: 0 }, outcome: { kind: 'finished' as const, run: run.run } })),
      )
    : [];
  const finished = outcomes.filter((o) => o.kind === 'finished').length;
  // Claim up to nproc + nprep held.
  held = await loadHeld(s);
  const want = s.nproc + s.nprep - held.length;
  if (want > 0) await claimRuns(s.db, { productionId: s.productionId, parentId: null, session: { id: s.actor.sessionId, user: s.actor.user }, limit: want });
  // Downloads: claimed runs start in one batch; each arrives on its own.
  held = await loadHeld(s);
  const toDownload = held.filter((r) => r.status === 'claimed').map((r) => r.run);
  if (toDownload.length) await move(s, toDownload, 'claimed', 'downloading');
  for (const run of toDownload) await move(s, [run], 'downloading', 'staged');
  // Submissions while fewer than nproc are on the grid, one by one.
  held = await loadHeld(s);
  const onGrid = held.filter((r) => r.status === 'submitted' || r.status === 'running').length;
  for (const r of held.filter((h) => h.status === 'staged').slice(0, Math.max(s.nproc - onGrid, 0))) await move(s, [r.run], 'staged', 'submitted');
  held = await loadHeld(s);
  await readSnapshotBase(s.db, s.productionId, s.actor.sessionId);
  if (held.length === 0) await nothingLeftToClaim(s);
  return finished;
}
