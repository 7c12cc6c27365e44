/**
 * Snapshot states for the display tests, built from one realistic base so each
 * test states only what it is about. Times are fixed (NOW) so frames are stable.
 */
import type { Snapshot, SnapshotEvent, SnapshotRun, SnapshotSession } from '../../src/session/snapshot.js';
import { emptyCounts, type RunStatus, type StatusCounts } from '../../src/core/statuses.js';

export const NOW = Date.UTC(2025, 2, 14, 2, 13, 0);
const MIN = 60_000;
const HOUR = 60 * MIN;

export function counts(partial: Partial<StatusCounts>): StatusCounts {
  return { ...emptyCounts(), ...partial };
}

/** A production nobody has started on: no runs held, no events, no other sessions. */
export function emptySnapshot(overrides: Partial<Snapshot> = {}): Snapshot {
  return {
    at: NOW,
    production: {
      id: 7,
      type: 'alcap-mu',
      version: 3,
      tag: 'pass2',
      status: 'active',
      statusReason: null,
      statusSince: null,
      maxRunning: 200,
    },
    database: 'db01.psi.ch/alcap',
    session: {
      id: '3f9c2a71-5d0e-4c55-9a77-0d1e2f3a4b5c',
      user: 'shifter',
      host: 'merlin-l-01',
      startedAt: NOW - (3 * HOUR + 12 * MIN),
      nextTickAt: NOW + 4_000,
      leaseSeconds: 120,
      claimingPaused: false,
      draining: false,
      claimsLeft: null,
    },
    counts: counts({ new: 4200 }),
    datasets: { run2015a: counts({ new: 4200 }) },
    total: 4200,
    waitingOnParent: null,
    throughput: { runsPerHour: 0, etaSeconds: null },
    limits: {
      running: 0,
      nproc: 50,
      staged: 0,
      nprep: 8,
      productionRunning: 0,
      maxRunning: 200,
      disk: { usedPercent: 12, spacelim: 90, source: 'statfs' },
      downloadsPausedReason: null,
    },
    runs: [],
    sessions: [],
    events: [],
    alerts: [],
    abort: null,
    keysEnabled: true,
    ...overrides,
  };
}

export function run(n: number, status: RunStatus, overrides: Partial<SnapshotRun> = {}): SnapshotRun {
  const onGrid = status === 'running' || status === 'submitted';
  return {
    run: n,
    dataset: n % 2 === 0 ? 'run2015a' : 'run2015b',
    status,
    attempt: 1,
    jobId: onGrid ? `slurm.${8_400_000 + n}` : null,
    since: NOW - ((n * 7) % 180) * MIN,
    download: null,
    ...overrides,
  };
}

export function session(n: number, overrides: Partial<SnapshotSession> = {}): SnapshotSession {
  return {
    id: `a${n}b2c3d4-0000-4000-8000-00000000000${n}`,
    user: ['kammel', 'litchfield', 'edmonds'][n % 3]!,
    host: `merlin-l-0${n + 1}`,
    startedAt: NOW - (n + 1) * HOUR,
    heartbeatAgeSeconds: 8 + n,
    stale: false,
    runsHeld: 10 + n,
    ...overrides,
  };
}

const EVENT_KINDS: SnapshotEvent['kind'][] = ['finish', 'submit', 'download', 'claim', 'retry', 'fail', 'info'];

export function events(count: number): SnapshotEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const kind = EVENT_KINDS[i % EVENT_KINDS.length]!;
    const runNo = 10_400 + i;
    const text: Record<SnapshotEvent['kind'], string> = {
      finish: 'job finished, outputs archived (2.1 GiB)',
      submit: `submitted as slurm.${8_410_000 + i}`,
      download: 'download complete (3.4 GiB in 4m12s)',
      claim: 'claimed',
      retry: 'attempt 2 after exit code 137 (out of memory)',
      fail: 'exit code 1: missing calibration for run',
      info: 'tick: 3 claimed, 2 submitted',
      adopt: 'adopted from stale session',
      reap: 'reaped stale session',
      rollback: 'rolled back to new',
      warning: 'archive slow',
      error: 'backend error',
    };
    return { at: NOW - i * 37_000, run: kind === 'info' ? null : runNo, kind, text: text[kind] };
  });
}

