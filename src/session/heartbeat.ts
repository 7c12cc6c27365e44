import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { heartbeat } from '../state/sessions.js';

/**
 * A session's heartbeat, on a timer of its own, so that a slow pass (a scheduler
 * command taking its full timeout, a slow quota command) no longer costs a live
 * session its lease. A watchdog keeps a truly hung session reapable: while a pass
 * has made no progress for `watchdogSeconds`, the heartbeat stops, and the loop
 * stops claiming and submitting, so that another session can take over once the
 * lease runs out.
 *
 * It also tells how long the session has been connected without a gap: a session
 * that has just come back from an outage must not reap others before they could
 * heartbeat again (ReapOptions.reaperConnectedSeconds).
 */

export interface HeartbeatEvents {
  /** The session row was ended (released, or reaped after a lost lease): leave without touching runs. */
  fenced(): void;
  /** A beat reached the database after one or more that did not. */
  reachable(): void;
  unreachable(silentSeconds: number, error: Error): void;
  /** The watchdog tripped (step is what the pass was doing), or with null: the pass moves again. */
  stuck(state: { step: string; seconds: number } | null): void;
  /** After every beat, reached or not: for checks that share the timer (a scheduler command that hangs). */
  beat(): void;
}

export interface HeartbeatSettings {
  leaseSeconds: number;
  watchdogSeconds: number;
}

/** How often to beat: four times a lease, at most every 10 s, at least every quarter second. */
export function heartbeatIntervalMs(leaseSeconds: number): number {
  return Math.min(Math.max((leaseSeconds * 1000) / 4, 250), 10_000);
}

/**
 * The watchdog's bound: a pass may legitimately wait one scheduler command's whole timeout at a
 * step, so it is stuck only after twice that, and never before a lease (default 60 s: lease 60 s,
 * commands 30 s).
 */
export function watchdogSeconds(leaseSeconds: number, commandTimeoutSeconds: number): number {
  return Math.max(leaseSeconds, 2 * commandTimeoutSeconds);
}

export class SessionHeartbeat {
  private timer: NodeJS.Timeout | null = null;
  private beating = false;
  private lastOkAt: number;
  private connectedSince: number | null;
  private failing = false;
  private pass: { step: string; progressAt: number } | null = null;
  private stuckSince: number | null = null;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly sessionId: string,
    private readonly settings: HeartbeatSettings,
    private readonly events: HeartbeatEvents,
  ) {
    // The session row was just written: that was its first heartbeat.
    this.lastOkAt = Date.now();
    this.connectedSince = this.lastOkAt;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.beat(), heartbeatIntervalMs(this.settings.leaseSeconds));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** A pass begins; `progress` marks each step it reaches, `passEnded` its end. */
  passStarted(step: string): void {
    this.pass = { step, progressAt: Date.now() };
  }

  progress(step: string): void {
    if (this.pass) this.pass = { step, progressAt: Date.now() };
    if (this.stuckSince !== null) {
      this.stuckSince = null;
      this.events.stuck(null);
    }
  }

  passEnded(): void {
    this.pass = null;
    this.progress('idle');
  }

  /** Seconds since the heartbeat last reached the database. */
  get silentSeconds(): number {
    return (Date.now() - this.lastOkAt) / 1000;
  }

  /** Seconds of heartbeats without a gap (0 while the database cannot be reached). */
  get connectedSeconds(): number {
    return this.connectedSince === null ? 0 : (Date.now() - this.connectedSince) / 1000;
  }

  /** Whether the session must not start work: silent for half a lease, or stuck. */
  get degraded(): boolean {
    return this.stuckSince !== null || this.silentSeconds > this.settings.leaseSeconds / 2;
  }

  get stuck(): boolean {
    return this.stuckSince !== null;
  }

  private async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      const now = Date.now();
      if (this.pass && now - this.pass.progressAt > this.settings.watchdogSeconds * 1000) {
        // Not renewing the lease is the point: a hung session must be reaped, its jobs adopted.
        this.stuckSince ??= now;
        this.events.stuck({ step: this.pass.step, seconds: Math.round((now - this.pass.progressAt) / 1000) });
        return;
      }
      try {
        if (!(await heartbeat(this.db, this.sessionId))) {
          this.stop();
          this.events.fenced();
          return;
        }
      } catch (error) {
        this.failing = true;
        this.connectedSince = null;
        this.events.unreachable(this.silentSeconds, error as Error);
        return;
      }
      const at = Date.now();
      // A gap of half a lease between two beats that both arrived (a suspended process, a blocked
      // event loop) is an outage too: others may have looked expired to us meanwhile, and we to them.
      if (this.connectedSince === null || at - this.lastOkAt > (this.settings.leaseSeconds * 1000) / 2) this.connectedSince = at;
      this.lastOkAt = at;
      if (this.failing) {
        this.failing = false;
        this.events.reachable();
      }
    } finally {
      this.beating = false;
      this.events.beat();
    }
  }
}
