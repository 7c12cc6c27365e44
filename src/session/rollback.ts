import { rm } from 'node:fs/promises';
import { isOffGrid, isOnGrid, isOnGridStatus } from '../core/held-run.js';
import type { HeldStatus } from '../core/statuses.js';
import type { Grid } from '../grids/grid.js';
import { partialDownloadPath } from '../outputs/paths.js';
import type { HeldRunDetail } from '../state/held-runs.js';
import { endSession } from '../state/sessions.js';
import { returnRunsToPool } from '../state/transition.js';
import { attemptFiles, isInStaging, removeAttemptFiles, removeStagedInput } from './attempt-files.js';
import type { JobContext } from './context.js';
import type { Journal } from './journal.js';
import type { SnapshotAbort } from './snapshot.js';

/**
 * How a session gives back what it holds: on Ctrl-C (cancel its jobs, return every unfinished run
 * to `new`, delete transient files, end the session), on a drain (return the runs not yet on the
 * grid) and when it finds itself fenced out (touch no run; delete only its own unsubmitted inputs).
 */

/**
 * Returns held runs to `new` in one transaction (not counted as attempts) and
 * deletes their transient files. The runs are re-read under row locks inside
 * the transaction, so a run that changed status since it was last looked at
 * (a pass still under way) is returned from the status it is in now, and
 * never left held by a session that is about to end. Also tells the job ids
 * the returned runs had on the grid, as seen under the lock.
 */
export async function returnRuns(job: JobContext, runs: readonly HeldRunDetail[], message: string): Promise<{ returned: number[]; jobIds: string[] }> {
  const wanted = runs.map((r) => r.run);
  const sessionId = job.actor.sessionId;
  const { returned, current, jobIds } = await job.db.transaction().execute(async (tx) => {
    const locked = await tx
      .selectFrom('production_runs')
      .select(['run_number', 'status', 'job_id'])
      .where('session_id', '=', sessionId)
      .where('run_number', 'in', wanted.length ? wanted : [-1])
      .forUpdate()
      .execute();
    const returned = await returnRunsToPool(tx, {
      productionId: job.production.id,
      runs: locked.map((r) => ({ run: r.run_number, status: r.status })),
      owner: sessionId,
      actor: job.actor,
      reason: 'rolled_back',
      message,
    });
    const jobIds = locked.flatMap((r) => (isOnGridStatus(r.status as HeldStatus) && r.job_id && returned.includes(r.run_number) ? [r.job_id] : []));
    return { returned, current: new Map(locked.map((r) => [r.run_number, r.status as HeldStatus])), jobIds };
  });
  // Files of the runs as they were when returned (a job submitted meanwhile has outputs to remove too).
  await removeTransientFiles(job, runs.filter((r) => returned.includes(r.run)).map((r) => ({ run: r, status: current.get(r.run) ?? r.status })));
  return { returned, jobIds };
}

/** The staged input and partial download of each run, and, for a run whose job was on the grid, its attempt's files. */
export async function removeTransientFiles(job: JobContext, runs: readonly { run: HeldRunDetail; status: HeldStatus }[]): Promise<void> {
  for (const { run, status } of runs) {
    if (run.stagedPath && isInStaging(job.production, run.stagedPath)) {
      await rm(run.stagedPath, { force: true });
      await rm(partialDownloadPath(run.stagedPath, job.actor.sessionId, run.attempts + 1), { force: true });
    }
    if (isOnGridStatus(status)) await removeAttemptFiles(attemptFiles(job.production, job.actor.user, run));
  }
}

/** Drain: returns the runs not yet on the grid; resolves to those returned. */
export async function returnUnsubmitted(job: JobContext, held: readonly HeldRunDetail[]): Promise<number[]> {
  return (await returnRuns(job, held.filter(isOffGrid), 'drained: returned before submission')).returned;
}

/** Fenced out: the runs are someone else's now; only the inputs this session staged for runs not yet submitted go. */
export async function removeUnsubmittedInputs(job: JobContext, held: readonly HeldRunDetail[]): Promise<void> {
  for (const run of held.filter(isOffGrid)) await removeStagedInput(job.production, run.stagedPath);
}

export interface RollbackDeps {
  job: JobContext;
  grid: Grid;
  journal: Journal;
  readHeld(): Promise<HeldRunDetail[]>;
  leaseSeconds: number;
}

/**
 * The rollback of an abort, once downloads and the pass under way have stopped: cancel every job
 * of this session, return its unfinished runs, and end the session; then once more for a run or
 * job that a pass moved meanwhile. With the database down, the jobs are still cancelled and the
 * files deleted, and the runs come back when the lease expires and someone reaps the session.
 * Fills `state` as it goes, for the display's abort view.
 */
export async function rollBackSession(deps: RollbackDeps, reason: string, lastKnown: readonly HeldRunDetail[], state: SnapshotAbort): Promise<void> {
  const { job, grid, journal } = deps;
  const cancel = async (jobIds: readonly string[]) => {
    for (const jobId of jobIds) {
      journal.emit('rollback', null, `Cancelling job ${jobId}`);
      state.cancelledJobs.push(jobId);
    }
    if (jobIds.length) await grid.cancel([...jobIds]).catch((e: unknown) => journal.emit('error', null, `ERROR: cancelling jobs failed: ${(e as Error).message}`));
  };
  let runs = lastKnown;
  let databaseDown = false;
  try {
    runs = await deps.readHeld();
  } catch {
    databaseDown = true;
  }
  await cancel(runs.filter(isOnGrid).map((r) => r.jobId));
  if (!databaseDown) {
    try {
      const first = await returnRuns(job, runs, `aborted (${reason})`);
      state.rolledBackRuns = first.returned;
      journal.emit('rollback', null, `Aborting runs: [${first.returned.join(', ')}]`);
      // A run that a pass still under way moved in the meantime is returned too, and a job
      // submitted in the meantime is cancelled too.
      const late = await returnRuns(job, await deps.readHeld(), `aborted (${reason})`);
      if (late.returned.length) {
        state.rolledBackRuns.push(...late.returned);
        journal.emit('rollback', null, `Aborting runs: [${late.returned.join(', ')}]`);
      }
      await cancel([...first.jobIds, ...late.jobIds].filter((id) => !state.cancelledJobs.includes(id)));
      await endSession(job.db, job.actor.sessionId, job.actor, `aborted (${reason})`);
    } catch {
      databaseDown = true;
    }
  }
  if (databaseDown) {
    await removeTransientFiles(job, runs.map((run) => ({ run, status: run.status })));
    const note =
      `The database cannot be reached: the jobs were cancelled, and the runs of session ${job.actor.sessionId.slice(0, 8)} ` +
      `(${runs.map((r) => r.run).join(', ') || 'none'}) return to new when its lease expires (${deps.leaseSeconds}s) ` +
      'and another session or `run-production sessions --reap` reaps it.';
    state.note = note;
    journal.emit('error', null, note);
  }
}
