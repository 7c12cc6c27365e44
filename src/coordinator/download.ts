import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fillTemplate } from '../config/templates.js';
import { partialDownloadPath, stagedInputPath, templateValues } from '../outputs/paths.js';
import { ArchiveAuthError, MissingInputError, type Archive } from '../transfers/archive.js';
import { sourceUrl } from '../transfers/index.js';
import { checksumMismatch } from '../transfers/verify.js';
import { identity, type HeldRunDetail, type JobContext } from './jobs.js';
import { transitionRuns } from './transition.js';

/**
 * One run's input download: to a temporary name in the staging area, checked
 * against the catalogue's size and checksum, then renamed into place and the
 * run moved to `staged`. Transient failures are retried with backoff; then the
 * run goes back to `new` with the error (counted as an attempt, so that a
 * broken input cannot loop for ever). A missing file is counted the same way.
 */

export type DownloadOutcome =
  | { kind: 'staged'; run: number; bytes: number; path: string }
  | { kind: 'returned' | 'failed'; run: number; error: string }
  | { kind: 'auth-failed'; run: number; error: string }
  | { kind: 'aborted' | 'lost-ownership'; run: number };

export interface DownloadHooks {
  onProgress(bytes: number, total: number | undefined): void;
  onRetry(attempt: number, error: string, delaySeconds: number): void;
}

export function inputUrl(context: JobContext, run: HeldRunDetail): URL {
  const config = context.production.config;
  if (config.input.kind !== 'archive') throw new Error('a child production reads its parent output in place');
  return sourceUrl(run.source ?? fillTemplate(config.input.source, templateValues(config, identity(context, run))));
}

export function stagedPathFor(context: JobContext, run: HeldRunDetail): string {
  return stagedInputPath(context.production.config, identity(context, run), inputUrl(context, run).pathname);
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

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
  await mkdir(dirname(staged), { recursive: true });
  const tries = production.config.archive.retries;
  let lastError = '';
  for (let attempt = 1; attempt <= tries; attempt++) {
    if (signal.aborted) return { kind: 'aborted', run: run.run };
    // A stalled transfer must not hang the run: abort when no byte arrives for timeoutSeconds.
    const stall = new AbortController();
    const onAbort = () => stall.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    let stallTimer = setTimeout(() => stall.abort(), production.config.archive.timeoutSeconds * 1000);
    try {
      const result = await archive.fetch({
        run: run.run,
        url,
        destination: partial,
        expectedBytes: run.sizeBytes ?? undefined,
        signal: stall.signal,
        onProgress: (bytes, total) => {
          clearTimeout(stallTimer);
          stallTimer = setTimeout(() => stall.abort(), production.config.archive.timeoutSeconds * 1000);
          hooks.onProgress(bytes, total);
        },
      });
      const size = (await stat(partial)).size;
      if (run.sizeBytes !== null && size !== run.sizeBytes) throw new Error(`size ${size} bytes, the catalogue says ${run.sizeBytes}`);
      if (run.checksum) {
        const mismatch = await checksumMismatch(partial, run.checksum);
        if (mismatch) throw new Error(`checksum mismatch: ${mismatch}`);
      }
      // Record first, rename second: a session that lost the run (its lease expired
      // and another session may be staging the same path now) never touches the
      // staged name, and a crash in between leaves only names a reaper deletes.
      const moved = await transitionRuns(context.db, {
        productionId: production.id,
        runs: [{ run: run.run, stagedPath: staged, stagedBytes: result.bytes }],
        from: 'downloading',
        to: 'staged',
        owner: context.actor.sessionId,
        actor: context.actor,
        message: `staged ${result.bytes} bytes from ${url.protocol}//${url.host}${url.pathname}`,
      });
      if (moved.length === 0) {
        await rm(partial, { force: true });
        return { kind: 'lost-ownership', run: run.run };
      }
      await rename(partial, staged);
      return { kind: 'staged', run: run.run, bytes: result.bytes, path: staged };
    } catch (error) {
      await rm(partial, { force: true });
      if (signal.aborted) return { kind: 'aborted', run: run.run };
      const message = stall.signal.aborted ? `no progress for ${production.config.archive.timeoutSeconds}s` : (error as Error).message;
      if (error instanceof MissingInputError) return giveUp(context, run, `input missing: ${message}`, true);
      if (error instanceof ArchiveAuthError) {
        await giveUp(context, run, `archive refused the credentials: ${message}`, false);
        return { kind: 'auth-failed', run: run.run, error: message };
      }
      lastError = message;
      if (attempt < tries) {
        const delay = Math.min(2 ** attempt, 30);
        hooks.onRetry(attempt, message, delay);
        await sleep(delay * 1000, signal);
      }
    } finally {
      clearTimeout(stallTimer);
      signal.removeEventListener('abort', onAbort);
    }
  }
  return giveUp(context, run, `download failed ${tries} times: ${lastError}`, true);
}

async function giveUp(context: JobContext, run: HeldRunDetail, error: string, countAttempt: boolean): Promise<DownloadOutcome> {
  const { production } = context;
  const to = countAttempt && run.attempts + 1 >= production.maxAttempts ? 'failed' : 'new';
  const moved = await transitionRuns(context.db, {
    productionId: production.id,
    runs: [{ run: run.run, lastError: error }],
    from: 'downloading',
    to,
    owner: context.actor.sessionId,
    actor: context.actor,
    countAttempt,
    message: error,
  });
  if (moved.length === 0) return { kind: 'lost-ownership', run: run.run };
  return { kind: to === 'failed' ? 'failed' : 'returned', run: run.run, error };
}
