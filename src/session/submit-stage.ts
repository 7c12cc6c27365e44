import { isDatabaseUnavailable } from '../db/connection.js';
import { crashPointForTests } from '../core/crash-points.js';
import { diskFault } from '../core/disk-faults.js';
import { GridUnavailableError } from '../grids/grid.js';
import { releaseJob } from '../grids/wrapper.js';
import type { HeldRunDetail } from '../state/held-runs.js';
import { toSubmitted } from '../state/moves.js';
import { fenceOf } from './context.js';
import { failAttemptBeforeSubmit } from './judge.js';
import { jobOutcomeLine } from './messages.js';
import { prepareJob, type PreparedJob } from './prepare-job.js';
import type { Stage } from './stage.js';

/**
 * Submits staged runs, one job each, by the gated protocol: prepare the job, submit it held at its
 * gate, record it (staged → submitted, with its release token), and only then release it. A
 * session killed before the record leaves a job that never runs; killed after, a job that whoever
 * adopts the run releases. True when it submitted any; it stops at the pass's scheduler deadline.
 */
export async function submitStaged(stage: Stage, runs: readonly HeldRunDetail[], modulesFile: string, deadline: number): Promise<boolean> {
  const { grid, journal } = stage;
  let submitted = false;
  for (const run of runs) {
    // The pass's scheduler budget is used up: the other staged runs are submitted next pass.
    if (Date.now() > deadline) break;
    stage.heartbeat.progress(`submitting run ${run.run} to ${grid.backend}`);
    const job = await prepareOrFail(stage, run, modulesFile);
    if (job === 'disk-fault') return submitted;
    if (job === 'failed') continue;
    journal.emit('submit', run.run, `Submitting run: ${run.run}`);
    let jobId: string;
    try {
      jobId = await grid.submit(job);
      journal.clearAlert('backend-failing', `INFO: The ${grid.backend} backend answers again.`);
    } catch (error) {
      if (!(error instanceof GridUnavailableError)) throw error;
      journal.setAlert('backend-failing', `${grid.backend} backend failing: ${error.message}`);
      return submitted; // the run stays staged; tried again next loop
    }
    submitted = true;
    crashPointForTests('submitted');
    const moved = await toSubmitted(stage.job.db, fenceOf(stage.job), { run: run.run, jobId, jobToken: job.release.token }, `submitted to ${grid.backend} as ${jobId}, attempt ${run.attempts + 1}`);
    if (moved.length === 0) {
      // We lost the run between preparing and recording: the job was never released, cancel it.
      await grid.cancel([jobId]);
      journal.emit('warning', run.run, `WARNING: run ${run.run} was taken over; cancelled job ${jobId}`);
      continue;
    }
    // Recorded: now it may run. Killed before this line, the job is released by whoever adopts the run.
    crashPointForTests('recorded');
    await releaseJob(job.release);
  }
  return submitted;
}

/**
 * One run's job could not be prepared (its dataset's output directory cannot be made): that
 * attempt fails, the other runs and their jobs go on. A full or read-only output disk is no run's
 * fault: submissions pause with a banner until it takes files again.
 */
async function prepareOrFail(stage: Stage, run: HeldRunDetail, modulesFile: string): Promise<PreparedJob | 'failed' | 'disk-fault'> {
  try {
    const job = await prepareJob(stage.job, run, modulesFile);
    stage.journal.clearAlert('outputs-failing', 'INFO: The output area takes files again; submissions go on.');
    return job;
  } catch (error) {
    if (isDatabaseUnavailable(error)) throw error;
    const disk = diskFault(error);
    if (disk) {
      stage.journal.setAlert('outputs-failing', `Output area not writable: ${disk}; no new submissions, no attempt counted`);
      return 'disk-fault';
    }
    const line = jobOutcomeLine(await failAttemptBeforeSubmit(stage.job, run, (error as Error).message), stage.job.production.maxAttempts);
    stage.journal.emit(line.kind, line.run, line.text);
    return 'failed';
  }
}
