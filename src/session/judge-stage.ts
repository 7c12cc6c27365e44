import { GridUnavailableError, type JobState } from '../grids/grid.js';
import { checkAutoPause } from '../state/auto-pause.js';
import type { HeldRunDetail } from '../state/held-runs.js';
import { toRunning } from '../state/moves.js';
import { attemptFiles } from './attempt-files.js';
import { fenceOf } from './context.js';
import { assessEndedJob, onGridRuns, recordJudgements, type Judgement } from './judge.js';
import { jobOutcomeLine } from './messages.js';
import type { Stage } from './stage.js';

/**
 * Asks the grid about this session's jobs (within the pass's scheduler deadline), records those
 * that started, and judges and records those that ended; true when it moved any run. K failed
 * attempts in a row pause the production, so that nobody burns runs on a broken configuration.
 */
export async function judgeJobs(stage: Stage, held: readonly HeldRunDetail[], deadline: number): Promise<boolean> {
  const { grid, journal, job } = stage;
  const onGrid = onGridRuns(held);
  if (onGrid.length === 0) return false;
  let states: Map<string, JobState>;
  try {
    states = await grid.poll(
      onGrid.map((r) => ({ jobId: r.jobId, statusPath: attemptFiles(job.production, job.actor.user, r).statusPath })),
      { deadline },
    );
    journal.clearAlert('backend-failing', `INFO: The ${grid.backend} backend answers again.`);
  } catch (error) {
    if (!(error instanceof GridUnavailableError)) throw error;
    journal.setAlert('backend-failing', `${grid.backend} backend failing: ${error.message}`);
    return false;
  }
  const nowRunning = onGrid.filter((r) => r.status === 'submitted' && states.get(r.jobId)?.state === 'running');
  if (nowRunning.length) await toRunning(job.db, fenceOf(job), nowRunning.map((r) => r.run));
  // Every ended job of this pass is judged first (files only), then recorded in one statement per
  // kind of move: a pass that finds a hundred jobs ended writes them in one or two statements.
  const judgements: Judgement[] = [];
  for (const run of onGrid) {
    const state = states.get(run.jobId);
    if (state?.state === 'done' || state?.state === 'lost') judgements.push(await assessEndedJob(job, run, state));
  }
  if (judgements.length === 0) return nowRunning.length > 0;
  const outcomes = await recordJudgements(job, judgements);
  for (const outcome of outcomes) {
    const line = jobOutcomeLine(outcome, job.production.maxAttempts);
    journal.emit(line.kind, line.run, line.text);
  }
  if (outcomes.some((o) => o.kind === 'retry' || o.kind === 'failed')) {
    const paused = await checkAutoPause(job.db, job.production, job.actor);
    if (paused) await stage.autoPaused(paused);
  }
  return true;
}
