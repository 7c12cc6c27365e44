import type { RunStatus, StatusCounts } from '../core/statuses.js';

/**
 * Everything a display shows, published by the operator loop. The display is a
 * pure function of this object; the loop never imports the display. Building a
 * snapshot never scans the production's runs: counts come from the maintained
 * per-status counters, the run list holds only this session's runs.
 * Times are epoch milliseconds.
 */
export interface Snapshot {
  at: number;
  production: {
    id: number;
    type: string;
    version: number;
    tag: string;
    status: 'active' | 'paused' | 'closed';
    statusReason: string | null;
    statusSince: number | null;
    maxRunning: number | null;
  };
  /** "embedded" or host/database, never with a password. */
  database: string;
  session: {
    id: string;
    user: string;
    host: string;
    startedAt: number;
    nextTickAt: number;
    leaseSeconds: number;
    /** `p` key: this session stopped claiming until resumed. */
    claimingPaused: boolean;
    /** `d`/`q` key or SIGUSR1: stop claiming, let submitted jobs finish, exit. */
    draining: boolean;
    /** --limit N: claims left, or null without a limit. */
    claimsLeft: number | null;
  };
  counts: StatusCounts;
  /** Counts per dataset, for the breakdown line. */
  datasets: Record<string, StatusCounts>;
  total: number;
  /** Child productions: runs whose parent run is not finished yet. */
  waitingOnParent: number | null;
  throughput: {
    /** Finished runs per hour over the last 15 minutes (all sessions). */
    runsPerHour: number;
    /** Seconds until the remaining runs are done at that rate; null when unknown. */
    etaSeconds: number | null;
  };
  limits: {
    /** This session's jobs on the grid (submitted + running) and its cap. */
    running: number;
    nproc: number;
    /** This session's staged-but-unsubmitted runs (plus downloads) and its cap. */
    staged: number;
    nprep: number;
    /** All sessions' jobs on the grid for this production, and the production cap. */
    productionRunning: number;
    maxRunning: number | null;
    disk: {
      /** Percent of the staging area in use (0-100), null until first measured. */
      usedPercent: number | null;
      spacelim: number;
      /** How it was measured: `statfs` or the quota command. */
      source: string;
    };
    /** Why downloads are not starting, when they are not. */
    downloadsPausedReason: string | null;
  };
  /** This session's runs, busiest first. */
  runs: SnapshotRun[];
  /** The other live (or stale) sessions of this production. */
  sessions: SnapshotSession[];
  /** Most recent first, a few dozen at most. */
  events: SnapshotEvent[];
  /** Banners: paused production, failing backend or archive, lost database. */
  alerts: SnapshotAlert[];
  /** Present once an abort has begun. */
  abort: SnapshotAbort | null;
  /** Whether keys can be read (stdin is a TTY). */
  keysEnabled: boolean;
}

export interface SnapshotRun {
  run: number;
  dataset: string;
  status: RunStatus;
  attempt: number;
  jobId: string | null;
  /** When it entered its current status. */
  since: number;
  download: { bytes: number; total: number | null; bytesPerSecond: number } | null;
}

export interface SnapshotSession {
  id: string;
  user: string;
  host: string;
  startedAt: number;
  heartbeatAgeSeconds: number;
  stale: boolean;
  runsHeld: number;
}

export interface SnapshotEvent {
  at: number;
  run: number | null;
  kind: 'claim' | 'download' | 'submit' | 'finish' | 'fail' | 'retry' | 'rollback' | 'reap' | 'adopt' | 'info' | 'warning' | 'error';
  text: string;
}

export interface SnapshotAlert {
  kind:
    | 'production-paused'
    | 'backend-failing'
    | 'archive-failing'
    | 'staging-failing'
    | 'outputs-failing'
    | 'archive-auth'
    | 'database-unreachable'
    | 'scheduler-slow'
    | 'session-stuck'
    | 'draining';
  message: string;
  since: number;
}

export interface SnapshotAbort {
  reason: string;
  cancelledJobs: string[];
  rolledBackRuns: number[];
  done: boolean;
  /** Set when the database could not be reached during the abort. */
  note: string | null;
}

/** How a display follows the loop: read the latest snapshot, be told when it changes. */
export interface SnapshotSource {
  getSnapshot(): Snapshot;
  subscribe(listener: () => void): () => void;
}

/** What a display may ask of the loop (keys). */
export interface OperatorControls {
  /** `d`/`q`: stop claiming, return staged runs, wait for jobs, exit 0. */
  drain(): void;
  /** `p`: pause or resume claiming for this session. */
  togglePauseClaiming(): void;
  /** Ctrl-C: abort with rollback. */
  abort(): void;
}
