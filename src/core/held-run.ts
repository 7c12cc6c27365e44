import { ON_GRID_STATUSES, type HeldStatus } from './statuses.js';

/**
 * A run a session holds, as a union by status: only a run whose job is on the grid has a job id,
 * so code that polls, cancels or adopts a job never has to assert one (`jobId!`).
 */
interface HeldRunFields {
  run: number;
  dataset: string;
  /** Job attempts used so far; the next attempt is attempts + 1. */
  attempts: number;
  /** Where its input is staged (or, before that, reserved); null before a download started. */
  stagedPath: string | null;
}

export type OffGridStatus = Exclude<HeldStatus, OnGridStatus>;
export type OnGridStatus = (typeof ON_GRID_STATUSES)[number];

export type OffGridRun = HeldRunFields & { status: OffGridStatus; jobId: null; jobToken: null };
export type OnGridRun = HeldRunFields & {
  status: OnGridStatus;
  jobId: string;
  /** Release token of the job's submission (see JobRelease); null for a job submitted before tokens. */
  jobToken: string | null;
};

export type HeldRun = OffGridRun | OnGridRun;

/** Whether a held run's job is on the grid (submitted or running). */
export function isOnGrid<R extends { status: HeldStatus }>(run: R): run is Extract<R, { status: OnGridStatus }> {
  return isOnGridStatus(run.status);
}

export function isOnGridStatus(status: HeldStatus): status is OnGridStatus {
  return (ON_GRID_STATUSES as readonly HeldStatus[]).includes(status);
}

/** Whether a held run has not reached the grid yet: returned to the pool, not cancelled, on a drain or abort. */
export function isOffGrid<R extends { status: HeldStatus }>(run: R): run is Extract<R, { status: OffGridStatus }> {
  return !isOnGrid(run);
}

/** A held run's columns of production_runs, as the database has them. */
export interface HeldRunRow {
  run_number: number;
  dataset: string;
  status: HeldStatus;
  attempts: number;
  job_id: string | null;
  job_token: string | null;
  staged_path: string | null;
}

/**
 * The held-run fields from a row as the database has them. A run on the grid always has a job id
 * (staged → submitted records it, and only a new claim clears it), so one without is a broken row.
 */
export function heldRunFromRow(row: HeldRunRow): HeldRun {
  const fields = { run: row.run_number, dataset: row.dataset, attempts: row.attempts, stagedPath: row.staged_path };
  const { status } = row;
  if (isOnGridStatus(status)) {
    if (row.job_id === null) throw new Error(`run ${row.run_number} is ${status} but has no job id`);
    return { ...fields, status, jobId: row.job_id, jobToken: row.job_token };
  }
  return { ...fields, status, jobId: null, jobToken: null };
}
