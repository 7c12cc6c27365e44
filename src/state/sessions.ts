import { rm } from 'node:fs/promises';
import { sql, type Kysely } from 'kysely';
import { partialDownloadPath } from '../outputs/paths.js';
import type { Database } from '../db/schema.js';
import { isOnGrid } from '../core/held-run.js';
import type { HeldStatus } from '../core/statuses.js';
import { adoptRuns, recordEvent, returnRunsToPool, type Actor } from './transition.js';

/**
 * Sessions and their leases. A session heartbeats its own row (never each
 * run); one whose heartbeat is older than its lease may be reaped by anyone.
 * All times are the database's clock, so hosts with skewed clocks agree.
 */

export const DEFAULT_LEASE_SECONDS = 60;

export interface SessionInfo {
  user: string;
  host: string;
  pid: number;
  productionId: number | null;
  options: Record<string, unknown>;
  leaseSeconds: number;
}

export async function startSession(db: Kysely<Database>, info: SessionInfo): Promise<string> {
  const row = await db
    .insertInto('sessions')
    .values({
      user_name: info.user,
      host: info.host,
      pid: info.pid,
      production_id: info.productionId,
      options: JSON.stringify(info.options),
      lease_seconds: info.leaseSeconds,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await recordEvent(db, {
    productionId: info.productionId,
    actor: { user: info.user, sessionId: row.id },
    kind: 'session-start',
    reason: 'session_started',
    message: `${info.user}@${info.host} pid ${info.pid} started (${JSON.stringify(info.options)})`,
  });
  return row.id;
}

/** Renews the lease. False when the session was ended or reaped: it must stop at once, without touching runs. */
export async function heartbeat(db: Kysely<Database>, sessionId: string): Promise<boolean> {
  const result = await db
    .updateTable('sessions')
    .set({ heartbeat_at: sql`now()` })
    .where('id', '=', sessionId)
    .where('ended_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/**
 * Ends a session, but only once it holds no run: a session that would end
 * holding runs stays live instead, so that its lease expires and a reaper
 * returns them (nothing is ever left held by an ended session).
 */
export async function endSession(db: Kysely<Database>, sessionId: string, actor: Actor, reason: string): Promise<boolean> {
  const ended = await db
    .updateTable('sessions')
    .set({ ended_at: sql`now()`, end_reason: reason })
    .where('id', '=', sessionId)
    .where('ended_at', 'is', null)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('production_runs').select('run_number').where('session_id', '=', sessionId))))
    .returning('production_id')
    .executeTakeFirst();
  if (ended) await recordEvent(db, { productionId: ended.production_id, actor, kind: 'session-end', reason: 'session_ended', message: reason });
  return ended !== undefined;
}

/** Whether the session row was ended (by itself, a reaper or a release). */
export async function sessionEnded(db: Kysely<Database>, sessionId: string): Promise<boolean> {
  const row = await db.selectFrom('sessions').select('ended_at').where('id', '=', sessionId).executeTakeFirst();
  return row?.ended_at !== null && row?.ended_at !== undefined;
}

export interface HeldRun {
  run: number;
  dataset: string;
  status: HeldStatus;
  attempts: number;
  jobId: string | null;
  /** Release token of the job's submission (see JobRelease); null before submission. */
  jobToken: string | null;
  stagedPath: string | null;
}

/**
 * The runs a session holds. `lock` takes their row locks for the caller's transaction, so that
 * what it decides from their status stays true until it commits: a session still moving them
 * (one that stalled past its lease and is being reaped) waits, then finds them gone.
 */
export async function heldRuns(db: Kysely<Database>, sessionId: string, options: { lock?: boolean } = {}): Promise<HeldRun[]> {
  const rows = await db
    .selectFrom('production_runs')
    .select(['run_number', 'dataset', 'status', 'attempts', 'job_id', 'job_token', 'staged_path'])
    .where('session_id', '=', sessionId)
    .orderBy('run_number')
    .$if(options.lock === true, (q) => q.forUpdate())
    .execute();
  return rows.map((r) => ({
    run: r.run_number,
    dataset: r.dataset,
    status: r.status as HeldStatus,
    attempts: r.attempts,
    jobId: r.job_id,
    jobToken: r.job_token,
    stagedPath: r.staged_path,
  }));
}

export interface ExpiredSession {
  id: string;
  user: string;
  host: string;
  pid: number;
  productionId: number | null;
  heartbeatAgeSeconds: number;
  /**
   * Why it ended, for a session that had already ended but still held runs (a release or a
   * reaper that died half-way, or runs a reaper had to leave held); null for a lease that expired.
   */
  endReason: string | null;
}

/**
 * What the reaper does with a dead session's runs: `adopt` takes them over (their jobs are alive,
 * or ended and can be judged from the wrapper's status file); `keep` leaves them held by the
 * ended session, because their job may still run where this reaper can neither see nor adopt it
 * (a session of their production recovers them later, see reapExpiredSessions). Everything else
 * goes back to `new`.
 */
export interface AdoptionDecision {
  adopt: number[];
  keep: number[];
}

/**
 * Decides for a dead session's runs (see AdoptionDecision); null when it cannot tell now (the
 * scheduler does not answer): the session is then left as it is for a later pass, since a run
 * whose job may be alive must not go back to `new`. Without a decider everything goes back to `new`.
 */
export type AdoptionDecider = (session: ExpiredSession, runs: HeldRun[]) => Promise<AdoptionDecision | null>;

/**
 * Deletes what a reaped session left in the staging area for the runs that went
 * back to the pool: staged inputs and partial downloads (`.part-SESSION`), never a
 * parent production's output read in place (only paths under the staging dir).
 */
export async function removeReturnedFiles(outcome: ReapOutcome, stagingDirOf: (productionId: number) => Promise<string>): Promise<void> {
  if (outcome.session.productionId === null) return;
  const staging = (await stagingDirOf(outcome.session.productionId)).replace(/\/+$/, '') + '/';
  for (const run of outcome.returnedRuns) {
    if (!run.stagedPath?.startsWith(staging)) continue;
    await rm(run.stagedPath, { force: true });
    await rm(partialDownloadPath(run.stagedPath, outcome.session.id, run.attempts + 1), { force: true });
  }
}

export interface ReapOutcome {
  session: ExpiredSession;
  returned: number[];
  adopted: number[];
  /** Runs left held by the ended session: their job may still run where this reaper could not reach it. */
  kept: number[];
  /** The returned runs as the dead session held them, so the reaper can delete their staged files. */
  returnedRuns: HeldRun[];
}

export interface ReapOptions {
  /** Only sessions of this production (`sessions --reap --production`). */
  productionId?: number;
  decide?: AdoptionDecider;
  /**
   * How long the reaping session has been heartbeating without a gap, in seconds; null (or absent)
   * for a reaper without a session of its own (`sessions --reap`). A session is reaped only by a
   * reaper connected for at least that session's lease: after an outage everybody's heartbeat is
   * old, and the first session back must not take everybody else's runs before they could renew.
   */
  reaperConnectedSeconds?: number | null;
  /**
   * The reaping loop's production. A session of another production is reaped only while it holds
   * no run on the grid (its claimed, downloading and staged runs go back to `new`, so its staging
   * reservations block nobody); one with jobs on the grid is left for a session of its own
   * production, which can adopt them, or for `sessions --reap`. Absent: every production (the
   * operator command).
   */
  adopterProductionId?: number | null;
}

/**
 * A live session whose lease expired, as a reaper may see it: its heartbeat is older than its lease,
 * the reaper has been connected for a lease (see ReapOptions), and the database server has been up
 * for longer than the lease (after a restart everybody gets a full lease to heartbeat again: the
 * heartbeats are on the server's clock, and nobody could renew while it was down). The candidate
 * query and the locked re-check say the same, through this one fragment.
 */
function expiredLease(connected: number | null) {
  return sql<boolean>`(s.ended_at IS NULL
    AND s.heartbeat_at < now() - s.lease_seconds * interval '1 second'
    AND (${connected}::float8 IS NULL OR ${connected}::float8 >= s.lease_seconds)
    AND now() - pg_postmaster_start_time() > s.lease_seconds * interval '1 second')`;
}

/**
 * A session that ended but may still hold runs, a lease after it ended: nothing is left held by an
 * ended session on purpose except for a moment (a release ends the session first, then cancels its
 * jobs and returns its runs) or when a reaper had to keep runs whose job it could not reach. The
 * lease is the grace that lets a release in progress finish before a reaper steps in.
 */
const endedLongAgo = sql<boolean>`(s.ended_at IS NOT NULL AND s.ended_at < now() - s.lease_seconds * interval '1 second')`;

function sessionFilters(reaper: Actor, options: ReapOptions) {
  const productionId = options.productionId ?? null;
  const adopter = options.adopterProductionId ?? null;
  return sql<boolean>`(${productionId}::int IS NULL OR s.production_id = ${productionId}::int)
    AND (${reaper.sessionId}::uuid IS NULL OR s.id <> ${reaper.sessionId}::uuid)
    AND (${adopter}::int IS NULL OR s.production_id = ${adopter}::int
         OR NOT EXISTS (SELECT 1 FROM production_runs AS g WHERE g.session_id = s.id AND g.status IN ('submitted', 'running')))`;
}

/**
 * Ends every session whose lease expired and returns its unfinished runs to `new` (or lets the
 * reaper adopt them, or keeps those it must), each with an event saying why; and recovers the runs
 * of sessions that ended still holding some, the same way. One transaction per session: it first
 * waits for any move of that session under way (lock_session_for_ending: a session only slow, not
 * dead), after which the session cannot move runs any more; its row is locked with SKIP LOCKED so
 * that two reapers never reap the same session.
 */
export async function reapExpiredSessions(db: Kysely<Database>, reaper: Actor, options: ReapOptions = {}): Promise<ReapOutcome[]> {
  const connected = options.reaperConnectedSeconds ?? null;
  const filters = sessionFilters(reaper, options);
  // Ended sessions that hold runs are found from the held runs: the distinct session ids of
  // production_runs_session_idx, one index probe each (a few live sessions), rather than by
  // looking at every session that ever ended.
  const candidates = await sql<{ id: string }>`
    WITH RECURSIVE holders AS (
      (SELECT session_id AS id FROM production_runs WHERE session_id IS NOT NULL ORDER BY session_id LIMIT 1)
      UNION ALL
      SELECT (SELECT r.session_id FROM production_runs AS r WHERE r.session_id > h.id ORDER BY r.session_id LIMIT 1)
        FROM holders AS h WHERE h.id IS NOT NULL
    )
    SELECT s.id FROM sessions AS s WHERE ${expiredLease(connected)} AND ${filters}
    UNION
    SELECT s.id FROM holders AS h JOIN sessions AS s ON s.id = h.id WHERE ${endedLongAgo} AND ${filters}
  `.execute(db);
  const outcomes: ReapOutcome[] = [];
  for (const { id } of candidates.rows) {
    const outcome = await reapOne(db, id, reaper, options);
    if (outcome) outcomes.push(outcome);
  }
  return outcomes;
}

/** Reaps one session in a transaction of its own: locks it, decides for its runs, logs the reap, then adopts or returns them. */
async function reapOne(db: Kysely<Database>, sessionId: string, reaper: Actor, options: ReapOptions): Promise<ReapOutcome | null> {
  return db.transaction().execute(async (tx) => {
    const locked = await lockReapable(tx, sessionId, options);
    if (!locked) return null; // reaped by someone else, or it came back to life
    const { session, ended } = locked;
    // Locked: a reaped session that is only slow (not dead) may have been moving these runs; now
    // that it cannot any more, what we decide from their status stays true until we commit.
    const runs = await heldRuns(tx, session.id, { lock: true });
    if (ended && runs.length === 0) return null; // nothing left to recover
    const adopter = options.adopterProductionId ?? null;
    // Another production's jobs are not ours to adopt, nor to cancel: left for its own sessions.
    if (adopter !== null && session.productionId !== adopter && runs.some(isOnGrid)) return null;
    const decision =
      options.decide && runs.length && session.productionId !== null ? await options.decide(session, runs) : { adopt: [], keep: [] };
    if (decision === null) return null; // cannot tell now whether its jobs are alive: next pass

    const adoptable = new Set(reaper.sessionId ? decision.adopt : []); // adopting needs a session to watch the jobs
    const keep = new Set(decision.keep.filter((run) => !adoptable.has(run)));
    const kept = runs.filter((r) => keep.has(r.run)).map((r) => r.run);
    // An ended session whose runs must all stay held again: nothing happens, nothing to log.
    if (ended && kept.length === runs.length) return null;

    const why = await endAndLogReap(tx, locked, reaper, kept);
    const { adopted, returned } = await recoverRuns(tx, session, runs, { adopt: adoptable, keep }, reaper, why);
    const left = runs.filter((r) => !adopted.includes(r.run) && !returned.includes(r.run)).map((r) => r.run);
    return { session, returned, adopted, kept: left, returnedRuns: runs.filter((r) => returned.includes(r.run)) };
  });
}

/** The session row, locked for reaping, if it is still expired (or ended long ago) and nobody else reaps it. */
async function lockReapable(tx: Kysely<Database>, sessionId: string, options: ReapOptions): Promise<{ session: ExpiredSession; ended: boolean } | null> {
  // Before the row: a move of this session under way finishes first (we then see it), and none
  // can start until we commit. The moves never wait for this lock, so this cannot deadlock.
  await sql`SELECT lock_session_for_ending(${sessionId}::uuid)`.execute(tx);
  const locked = await sql<{
    id: string;
    user_name: string;
    host: string;
    pid: number;
    production_id: number | null;
    end_reason: string | null;
    ended: boolean;
    heartbeat_age: number;
  }>`
    SELECT s.id, s.user_name, s.host, s.pid, s.production_id, s.end_reason, s.ended_at IS NOT NULL AS ended,
           extract(epoch FROM now() - s.heartbeat_at)::float8 AS heartbeat_age
      FROM sessions AS s
     WHERE s.id = ${sessionId}::uuid
       AND (${expiredLease(options.reaperConnectedSeconds ?? null)} OR ${endedLongAgo})
     FOR UPDATE SKIP LOCKED
  `.execute(tx);
  const row = locked.rows[0];
  if (!row) return null;
  const session: ExpiredSession = {
    id: row.id,
    user: row.user_name,
    host: row.host,
    pid: row.pid,
    productionId: row.production_id,
    heartbeatAgeSeconds: Math.round(row.heartbeat_age),
    endReason: row.ended ? row.end_reason ?? 'no reason recorded' : null,
  };
  return { session, ended: row.ended };
}

/** Ends a session whose lease expired (an ended one stays as it is) and logs the reap; returns why, for the runs' events. */
async function endAndLogReap(tx: Kysely<Database>, locked: { session: ExpiredSession; ended: boolean }, reaper: Actor, kept: readonly number[]): Promise<string> {
  const { session, ended } = locked;
  const who = reaper.sessionId ? `session ${reaper.sessionId.slice(0, 8)} (${reaper.user})` : reaper.user;
  const what = `session ${session.id.slice(0, 8)} (${session.user}@${session.host} pid ${session.pid})`;
  const why = ended
    ? `${what} ended (${session.endReason}) still holding runs; recovered by ${who}`
    : `${what} lease expired, last heartbeat ${session.heartbeatAgeSeconds}s ago; reaped by ${who}`;
  if (!ended) {
    await tx
      .updateTable('sessions')
      .set({ ended_at: sql`now()`, end_reason: `lease expired; reaped by ${who}` })
      .where('id', '=', session.id)
      .execute();
  }
  await recordEvent(tx, {
    productionId: session.productionId,
    actor: reaper,
    kind: 'reap',
    reason: 'reaped',
    message: kept.length ? `${why}; kept runs [${kept.join(', ')}] held: their jobs may still run where this reaper cannot reach them` : why,
  });
  return why;
}

/** Adopts the runs the reaper may watch, returns to `new` all but those and the kept ones. */
async function recoverRuns(
  tx: Kysely<Database>,
  session: ExpiredSession,
  runs: readonly HeldRun[],
  decided: { adopt: ReadonlySet<number>; keep: ReadonlySet<number> },
  reaper: Actor,
  why: string,
): Promise<{ adopted: number[]; returned: number[] }> {
  if (session.productionId === null) return { adopted: [], returned: [] };
  const adopted = decided.adopt.size
    ? await adoptRuns(tx, {
        productionId: session.productionId,
        runs: runs.filter((r) => decided.adopt.has(r.run)).map((r) => r.run),
        from: session.id,
        actor: { user: reaper.user, sessionId: reaper.sessionId! },
        message: `adopted from ${why}`,
      })
    : [];
  const returned = await returnRunsToPool(tx, {
    productionId: session.productionId,
    runs: runs.filter((r) => !adopted.includes(r.run) && !decided.keep.has(r.run)),
    owner: session.id,
    actor: reaper,
    message: `returned: ${why}`,
    reason: 'reaped',
  });
  return { adopted, returned };
}
