import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { transitionRuns, type Actor, type RunUpdate } from './transition.js';

/**
 * The moves a session makes on the runs it holds, each a named function over transitionRuns with
 * the fence in its name's place: the session must hold the runs now (see transitionRuns), so a
 * session whose lease expired moves nothing. Each names the reason its events carry
 * (src/core/event-reasons.ts), and resolves to the runs actually moved.
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
  move(db, fence, { runs, from: 'claimed', to: 'downloading', reason: 'download_started', message: 'download started' });

/** downloading → staged: the verified input is recorded before it is renamed into place. */
export const toStaged = (db: Executor, fence: SessionFence, run: { run: number; stagedPath: string; stagedBytes: number }, message: string) =>
  move(db, fence, { runs: [run], from: 'downloading', to: 'staged', reason: 'staged', message });

/** claimed → staged for a child production: its input is the parent run's output, used in place. */
export const toStagedFromParent = (db: Executor, fence: SessionFence, runs: readonly { run: number; stagedPath: string }[], message: string) =>
  move(db, fence, { runs, from: 'claimed', to: 'staged', reason: 'staged', message });

/** claimed → new: a child's run whose parent has no recorded output after all. */
export const toNewForMissingParent = (db: Executor, fence: SessionFence, runs: readonly { run: number; lastError: string }[], message: string) =>
  move(db, fence, { runs, from: 'claimed', to: 'new', reason: 'parent_missing', message });

/**
 * downloading → new or failed: the input is the run's fault (missing, or the same wrong bytes every
 * try: counted), or the archive refused the credentials (not counted: the run is left for a
 * session that can read it).
 */
export const toNewOrFailedFromDownload = (
  db: Executor,
  fence: SessionFence,
  run: { run: number; lastError: string },
  to: 'new' | 'failed',
  why: { reason: 'input_missing' | 'download_failed'; countAttempt: true } | { reason: 'archive_refused'; countAttempt: false },
) => move(db, fence, { runs: [run], from: 'downloading', to, countAttempt: why.countAttempt, reason: why.reason, message: run.lastError });

/** staged → submitted, recording the job and its release token: only then may the job be released. */
export const toSubmitted = (db: Executor, fence: SessionFence, run: { run: number; jobId: string; jobToken: string }, message: string) =>
  move(db, fence, { runs: [run], from: 'staged', to: 'submitted', reason: 'submitted', message });

/** submitted → running: the scheduler says the jobs started. */
export const toRunning = (db: Executor, fence: SessionFence, runs: readonly number[]) =>
  move(db, fence, { runs, from: 'submitted', to: 'running', reason: 'started', message: 'job started' });

/** How an attempt ended, as a move: where the run goes, whether the attempt counts, and why. */
export type AttemptEnd =
  | { to: 'finished'; countAttempt: true; reason: 'finished' }
  | { to: 'new'; countAttempt: true; reason: 'retry' | 'prepare_failed' }
  | { to: 'failed'; countAttempt: true; reason: 'failed' | 'prepare_failed' }
  /** A revoked job is redone as the same attempt. */
  | { to: 'new'; countAttempt: false; reason: 'revoked' };

/**
 * An attempt's end: submitted or running (or staged, for a job that could not be prepared) →
 * finished, new or failed, each run with its own values and event message.
 */
export const toAttemptEnd = (db: Executor, fence: SessionFence, from: 'staged' | 'submitted' | 'running', end: AttemptEnd, runs: readonly RunUpdate[]) =>
  move(db, fence, { runs, from, to: end.to, countAttempt: end.countAttempt, reason: end.reason });
