/**
 * One SSH connection with its SFTP channel, and how it is seen to die.
 *
 * ssh2 reports a dead connection on three channels (the SSH socket closes, the
 * SFTP channel closes, or the channel emits an error); each marks the
 * connection dead once, tells the pool (so an idle one is not handed out
 * again) and fails whatever operation is watching it (guard.ts).
 */
import type { Client, SFTPWrapper } from 'ssh2';
import type SftpClient from 'ssh2-sftp-client';
import { ArchiveTransientError } from '../archive.js';

/** Told once when a connection becomes unusable on its own (not when we kill or end it). */
export type DropListener = (connection: Connection, reason: string) => void;

type Callback<T> = (error: Error | null | undefined, value: T) => void;

/** Wraps one callback-style ssh2 request in a promise. */
export function call<T>(start: (done: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start((error, value) => (error ? reject(error) : resolve(value))));
}

export class Connection {
  /** False once the connection dropped or was killed: never reuse it then. */
  alive = true;
  private readonly closeListeners = new Set<(reason: Error) => void>();

  constructor(
    /** The endpoint it serves (url.ts endpointKey): reused only for the same user, host and port. */
    readonly key: string,
    readonly label: string,
    private readonly client: SftpClient,
    private readonly ssh: Client,
    readonly sftp: SFTPWrapper,
    onDrop: DropListener,
  ) {
    const dropped = (reason: string) => () => {
      if (!this.alive) return;
      this.alive = false;
      onDrop(this, reason);
      this.notify(new ArchiveTransientError(`connection to ${label} lost (${reason})`));
    };
    ssh.on('close', dropped('connection closed'));
    sftp.on('close', dropped('sftp channel closed'));
    // An SFTP protocol error is emitted on the channel; unhandled, it would
    // crash the whole session.
    sftp.on('error', (error: Error) => dropped(`sftp error: ${error.message}`)());
  }

  /** Calls `listener` once when the connection becomes unusable; returns an unsubscribe. */
  onClose(listener: (reason: Error) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Tear the connection down now: whatever is in flight on it fails, nothing is reused. */
  kill(reason: Error): void {
    const wasAlive = this.alive;
    this.alive = false;
    this.ssh.destroy();
    if (wasAlive) this.notify(reason);
  }

  async end(): Promise<void> {
    if (!this.alive) return;
    this.alive = false;
    // A polite goodbye, but never let a dead peer hold close() up.
    const timer = setTimeout(() => this.ssh.destroy(), 2_000);
    try {
      await this.client.end();
    } catch {
      this.ssh.destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  private notify(reason: Error): void {
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    for (const listener of listeners) listener(reason);
  }
}
