/**
 * Fault injection for the process tests: with RUN_PRODUCTION_CRASH_AT=POINT in
 * its environment, a session kills itself with SIGKILL the first time it reaches
 * that point, as a power cut or the OOM killer would, so that a test can prove
 * what another session makes of what it left. Nothing happens without the
 * variable; shifters never set it.
 *
 *  - submitted: the scheduler accepted a job, the database has not recorded it;
 *  - recorded:  the job is recorded, not yet released.
 */
export type CrashPoint = 'submitted' | 'recorded';

export const CRASH_AT_ENV = 'RUN_PRODUCTION_CRASH_AT';

export function crashPointForTests(point: CrashPoint): void {
  if (process.env[CRASH_AT_ENV] === point) process.kill(process.pid, 'SIGKILL');
}
