/**
 * Watches one operation on a connection. ssh2 can leave a request unanswered
 * forever when its connection dies (it then re-sends a CLOSE nobody answers),
 * so every request is raced against `stopped`, which rejects on the first of:
 * the caller's abort, no activity for the timeout, or the connection closing.
 * Abort and timeout kill the connection, since requests may still be in flight.
 *
 * The pool (pool.ts) hands a connection to one operation at a time; the guard
 * is what notices, during that operation, that the connection is dead.
 */
import { ArchiveTransientError } from '../archive.js';
import type { Connection } from './connection.js';
import { abortError } from './errors.js';

export class Guard {
  private readonly stopped: Promise<never>;
  private stop!: (reason: Error) => void;
  private lastActivity = Date.now();
  private readonly watchdog: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private readonly onAbort: () => void;

  constructor(
    connection: Connection,
    private readonly signal: AbortSignal,
    timeoutMs: number,
    what: string,
  ) {
    this.stopped = new Promise<never>((_resolve, reject) => {
      this.stop = reject;
    });
    this.stopped.catch(() => {}); // observed through race(); not an unhandled rejection otherwise
    this.unsubscribe = connection.onClose((reason) => this.stop(reason));
    this.onAbort = () => connection.kill(abortError(signal, what));
    this.watchdog = setInterval(
      () => {
        if (Date.now() - this.lastActivity > timeoutMs) {
          connection.kill(new ArchiveTransientError(`${what} stalled: nothing happened for ${timeoutMs / 1000} s`));
        }
      },
      Math.min(1_000, timeoutMs / 4),
    );
    if (signal.aborted) this.onAbort();
    else signal.addEventListener('abort', this.onAbort, { once: true });
    if (!connection.alive) this.stop(new ArchiveTransientError(`connection to ${connection.label} is closed`));
  }

  race<T>(operation: Promise<T>): Promise<T> {
    return Promise.race([operation, this.stopped]);
  }

  /** Progress was made: restart the "no activity" clock. */
  touch(): void {
    this.lastActivity = Date.now();
  }

  dispose(): void {
    clearInterval(this.watchdog);
    this.unsubscribe();
    this.signal.removeEventListener('abort', this.onAbort);
  }
}

/** Runs `operation` under a guard that is always disposed afterwards. */
export async function guarded<T>(
  connection: Connection,
  signal: AbortSignal,
  timeoutMs: number,
  what: string,
  operation: (guard: Guard) => Promise<T>,
): Promise<T> {
  const guard = new Guard(connection, signal, timeoutMs, what);
  try {
    return await operation(guard);
  } finally {
    guard.dispose();
  }
}
