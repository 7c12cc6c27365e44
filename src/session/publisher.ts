import type { Snapshot, SnapshotSource } from './snapshot.js';

/**
 * The loop's last snapshot and who follows it: a display reads the latest and is told of each new
 * one. `ready` resolves at the first publish, which may come later than the session's start (the
 * database away just then), so a display waits for it rather than for the start.
 */
export class SnapshotPublisher implements SnapshotSource {
  private latest: Snapshot | null = null;
  private readonly listeners = new Set<() => void>();
  private markReady!: () => void;
  readonly ready = new Promise<void>((resolve) => (this.markReady = resolve));

  publish(snapshot: Snapshot): void {
    this.latest = snapshot;
    this.markReady();
    for (const listener of this.listeners) listener();
  }

  getSnapshot(): Snapshot {
    if (!this.latest) throw new Error('the loop has published no snapshot yet');
    return this.latest;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
