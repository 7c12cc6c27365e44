/**
 * A small pool of connections (at most `limit`), reused across downloads:
 * opening one costs a handshake and a login, and an archive host may
 * rate-limit them. ssh2-sftp-client does not serialise operations nor
 * reconnect, so the pool does: a connection carries one operation at a time,
 * and one that dropped, stalled or was interrupted is thrown away and replaced
 * (connect.ts retries with backoff) on the next request.
 */
import { ArchiveTransientError } from '../archive.js';
import type { Connection, DropListener } from './connection.js';
import { abortError } from './errors.js';
import { endpointKey, hostLabel } from './url.js';

export type OpenConnection = (url: URL, signal: AbortSignal, onDrop: DropListener) => Promise<Connection>;

export class ConnectionPool {
  private readonly idle: Connection[] = [];
  /** Connections in use plus connections being opened. */
  private taken = 0;
  private waiters: Array<() => void> = [];
  private closed = false;
  /** Aborts connection attempts still under way when the archive is closed. */
  private readonly closing = new AbortController();
  private readonly all = new Set<Connection>();

  constructor(
    private readonly limit: number,
    private readonly open: OpenConnection,
  ) {}

  /** Runs `operation` on a connection of its own; the connection returns to the pool only if still healthy. */
  async use<T>(url: URL, signal: AbortSignal, operation: (connection: Connection) => Promise<T>): Promise<T> {
    const connection = await this.acquire(url, signal);
    try {
      return await operation(connection);
    } finally {
      this.release(connection);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort(new ArchiveTransientError('the SFTP archive is closed'));
    this.wake();
    const closing: Promise<void>[] = [];
    for (const connection of this.all) {
      if (this.idle.includes(connection)) closing.push(connection.end());
      else connection.kill(new ArchiveTransientError('the SFTP archive was closed during the operation'));
    }
    this.idle.length = 0;
    this.all.clear();
    await Promise.all(closing);
  }

  private async acquire(url: URL, signal: AbortSignal): Promise<Connection> {
    const key = endpointKey(url);
    for (;;) {
      if (this.closed) throw new ArchiveTransientError('the SFTP archive is closed');
      if (signal.aborted) throw abortError(signal, `waiting for a connection to ${hostLabel(url)}`);
      const reusable = this.idle.findIndex((connection) => connection.key === key && connection.alive);
      if (reusable !== -1) {
        const [connection] = this.idle.splice(reusable, 1);
        this.taken++;
        return connection!;
      }
      if (this.taken + this.idle.length >= this.limit && this.idle.length > 0) {
        // At the limit with an idle connection to another host: make room.
        void this.forget(this.idle.shift()!).end();
      }
      if (this.taken + this.idle.length < this.limit) return this.openNew(url, signal);
      await this.waitForSlot(signal);
    }
  }

  /** Opens a connection in a slot taken for it; the slot is given back if that fails. */
  private async openNew(url: URL, signal: AbortSignal): Promise<Connection> {
    this.taken++;
    try {
      const connection = await this.open(url, AbortSignal.any([signal, this.closing.signal]), (dropped) => this.onDrop(dropped));
      if (this.closed) {
        connection.kill(new ArchiveTransientError('the SFTP archive is closed'));
        throw new ArchiveTransientError('the SFTP archive is closed');
      }
      this.all.add(connection);
      return connection;
    } catch (error) {
      this.taken--;
      this.wake();
      throw error;
    }
  }

  private release(connection: Connection): void {
    this.taken--;
    if (connection.alive && !this.closed) this.idle.push(connection);
    else this.forget(connection);
    this.wake();
  }

  private onDrop(connection: Connection): void {
    // An idle connection the server closed (idle timeout, restart): drop it
    // now so the next request opens a fresh one instead of failing.
    const index = this.idle.indexOf(connection);
    if (index !== -1) {
      this.idle.splice(index, 1);
      this.forget(connection);
      this.wake();
    }
  }

  private forget(connection: Connection): Connection {
    this.all.delete(connection);
    return connection;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private waitForSlot(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
