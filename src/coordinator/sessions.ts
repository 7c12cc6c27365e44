import { rm } from 'node:fs/promises';
import { sql, type Kysely } from 'kysely';
import { partialDownloadPath } from '../outputs/paths.js';
import type { Database } from '../db/schema.js';
import type { HeldStatus } from './statuses.js';
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
  if (ended) await recordEvent(db, { productionId: ended.production_id, actor, kind: 'session-end', message: reason });
  return ended !== undefined;
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
}

/**
 * Decides, for a dead session's runs, which the reaper adopts (their jobs are
 * alive, or ended and can be judged from the wrapper's status file). The rest
 * go back to `new`. Without a decider everything goes back to `new`.
 */
export type AdoptionDecider = (session: ExpiredSession, runs: HeldRun[]) => Promise<number[]>;

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
  /** The returned runs as the dead session held them, so the reaper can delete their staged files. */
  returnedRuns: HeldRun[];
}

/**
 * Ends every session whose lease expired and returns its unfinished runs to
 * `new` (or lets the reaper adopt them), each with an event saying why. One
 * transaction per dead session; its row is locked with SKIP LOCKED so that two
 * reapers never reap the same session.
 */
export async function reapExpiredSessions(
  db: Kysely<Database>,
  reaper: Actor,
  options: { productionId?: number; decide?: AdoptionDecider } = {},
): Promise<ReapOutcome[]> {
  const candidates = await db
    .selectFrom('sessions')
    .select('id')
    .where('ended_at', 'is', null)
    .where(sql<boolean>`heartbeat_at < now() - lease_seconds * interval '1 second'`)
    .$if(options.productionId !== undefined, (q) => q.where('production_id', '=', options.productionId!))
    .$if(reaper.sessionId !== null, (q) => q.where('id', '!=', reaper.sessionId!))
    .execute();
  const outcomes: ReapOutcome[] = [];
  for (const { id } of candidates) {
    const outcome = await reapOne(db, id, reaper, options.decide);
    if (outcome) outcomes.push(outcome);
  }
  return outcomes;
}

async function reapOne(db: Kysely<Database>, sessionId: string, reaper: Actor, decide?: AdoptionDecider): Promise<ReapOutcome | null> {
  return db.transaction().execute(async (tx) => {
    const locked = await sql<ExpiredSession & { production_id: number | null; heartbeat_age: number; user_name: string }>`
      SELECT id, user_name, host, pid, production_id,
             extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age
        FROM sessions
       WHERE id = ${sessionId}::uuid AND ended_at IS NULL
         AND heartbeat_at < now() - lease_seconds * interval '1 second'
       FOR UPDATE SKIP LOCKED
    `.execute(tx);
    const row = locked.rows[0];
    if (!row) return null; // reaped by someone else, or it came back to life
    const session: ExpiredSession = {
      id: row.id,
      user: row.user_name,
      host: row.host,
      pid: row.pid,
      productionId: row.production_id,
      heartbeatAgeSeconds: Math.round(row.heartbeat_age),
    };
    const who = reaper.sessionId ? `session ${reaper.sessionId.slice(0, 8)} (${reaper.user})` : reaper.user;
    const why = `session ${session.id.slice(0, 8)} (${session.user}@${session.host} pid ${session.pid}) lease expired, last heartbeat ${session.heartbeatAgeSeconds}s ago; reaped by ${who}`;
    await tx
      .updateTable('sessions')
      .set({ ended_at: sql`now()`, end_reason: `lease expired; reaped by ${who}` })
      .where('id', '=', session.id)
      .execute();
    await recordEvent(tx, { productionId: session.productionId, actor: reaper, kind: 'reap', message: why });

    // Locked: a reaped session that is only slow (not dead) may be moving these runs right now. Read
    // without the lock, a run it moves from staged to submitted before the return below would be
    // neither adopted (it was staged) nor returned (it is no longer staged): held by an ended session.
    const runs = await heldRuns(tx, session.id, { lock: true });
    const adoptable = decide && reaper.sessionId && runs.length ? new Set(await decide(session, runs)) : new Set<number>();
    const adopted =
      adoptable.size && session.productionId !== null
        ? await adoptRuns(tx, {
            productionId: session.productionId,
            runs: runs.filter((r) => adoptable.has(r.run)).map((r) => r.run),
            from: session.id,
            actor: { user: reaper.user, sessionId: reaper.sessionId! },
            message: `adopted from ${why}`,
          })
        : [];
    const returned =
      session.productionId === null
        ? []
        : await returnRunsToPool(tx, {
            productionId: session.productionId,
            runs: runs.filter((r) => !adopted.includes(r.run)),
            owner: session.id,
            actor: reaper,
            message: `returned: ${why}`,
          });
    return { session, returned, adopted, returnedRuns: runs.filter((r) => returned.includes(r.run)) };
  });
}
