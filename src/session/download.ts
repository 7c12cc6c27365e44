import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fillTemplate } from '../config/templates.js';
import { isDatabaseUnavailable } from '../db/connection.js';
import { partialDownloadPath, stagedInputPath, templateValues } from '../outputs/paths.js';
import { ArchiveAuthError, ArchiveUnavailableError, MissingInputError, type Archive } from '../archives/archive.js';
import { sourceUrl } from '../archives/index.js';
import { checksumMismatch } from '../archives/verify.js';
import { diskFaultUnder, whyNotCreated } from '../core/disk-faults.js';
import type { HeldRunDetail } from '../state/held-runs.js';
import { toNewOrFailedFromDownload, toStaged } from '../state/moves.js';
import { runIdentity } from './attempt-files.js';
import { fenceOf, type JobContext } from './context.js';

/**
 * One run's input download: to a temporary name in the staging area, checked
 * against the catalogue's size and checksum, then renamed into place and the
 * run moved to `staged`.
 *
 * Whose fault a failure is decides what it costs. The run's: its file is
 * missing from an archive that answers, or arrives with the wrong size or
 * checksum every time; the run goes back to `new` with the attempt counted (or
 * to `failed`), so a broken input cannot loop for ever. The infrastructure's:
 * the archive's root is gone or the archive does not answer, or the staging
 * disk is full, read-only or refuses us; no attempt is counted, the run stays
 * `downloading` with its reservation, and the loop pauses downloads and tries
 * again later (see DownloadOutcome 'infrastructure').
 */

export type DownloadOutcome =
  | { kind: 'staged'; run: number; bytes: number; path: string }
  | { kind: 'returned' | 'failed'; run: number; error: string }
  | { kind: 'auth-failed'; run: number; error: string }
  /** Not the run's fault: it stays `downloading`, held, and is downloaded again once the fault passes. */
  | { kind: 'infrastructure'; run: number; where: 'archive' | 'staging'; error: string }
  | { kind: 'aborted' | 'lost-ownership'; run: number };

/** A downloaded file that is not the catalogue's: retried, then the run's fault. */
class InputMismatchError extends Error {
  override readonly name = 'InputMismatchError';
}

export interface DownloadHooks {
  onProgress(bytes: number, total: number | undefined): void;
  onRetry(attempt: number, error: string, delaySeconds: number): void;
}

/** Where a run's input is fetched from: its catalogue source, else the production's source template. */
export function inputUrl(context: Pick<JobContext, 'production' | 'actor'>, run: Pick<HeldRunDetail, 'run' | 'dataset' | 'source'>): URL {
  const config = context.production.config;
  if (config.input.kind !== 'archive') throw new Error('a child production reads its parent output in place');
  return sourceUrl(run.source ?? fillTemplate(config.input.source, templateValues(config, runIdentity(context.production, context.actor.user, run))));
}