/** Many runs in every held status: the table must window them with "+N more". */
export function busySnapshot(overrides: Partial<Snapshot> = {}): Snapshot {
  const runs: SnapshotRun[] = [];
  let n = 10_200;
  const add = (status: RunStatus, count: number, extra: (i: number) => Partial<SnapshotRun> = () => ({})) => {
    for (let i = 0; i < count; i++) runs.push(run(n++, status, extra(i)));
  };
  add('running', 38, (i) => ({ attempt: i % 9 === 0 ? 2 : 1 }));
  add('submitted', 9);
  add('downloading', 2, (i) => ({
    download: { bytes: (1.2 + i) * 2 ** 30, total: 3.4 * 2 ** 30, bytesPerSecond: 12.3 * 2 ** 20 },
  }));
  add('staged', 4);
  add('claimed', 1);
  return emptySnapshot({
    counts: counts({ new: 2871, claimed: 3, downloading: 4, staged: 10, submitted: 22, running: 118, finished: 1138, failed: 34 }),
    datasets: {
      run2015a: counts({ new: 1400, running: 60, finished: 640, failed: 20 }),
      run2015b: counts({ new: 1471, claimed: 3, downloading: 4, staged: 10, submitted: 22, running: 58, finished: 498, failed: 14 }),
    },
    total: 4200,
    throughput: { runsPerHour: 41.6, etaSeconds: 73.5 * 3600 },
    limits: {
      running: 47,
      nproc: 50,
      staged: 6,
      nprep: 8,
      productionRunning: 140,
      maxRunning: 200,
      disk: { usedPercent: 63, spacelim: 90, source: 'quota' },
      downloadsPausedReason: null,
    },
    runs,
    sessions: [session(1), session(2, { runsHeld: 74 })],
    events: events(40),
    ...overrides,
  });
}

/** Two downloads in flight, one with an unknown size. */
export function downloadingSnapshot(): Snapshot {
  return emptySnapshot({
    counts: counts({ new: 4197, downloading: 2, running: 1 }),
    runs: [
      run(10_301, 'downloading', { download: { bytes: 1.2 * 2 ** 30, total: 3.4 * 2 ** 30, bytesPerSecond: 12.3 * 2 ** 20 } }),
      run(10_302, 'downloading', { download: { bytes: 512 * 2 ** 20, total: null, bytesPerSecond: 800 * 2 ** 10 } }),
      run(10_303, 'running'),
    ],
    limits: { ...emptySnapshot().limits, running: 1, staged: 2 },
  });
}

/** Staging disk above spacelim: downloads wait, and the display says why. */
export function quotaFullSnapshot(): Snapshot {
  const base = busySnapshot();
  return {
    ...base,
    limits: {
      ...base.limits,
      disk: { usedPercent: 93, spacelim: 90, source: 'quota' },
      downloadsPausedReason: 'staging disk at 93% (spacelim 90%)',
    },
  };
}

export function staleSessionsSnapshot(): Snapshot {
  return emptySnapshot({
    sessions: [
      session(1),
      session(2, { stale: true, heartbeatAgeSeconds: 1260, runsHeld: 17, user: 'edmonds', host: 'merlin-l-07' }),
      session(3),
    ],
  });
}

export function pausedSnapshot(): Snapshot {
  const base = busySnapshot();
  return {
    ...base,
    production: { ...base.production, status: 'paused', statusReason: 'calibration v12 is wrong, see elog 4411', statusSince: NOW - 65 * MIN },
  };
}

export function abortingSnapshot(): Snapshot {
  return busySnapshot({
    abort: {
      reason: 'Ctrl-C from shifter',
      cancelledJobs: ['slurm.8410201', 'slurm.8410202', 'slurm.8410203'],
      rolledBackRuns: [10_201, 10_202, 10_203, 10_250, 10_251],
      done: false,
      note: 'database unreachable: rollback written to /tmp/run-production-rollback-3f9c2a71.json',
    },
  });
}
