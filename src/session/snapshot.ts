import { isOnGrid } from '../core/held-run.js';
import type { HeldStatus, RunStatus, StatusCounts } from '../core/statuses.js';

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

/** One line of the plain log: an event as it happens. */
export type LoopLine = Omit<SnapshotEvent, 'at'>;

/** A download under way, as the snapshot shows it. */
export interface DownloadProgress {
  bytes: number;
  total: number | null;
  startedAt: number;
}

/** Everything the snapshot is built from: the loop's state at this moment, and what the last pass read. */
export interface SnapshotParts {
  now: number;
  production: Snapshot['production'];
  database: string;
  session: Snapshot['session'];
  /** What the last pass read from the database; null before the first read. */
  base: {
    counts: { counts: StatusCounts; datasets: Record<string, StatusCounts>; total: number };
    runsPerHour: number;
    etaSeconds: number | null;
    sessions: SnapshotSession[];
    waitingOnParent: number | null;
  };
  held: readonly { run: number; dataset: string; status: HeldStatus; attempts: number; jobId: string | null; statusChangedAt: Date }[];
  downloads: ReadonlyMap<number, DownloadProgress>;
  options: { nproc: number; nprep: number; spacelim: number };
  disk: { usedPercent: number | null; source: string };
  downloadsPausedReason: string | null;
  events: readonly SnapshotEvent[];
  alerts: readonly SnapshotAlert[];
  abort: SnapshotAbort | null;
  keysEnabled: boolean;
}

const BUSIEST_FIRST: Record<HeldStatus, number> = { running: 0, submitted: 1, downloading: 2, staged: 3, claimed: 4 };

/** The snapshot: a pure function of its parts (the display is a pure function of the snapshot). */
export function buildSnapshot(parts: SnapshotParts): Snapshot {
  const { now, held, base } = parts;
  const runs = [...held]
    .sort((a, b) => BUSIEST_FIRST[a.status] - BUSIEST_FIRST[b.status] || a.run - b.run)
    .map((r): SnapshotRun => {
      const download = parts.downloads.get(r.run);
      const seconds = download ? (now - download.startedAt) / 1000 : 0;
      return {
        run: r.run,
        dataset: r.dataset,
        status: r.status,
        attempt: r.attempts + 1,
        jobId: r.jobId,
        since: r.statusChangedAt.getTime(),
        download: download ? { bytes: download.bytes, total: download.total, bytesPerSecond: seconds > 0 ? download.bytes / seconds : 0 } : null,
      };
    });
  const counts = base.counts.counts;
  return {
    at: now,
    production: parts.production,
    database: parts.database,
    session: parts.session,
    counts,
    datasets: base.counts.datasets,
    total: base.counts.total,
    waitingOnParent: base.waitingOnParent,
    throughput: { runsPerHour: base.runsPerHour, etaSeconds: base.etaSeconds },
    limits: {
      running: held.filter(isOnGrid).length,
      nproc: parts.options.nproc,
      staged: held.filter((r) => r.status === 'staged' || r.status === 'downloading').length,
      nprep: parts.options.nprep,
      productionRunning: counts.submitted + counts.running,
      maxRunning: parts.production.maxRunning,
      disk: { usedPercent: parts.disk.usedPercent, spacelim: parts.options.spacelim, source: parts.disk.source },
      downloadsPausedReason: parts.downloadsPausedReason,
    },
    runs,
    sessions: base.sessions,
    events: [...parts.events],
    alerts: [...parts.alerts],
    abort: parts.abort ? { ...parts.abort, cancelledJobs: [...parts.abort.cancelledJobs] } : null,
    keysEnabled: parts.keysEnabled,
  };
}
