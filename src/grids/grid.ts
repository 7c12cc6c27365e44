/**
 * Where jobs run. Every backend (local processes, Slurm, SGE, HTCondor) hides
 * behind this interface, and every backend runs the user's script through the
 * same wrapper (bin/rp-job-wrapper), which records exit code, host and times in
 * a status file next to the logs. A finished job is therefore judged the same
 * way everywhere, even when the scheduler has already forgotten it.
 */

import type { JobRelease } from './wrapper.js';

/** What the loop asks a grid to run. All paths are absolute. */
export interface JobSpec {
  /** Scheduler job name; carries production, version and run, e.g. `rp-alcapana-v3-r2091`. */
  name: string;
  /** The user's job script (from the frozen production config). */
  script: string;
  /** Environment for the script: RUN, DATASET, INPUT, OUTPUT_<NAME>, ... */
  env: Record<string, string>;
  /** Working directory of the job. */
  workDir: string;
  /** Where the script's stdout and stderr go (the `olog`/`elog` outputs when declared). */
  stdoutPath: string;
  stderrPath: string;
  /** Where the wrapper writes its status file (see wrapper.ts). */
  statusPath: string;
  /**
   * The job's gate (see wrapper.ts): when present, the job runs its script only
   * once released. The loop always gates; a job without one runs at once.
   */
  release?: JobRelease;
}

/** A job as one backend sees it right now. */
export type JobState =
  | { readonly state: 'queued' }
  | { readonly state: 'running'; readonly host?: string }
  /** The job ended; exitCode as recorded by the wrapper or the scheduler (128+N for signal N). */
  | { readonly state: 'done'; readonly exitCode: number; readonly host?: string; readonly reason?: string }
  /** Neither the scheduler nor the wrapper's status file know the job: it vanished. */
  | { readonly state: 'lost'; readonly reason: string }
  /**
   * Not judged this pass: the poll's time budget (PollOptions.deadline) ran out
   * before the per-job lookup this job needed (scontrol, sacct, qacct,
   * condor_history). Says nothing about the job; the next pass asks again.
   */
  | { readonly state: 'unknown'; readonly reason: string };

/** How one poll may spend its time. */
export interface PollOptions {
  /**
   * Epoch ms. Once past, the backend makes no further per-job lookups and
   * answers the jobs it did not look at with NOT_LOOKED_AT. The one bulk query
   * (squeue, qstat, condor_q) is made whatever the deadline.
   */
  deadline?: number;
}

/** The answer for a job a poll skipped because its deadline had passed. */
export const NOT_LOOKED_AT = { state: 'unknown', reason: 'not looked at this pass: scheduler time budget used' } as const satisfies JobState;

/** Whether a poll's budget is spent: checked before each lookup beyond the bulk query. */
export function budgetUsed(options: PollOptions | undefined): boolean {
  return options?.deadline !== undefined && Date.now() >= options.deadline;
}

/** A job to look at: its id and the wrapper status file that backs the scheduler's answer. */
export interface JobRef {
  jobId: string;
  statusPath: string;
}

export interface Grid {
  /** Backend name as written in the config (`local`, `slurm`, `sge`, `htcondor`). */
  readonly backend: string;
  /** Submit one job; resolves to the backend's job id. Throws GridUnavailableError when the scheduler is down. */
  submit(job: JobSpec): Promise<string>;
  /**
   * Look at many jobs at once (one scheduler query, not one per job). Every
   * asked id is in the answer: with options.deadline passed, jobs that needed a
   * further lookup come back `unknown` (see PollOptions).
   */
  poll(jobs: readonly JobRef[], options?: PollOptions): Promise<Map<string, JobState>>;
  /** Cancel many jobs at once; ids that are already gone are not an error. */
  cancel(jobIds: readonly string[]): Promise<void>;
  /**
   * Whether this grid can see and act on that job from here (the local grid only
   * reaches processes on its own host). Used when adopting a dead session's jobs.
   */
  canReach(jobId: string): boolean;
}

/** The scheduler could not be reached or refused the request: retry later, the run stays where it is. */
export class GridUnavailableError extends Error {
  override readonly name = 'GridUnavailableError';
}
