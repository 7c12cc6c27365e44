import type { LoopLine, SnapshotAlert, SnapshotEvent } from './snapshot.js';

const SESSION_EVENTS_KEPT = 50;

/**
 * What the session says: the lines of the plain log (also kept, the latest few dozen, for the
 * display's event list) and the banners that stay up while a condition lasts. Each change calls
 * `changed`, so that the loop publishes a new snapshot.
 */
export class Journal {
  private readonly events: SnapshotEvent[] = [];
  private readonly alerts = new Map<SnapshotAlert['kind'], SnapshotAlert>();
  private readonly listeners = new Set<(line: LoopLine) => void>();

  constructor(private readonly changed: () => void) {}

  onLine(listener: (line: LoopLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(kind: LoopLine['kind'], run: number | null, text: string): void {
    const line = { kind, run, text };
    this.events.unshift({ at: Date.now(), ...line });
    this.events.length = Math.min(this.events.length, SESSION_EVENTS_KEPT);
    for (const listener of this.listeners) listener(line);
    this.changed();
  }

  /** Raises a banner (said once in the log, and again only when its message changes). */
  setAlert(kind: SnapshotAlert['kind'], message: string): void {
    const existing = this.alerts.get(kind);
    if (existing?.message === message) return;
    this.alerts.set(kind, { kind, message, since: existing?.since ?? Date.now() });
    this.emit(kind === 'draining' ? 'info' : 'warning', null, `WARNING: ${message}`);
  }

  /** Takes a banner down; `recovered` is said only if it was up. */
  clearAlert(kind: SnapshotAlert['kind'], recovered?: string): void {
    if (this.alerts.delete(kind) && recovered) this.emit('info', null, recovered);
  }

  recentEvents(): readonly SnapshotEvent[] {
    return this.events;
  }

  currentAlerts(): SnapshotAlert[] {
    return [...this.alerts.values()];
  }
}
