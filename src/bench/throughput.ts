import { openDatabase } from '../db/connection.js';
import { claimRuns } from '../state/claim.js';
import { startSession } from '../state/sessions.js';
import type { RunStatus } from '../core/statuses.js';
import { transitionRuns } from '../state/transition.js';
import { seedProduction } from './seed.js';
import { percentile, timeMs } from './stats.js';
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

/**
 * Coordination throughput: `sessions` concurrent sessions, each its own
 * connection, drive runs new → claimed → downloading → staged → submitted →
 * running → finished with the real claimRuns and transitionRuns (one batched
 * statement per step for the runs a session holds, with their events), no grid
 * and no files. Bounded by time: the rate is runs finished / elapsed.
 *
 * Claim latency is the steady state: each session's first claim, on a
 * connection whose server process has yet to load its caches and plan the
 * statement (with 32 sessions all at once, up to a few hundred ms), is kept
 * apart as firstClaimMaxMs.
 */

const STEPS: readonly [RunStatus, RunStatus][] = [
  ['claimed', 'downloading'],
  ['downloading', 'staged'],
  ['staged', 'submitted'],
  ['submitted', 'running'],
  ['running', 'finished'],
];

/** Statements a batch of runs costs from new to finished: the claim and one per move. */
export const STATEMENTS_PER_BATCH = 1 + STEPS.length;

export interface ThroughputResult {
  sessions: number;
  batch: number;
  runsFinished: number;
  seconds: number;
  runsPerSecond: number;
  /** Claims and moves committed per second, all sessions together. */
  statementsPerSecond: number;
  /**
   * What Little's law makes the mean statement latency of this closed loop (every session always
   * has one statement in flight): sessions / statementsPerSecond. A claim waits about this long
   * behind the other sessions' statements whatever the claim itself costs.
   */
  closedLoopMeanMs: number;
  claims: number;
  claimP50Ms: number;
  claimP99Ms: number;
  /** The slowest first claim of a session (a fresh connection), not in the percentiles. */
  firstClaimMaxMs: number;
}

export async function measureThroughput(
  url: string,
  admin: Kysely<Database>,
  options: { sessions: number; runs: number; firstRun: number; batch: number; maxSeconds: number },
): Promise<ThroughputResult> {
  const productionId = await seedProduction(admin, options.firstRun, options.runs);
  const handles = Array.from({ length: options.sessions }, (_, i) => openDatabase(url, { applicationName: `bench session ${i}`, max: 1 }));
  try {
    const ids = await Promise.all(
      handles.map((h, i) => startSession(h.db, { user: `shifter${i}`, host: 'bench', pid: process.pid, productionId, options: {}, leaseSeconds: 600 })),
    );
    const claimTimes: number[] = [];
    const firstClaimTimes: number[] = [];
    const firstSeen = handles.map(() => false);
    let finished = 0;
    const started = Date.now();
    const deadline = started + options.maxSeconds * 1000;
    await Promise.all(
      handles.map(async (h, i) => {
        const actor = { user: `shifter${i}`, sessionId: ids[i]! };
        while (Date.now() < deadline) {
          const claim = await timeMs(() => claimRuns(h.db, { productionId, parentId: null, session: { id: actor.sessionId, user: actor.user }, limit: options.batch }));
          (firstSeen[i] ? claimTimes : firstClaimTimes).push(claim.ms);
          firstSeen[i] = true;
          let runs = claim.value;
          if (runs.length === 0) return; // production exhausted
          for (const [from, to] of STEPS) {
            runs = await transitionRuns(h.db, { productionId, runs, from, to, owner: actor.sessionId, actor, countAttempt: to === 'finished' });
          }
          finished += runs.length;
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    const statementsPerSecond = ((finished / options.batch) * STATEMENTS_PER_BATCH) / seconds;
    return {
      sessions: options.sessions,
      batch: options.batch,
      runsFinished: finished,
      seconds,
      runsPerSecond: finished / seconds,
      statementsPerSecond,
      closedLoopMeanMs: (options.sessions / statementsPerSecond) * 1000,
      claims: claimTimes.length,
      claimP50Ms: percentile(claimTimes, 50),
      claimP99Ms: percentile(claimTimes, 99),
      firstClaimMaxMs: Math.max(...firstClaimTimes),
    };
  } finally {
    await Promise.all(handles.map((h) => h.close()));
  }
}
