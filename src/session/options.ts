/** How a session runs: the `run` command's flags, as the loop and its stages read them. */
export interface LoopOptions {
  nproc: number;
  nprep: number;
  spacelim: number;
  pauseSeconds: number;
  datasets: string[];
  limit: number | null;
  /**
   * When the session ends by itself. done: once every run (of --dataset, when given) is finished or
   * failed, whoever did them; until then it keeps passing, so it reaps, adopts and claims whatever
   * comes back. idle: once this session holds nothing and nothing is left to claim right now.
   * null: never (it waits for work).
   */
  until: 'done' | 'idle' | null;
  leaseSeconds: number;
  orphans: 'adopt' | 'cancel';
  /** Seconds a pass may make no progress before the session stops heartbeating; null: watchdogSeconds(). */
  watchdogSeconds: number | null;
}

/** Why a session aborts, and the exit code each gives (128 + the signal's number). */
export type AbortReason = 'SIGINT' | 'SIGTERM' | 'SIGHUP' | 'error';
export const ABORT_EXIT: Record<AbortReason, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129, error: 1 };

/** How the loop ended. */
export interface LoopResult {
  exitCode: number;
  reason: string;
}
