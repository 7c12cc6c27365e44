import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { transitionRuns, type Actor, type RunUpdate } from './transition.js';

/**
 * The moves a session makes on the runs it holds, each a named function over transitionRuns with
 * the fence in its name's place: the session must hold the runs now (see transitionRuns), so a
 * session whose lease expired moves nothing. Each resolves to the runs actually moved.
 */

/** The session acting on its own runs: the production, and the session that must hold them. */
export interface SessionFence {
  productionId: number;
  actor: Actor & { sessionId: string };
}

type Executor = Kysely<Database>;

const move = (db: Executor, fence: SessionFence, request: Omit<Parameters<typeof transitionRuns>[1], 'productionId' | 'owner' | 'actor'>) =>
  transitionRuns(db, { ...request, productionId: fence.productionId, owner: fence.actor.sessionId, actor: fence.actor });

/** claimed → downloading, with each run's reservation: the bytes it expects and where they go. */
export const toDownloading = (db: Executor, fence: SessionFence, runs: readonly { run: number; stagedBytes: number; stagedPath: string }[]) =>
  move(db, fence, { runs, from: 'claimed', to: 'downloading', message: 'download started' });

/** downloading → staged: the verified input is recorded before it is renamed into place. */
export const toStaged = (db: Executor, fence: SessionFence, run: { run: number; stagedPath: string; stagedBytes: number }, message: string) =>
  move(db, fence, { runs: [run], from: 'downloading', to: 'staged', message });

/** claimed → staged for a child production: its input is the parent run's output, used in place. */
export const toStagedFromParent = (db: Executor, fence: SessionFence, runs: readonly { run: number; stagedPath: string }[], message: string) =>
  move(db, fence, { runs, from: 'claimed', to: 'staged', message });

/** claimed → new: a child's run whose parent has no recorded output after all. */
export const toNewForMissingParent = (db: Executor, fence: SessionFence, runs: readonly { run: number; lastError: string }[], message: string) =>
  move(db, fence, { runs, from: 'claimed', to: 'new', message });

/** downloading → new or failed: the input is the run's fault (counted) or the credentials are (not counted). */
export const toNewOrFailedFromDownload = (
  db: Executor,
  fence: SessionFence,
  run: { run: number; lastError: string },
  to: 'new' | 'failed',
  countAttempt: boolean,
) => move(db, fence, { runs: [run], from: 'downloading', to, countAttempt, message: run.lastError });

/** staged → submitted, recording the job and its release token: only then may the job be released. */
export const toSubmitted = (db: Executor, fence: SessionFence, run: { run: number; jobId: string; jobToken: string }, message: string) =>
  move(db, fence, { runs: [run], from: 'staged', to: 'submitted', message });

/** submitted → running: the scheduler says the jobs started. */
export const toRunning = (db: Executor, fence: SessionFence, runs: readonly number[]) =>
  move(db, fence, { runs, from: 'submitted', to: 'running', message: 'job started' });

/**
 * An attempt's end: submitted or running (or staged, for a job that could not be prepared) →
 * finished, new or failed, each run with its own values and event message. countAttempt is false
 * only for a revoked job, which is redone as the same attempt.
 */
export const toAttemptEnd = (
  db: Executor,
  fence: SessionFence,
  from: 'staged' | 'submitted' | 'running',
  to: 'finished' | 'new' | 'failed',
  runs: readonly RunUpdate[],
  countAttempt: boolean,
) => move(db, fence, { runs, from, to, countAttempt });