/** Where a run's input is staged. */
export function stagedPathFor(context: Pick<JobContext, 'production' | 'actor'>, run: Pick<HeldRunDetail, 'run' | 'dataset' | 'source'>): string {
  return stagedInputPath(context.production.config, runIdentity(context.production, context.actor.user, run), inputUrl(context, run).pathname);
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

/** Where one run's download goes, and what it is checked against. */
interface DownloadTarget {
  context: JobContext;
  archive: Archive;
  run: HeldRunDetail;
  url: URL;
  staged: string;
  partial: string;
  signal: AbortSignal;
  hooks: DownloadHooks;
}

/** One try's end: the download's outcome, or a failure worth another try (mismatch: the bytes were not the catalogue's). */
type TryResult = { kind: 'outcome'; outcome: DownloadOutcome } | { kind: 'again'; error: string; mismatch: boolean };

export async function downloadRun(
  context: JobContext,
  archive: Archive,
  run: HeldRunDetail,
  signal: AbortSignal,
  hooks: DownloadHooks,
): Promise<DownloadOutcome> {
  const { production } = context;
  const url = inputUrl(context, run);
  const staged = stagedPathFor(context, run);
  const partial = partialDownloadPath(staged, context.actor.sessionId, run.attempts + 1);
  try {
    await mkdir(dirname(staged), { recursive: true });
  } catch (error) {
    const why = await whyNotCreated(production.config.stagingDir, error as NodeJS.ErrnoException);
    return { kind: 'infrastructure', run: run.run, where: 'staging', error: `cannot create ${dirname(staged)}: ${why.message}` };
  }
  const target: DownloadTarget = { context, archive, run, url, staged, partial, signal, hooks };
  const tries = production.config.archive.retries;
  let last: Extract<TryResult, { kind: 'again' }> = { kind: 'again', error: '', mismatch: false };
  for (let attempt = 1; attempt <= tries; attempt++) {
    if (signal.aborted) return { kind: 'aborted', run: run.run };
    const result = await tryDownload(target);
    if (result.kind === 'outcome') return result.outcome;
    last = result;
    if (attempt < tries) {
      const delay = Math.min(2 ** attempt, 30);
      hooks.onRetry(attempt, result.error, delay);
      await sleep(delay * 1000, signal);
    }
  }
  // The same wrong bytes every time are the input's fault; an archive that keeps failing is not the run's.
  if (last.mismatch) return giveUp(context, run, `download failed ${tries} times: ${last.error}`, { reason: 'download_failed', countAttempt: true });
  return { kind: 'infrastructure', run: run.run, where: 'archive', error: `download failed ${tries} times: ${last.error}` };
}

/**
 * One try: fetch to the partial name, check size and checksum, record the run staged, rename into
 * place. A stalled transfer must not hang the run: it is aborted when no byte arrives for the
 * archive's timeoutSeconds. Whose fault a failure is decides the outcome (see the module comment).
 */
async function tryDownload(target: DownloadTarget): Promise<TryResult> {
  const { context, archive, run, url, staged, partial, signal, hooks } = target;
  const { production } = context;
  const outcome = (outcome: DownloadOutcome): TryResult => ({ kind: 'outcome', outcome });
  const timeoutMs = production.config.archive.timeoutSeconds * 1000;
  const stall = new AbortController();
  const onAbort = () => stall.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  let stallTimer = setTimeout(() => stall.abort(), timeoutMs);
  try {
    const result = await archive.fetch({
      run: run.run,
      url,
      destination: partial,
      expectedBytes: run.sizeBytes ?? undefined,
      signal: stall.signal,
      onProgress: (bytes, total) => {
        clearTimeout(stallTimer);
        stallTimer = setTimeout(() => stall.abort(), timeoutMs);
        hooks.onProgress(bytes, total);
      },
    });
    await verify(partial, run);
    // Record first, rename second: a session that lost the run (its lease expired
    // and another session may be staging the same path now) never touches the
    // staged name, and a crash in between leaves only names a reaper deletes.
    const moved = await recordedWhenTheDatabaseAnswers(signal, () =>
      toStaged(context.db, fenceOf(context), { run: run.run, stagedPath: staged, stagedBytes: result.bytes }, `staged ${result.bytes} bytes from ${url.protocol}//${url.host}${url.pathname}`),
    );
    if (moved === null || moved.length === 0) {
      await rm(partial, { force: true });
      return outcome({ kind: moved === null ? 'aborted' : 'lost-ownership', run: run.run });
    }
    await rename(partial, staged);
    return outcome({ kind: 'staged', run: run.run, bytes: result.bytes, path: staged });
  } catch (error) {
    await rm(partial, { force: true });
    if (signal.aborted) return outcome({ kind: 'aborted', run: run.run });
    const message = stall.signal.aborted ? `no progress for ${production.config.archive.timeoutSeconds}s` : (error as Error).message;
    if (error instanceof MissingInputError) return outcome(await giveUp(context, run, `input missing: ${message}`, { reason: 'input_missing', countAttempt: true }));
    if (error instanceof ArchiveAuthError) {
      await giveUp(context, run, `archive refused the credentials: ${message}`, { reason: 'archive_refused', countAttempt: false });
      return outcome({ kind: 'auth-failed', run: run.run, error: message });
    }
    if (error instanceof ArchiveUnavailableError) return outcome({ kind: 'infrastructure', run: run.run, where: 'archive', error: message });
    const disk = diskFaultUnder(error, production.config.stagingDir);
    if (disk) return outcome({ kind: 'infrastructure', run: run.run, where: 'staging', error: disk });
    return { kind: 'again', error: message, mismatch: error instanceof InputMismatchError };
  } finally {
    clearTimeout(stallTimer);
    signal.removeEventListener('abort', onAbort);
  }
}

/** The downloaded file is the catalogue's: its size, and its checksum when the catalogue has one. */
async function verify(partial: string, run: HeldRunDetail): Promise<void> {
  const size = (await stat(partial)).size;
  if (run.sizeBytes !== null && size !== run.sizeBytes) throw new InputMismatchError(`size ${size} bytes, the catalogue says ${run.sizeBytes}`);
  if (run.checksum) {
    const mismatch = await checksumMismatch(partial, run.checksum);
    if (mismatch) throw new InputMismatchError(`checksum mismatch: ${mismatch}`);
  }
}

/**
 * A verified input must not be thrown away because the database is down at the moment it arrives:
 * the move is tried again, with backoff, until the database answers (or the session aborts: null).
 * Without this the run stayed `downloading` for ever, with nobody downloading it.
 */
async function recordedWhenTheDatabaseAnswers<T>(signal: AbortSignal, record: () => Promise<T>): Promise<T | null> {
  for (let wait = 1; ; wait = Math.min(wait * 2, 10)) {
    try {
      return await record();
    } catch (error) {
      if (!isDatabaseUnavailable(error) || signal.aborted) throw error;
    }
    await sleep(wait * 1000, signal);
    if (signal.aborted) return null;
  }
}

async function giveUp(context: JobContext, run: HeldRunDetail, error: string, why: Parameters<typeof toNewOrFailedFromDownload>[4]): Promise<DownloadOutcome> {
  const { production } = context;
  const to = why.countAttempt && run.attempts + 1 >= production.maxAttempts ? 'failed' : 'new';
  const moved = await toNewOrFailedFromDownload(context.db, fenceOf(context), { run: run.run, lastError: error }, to, why);
  if (moved.length === 0) return { kind: 'lost-ownership', run: run.run };
  return { kind: to === 'failed' ? 'failed' : 'returned', run: run.run, error };
}
