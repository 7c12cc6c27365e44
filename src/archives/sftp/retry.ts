/** Retrying what may pass (ArchiveTransientError) with exponential backoff; anything else fails at once. */
import { ArchiveTransientError } from '../archive.js';

export interface Backoff {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Wait before the second attempt; doubled before each further one. */
  firstDelayMs: number;
}

/**
 * Runs `attempt` until it succeeds, fails with another error, the signal is
 * aborted or the attempts are used up (then the last error is thrown).
 * `onRetry` is told before each wait: the error, the attempt that failed (1-based) and the wait.
 */
export async function withBackoff<T>(
  attempt: () => Promise<T>,
  backoff: Backoff,
  signal: AbortSignal,
  onRetry: (error: ArchiveTransientError, failedAttempt: number, delayMs: number) => void,
): Promise<T> {
  for (let failed = 1; ; failed++) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof ArchiveTransientError) || signal.aborted || failed >= backoff.attempts) throw error;
      const delay = backoff.firstDelayMs * 2 ** (failed - 1);
      onRetry(error, failed, delay);
      await sleep(delay, signal);
    }
  }
}

/** Resolves after `ms`, or at once when the signal is aborted (never rejects). */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
