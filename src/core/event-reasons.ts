import { ON_GRID_STATUSES, type RunStatus } from './statuses.js';

/**
 * Why an event was written: the code in `events.reason`. The same list, with one sentence per code,
 * is the table `event_reasons` of sql/010_structured_events.sql, and a CHECK on `events.reason`
 * refuses any other code; a test keeps the three equal. The bookkeeping views count by these codes
 * (a failed attempt, a run rolled back ...) instead of reading the event's message, which stays
 * for people.
 */
export const EVENT_REASONS = [
  // Moves of a run (kind 'transition'), on its way through an attempt.
  'claimed', // new -> claimed
  'download_started', // claimed -> downloading: the staging reservation is taken
  'staged', // -> staged: the input arrived and was verified, or a child production reads its parent's output in place
  'submitted', // staged -> submitted: the job is recorded (job_id) and may be released
  'started', // submitted -> running: the scheduler says the job runs
  'finished', // -> finished: the job ended with valid outputs (an attempt counted)
  // A failed attempt, counted against max_attempts; to_status says whether attempts are left (new) or used up (failed).
  'retry', // a job attempt failed, attempts are left: back to new
  'failed', // a job attempt failed and the attempts are used up
  'input_missing', // the archive has no input for the run (new or failed)
  'download_failed', // the input could not be downloaded intact, the same wrong bytes every try (new or failed)
  'prepare_failed', // the job could not be prepared (an output directory, a full disk) (new or failed)
  // Back to new without an attempt counted.
  'rolled_back', // returned by its own session: abort (Ctrl-C, SIGTERM, an error) or drain
  'reaped', // returned by a reaper (lease expired, or ended still holding runs); also the reap event itself
  'released', // returned by an operator's release --force; also the release event itself
  'revoked', // its job was revoked by a reaper that could not reach it, and ended by its wrapper: redone as the same attempt
  'parent_missing', // a child production's run whose parent run has no recorded output
  'archive_refused', // the archive refused the session's credentials: the run is left for a session that can read it
  // A run moved by an operator, or handed over.
  'retried_by_operator', // failed -> new by `retry`; also the retry event itself
  'validated_bad', // finished -> new by `validate --fix` (outputs damaged); also the validate-fix event itself
  'adopted', // a live session took over a dead session's run, status unchanged (kind 'adopt')
  // Production and session actions.
  'paused', // an operator paused the production
  'auto_paused', // the production paused itself (consecutive failed attempts, or a failing archive or staging disk)
  'resumed', // a paused production was resumed
  'reopened', // a closed production was reopened (resume)
  'closed', // the production was closed
  'limits_changed', // max-running changed
  'production_created', // `new` made the production
  'catalogue_imported', // `datasets import` changed the run catalogue
  'session_started',
  'session_ended',
  // Only in events written before 010 whose kind and message fit none of the above (back-fill).
  'other',
] as const;

export type EventReason = (typeof EVENT_REASONS)[number];

export function isEventReason(value: string): value is EventReason {
  return (EVENT_REASONS as readonly string[]).includes(value);
}

/** A move as transitionRuns sees it, for a caller that names no reason. */
export interface MoveShape {
  from: RunStatus;
  to: RunStatus;
  /** The move counts a used attempt. */
  countAttempt: boolean;
  /** The run carries an error to record (RunUpdate.lastError). */
  carriesError: boolean;
}

const onGrid = (status: RunStatus) => (ON_GRID_STATUSES as readonly RunStatus[]).includes(status);

/**
 * The reason of a move whose caller named none, from its shape alone. Every move today's callers
 * make gets its right code, except one they must name: a missing input (`input_missing`) looks like
 * any counted download failure and is derived as `download_failed`. An uncounted return to `new`
 * that carries an error is a failure that is nobody's attempt (a parent without output, credentials
 * refused, a revoked job); without one it is a roll-back by the run's own session. A reaper's and a
 * release's returns look the same as a roll-back: those callers name `reaped` and `released`.
 */
export function reasonForMove(move: MoveShape): EventReason {
  const { from, to } = move;
  switch (to) {
    case 'claimed':
      return 'claimed';
    case 'downloading':
      return 'download_started';
    case 'staged':
      return 'staged';
    case 'submitted':
      return 'submitted';
    case 'running':
      return 'started';
    case 'finished':
      return 'finished';
    case 'failed':
      return from === 'downloading' ? 'download_failed' : from === 'staged' ? 'prepare_failed' : 'failed';
    case 'new':
      return reasonForReturn(move);
  }
}

function reasonForReturn({ from, countAttempt, carriesError }: MoveShape): EventReason {
  if (from === 'failed') return 'retried_by_operator';
  if (from === 'finished') return 'validated_bad';
  if (countAttempt) return from === 'downloading' ? 'download_failed' : from === 'staged' ? 'prepare_failed' : 'retry';
  if (!carriesError) return 'rolled_back';
  if (from === 'claimed') return 'parent_missing';
  if (from === 'downloading') return 'archive_refused';
  return onGrid(from) ? 'revoked' : 'rolled_back';
}
