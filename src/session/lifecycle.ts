/** Where a session is in its life; one phase at a time, so that no two can combine. */
export type Lifecycle =
  | { phase: 'starting' }
  | { phase: 'running' }
  /** d / q / SIGUSR1: no new work; runs not on the grid returned; waiting for the jobs. */
  | { phase: 'draining' }
  | { phase: 'aborting'; rollback: Promise<void> }
  /** rollback: the abort that stopped it, if one did (a second Ctrl-C waits for it). */
  | { phase: 'stopped'; rollback: Promise<void> | null };

/** Whether passes still run: while running or draining. */
export const passesRun = (lifecycle: Lifecycle): boolean => lifecycle.phase === 'running' || lifecycle.phase === 'draining';
