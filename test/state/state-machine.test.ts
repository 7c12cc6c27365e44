import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimRuns } from '../../src/state/claim.js';
import { failAttemptBeforeSubmit } from '../../src/session/judge.js';
import { getProduction } from '../../src/state/productions.js';
import { readCounts } from '../../src/state/counts.js';
import { heartbeat, reapExpiredSessions, startSession } from '../../src/state/sessions.js';
import { RUN_STATUSES, type RunStatus } from '../../src/core/statuses.js';
import { adoptRuns, ForbiddenTransitionError, returnRunsToPool, transitionRuns } from '../../src/state/transition.js';
import { openDatabase } from '../../src/db/connection.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { seedProduction } from '../helpers/seed.js';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

const session = (db = database.handle.db, productionId: number | null = null, leaseSeconds = 60) =>
  startSession(db, { user: 'alice', host: 'login1', pid: 1, productionId, options: {}, leaseSeconds });

/**
 * A session is reaped only once the database server has been up for longer than its lease (after a
 * restart everybody gets a full lease to heartbeat again); the test run's server may be younger.
 */
async function serverUpFor(seconds: number): Promise<void> {
  for (;;) {
    const up = await sql<{ s: number }>`SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS s`.execute(database.handle.db);
    if (up.rows[0]!.s > seconds) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function allowedPairs(): Promise<Set<string>> {
  const rows = await database.handle.db.selectFrom('run_status_transitions').select(['from_status', 'to_status']).execute();
  return new Set(rows.map((r) => `${r.from_status}>${r.to_status}`));
}

describe('the state machine', () => {
  it('refuses every transition that is not allowed, and changes nothing', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 1, firstRun: 1 });
    const allowed = await allowedPairs();
    const actor = { user: 'alice', sessionId: await session(db, productionId) };
    let refused = 0;
    for (const from of RUN_STATUSES) {
      for (const to of RUN_STATUSES) {
        if (allowed.has(`${from}>${to}`)) continue;
        await expect(
          transitionRuns(db, { productionId, runs: [1], from, to, owner: null, actor }),
        ).rejects.toBeInstanceOf(ForbiddenTransitionError);
        refused++;
      }
    }
    expect(refused).toBe(RUN_STATUSES.length ** 2 - allowed.size);
    const row = await db.selectFrom('production_runs').select('status').where('run_number', '=', 1).executeTakeFirstOrThrow();
    expect(row.status).toBe('new');
    const events = await db.selectFrom('events').select('id').where('production_id', '=', productionId).where('kind', '=', 'transition').execute();
    expect(events).toHaveLength(0);
  });

  it('moves a run through every status with one event each and keeps the counters exact', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 3, firstRun: 10 });
    const id = await session(db, productionId);
    const actor = { user: 'alice', sessionId: id };
    expect(await claimRuns(db, { productionId, parentId: null, session: { id, user: 'alice' }, limit: 2 })).toEqual([10, 11]);
    const path: RunStatus[] = ['claimed', 'downloading', 'staged', 'submitted', 'running', 'finished'];
    for (let i = 1; i < path.length; i++) {
      const moved = await transitionRuns(db, {
        productionId,
        runs: [{ run: 10, jobId: path[i] === 'submitted' ? 'local:h:1' : undefined }],
        from: path[i - 1]!,
        to: path[i]!,
        owner: id,
        actor,
        countAttempt: path[i] === 'finished',
      });
      expect(moved).toEqual([10]);
    }
    const run = await db.selectFrom('production_runs').selectAll().where('production_id', '=', productionId).where('run_number', '=', 10).executeTakeFirstOrThrow();
    expect(run).toMatchObject({ status: 'finished', session_id: null, job_id: 'local:h:1', attempts: 1, claimed_by: 'alice' });
    const events = await db.selectFrom('events').select(['from_status', 'to_status']).where('production_id', '=', productionId).where('run_number', '=', 10).orderBy('id').execute();
    expect(events.map((e) => `${e.from_status}>${e.to_status}`)).toEqual(['new>claimed', ...path.slice(1).map((to, i) => `${path[i]}>${to}`)]);
    const counts = await readCounts(db, productionId);
    expect(counts.total).toBe(3);
    expect(counts.counts).toMatchObject({ finished: 1, claimed: 1, new: 1 });
    const truth = await sql<{ status: string; n: number }>`SELECT status, count(*)::int AS n FROM production_runs WHERE production_id = ${productionId} GROUP BY 1`.execute(db);
    for (const { status, n } of truth.rows) expect(counts.counts[status as RunStatus]).toBe(n);
  });

  it('writes and clears each column the way each move says: a failed attempt, a retry, a finish', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 1, firstRun: 15 });
    const id = await session(db, productionId);
    const actor = { user: 'alice', sessionId: id };
    const row = () => db.selectFrom('production_runs').selectAll().where('production_id', '=', productionId).where('run_number', '=', 15).executeTakeFirstOrThrow();
    const move = (from: RunStatus, to: RunStatus, update: Record<string, unknown> = {}, extra: { countAttempt?: boolean; message?: string } = {}) =>
      transitionRuns(db, { productionId, runs: [{ run: 15, ...update }], from, to, owner: to === 'claimed' ? null : id, actor, ...extra });

    expect(await claimRuns(db, { productionId, parentId: null, session: { id, user: 'alice' }, limit: 1 })).toEqual([15]);
    await move('claimed', 'downloading', { stagedPath: '/stage/15', stagedBytes: 100 });
    await move('downloading', 'staged');
    await move('staged', 'submitted', { jobId: 'slurm:7' });
    await move('submitted', 'running');
    expect(await row()).toMatchObject({ status: 'running', staged_path: '/stage/15', staged_bytes: 100, job_id: 'slurm:7', attempts: 0 });
    expect((await row()).started_at).not.toBeNull();

    await move('running', 'new', { exitCode: 3, lastError: 'exit code 3' }, { countAttempt: true, message: 'attempt 1/3 failed: exit code 3' });
    const failed = await row();
    expect(failed).toMatchObject({ status: 'new', session_id: null, claimed_by: null, attempts: 1, exit_code: 3, last_error: 'exit code 3', job_id: 'slurm:7' });
    expect(failed).toMatchObject({ staged_path: null, staged_bytes: null, outputs: null, output_bytes: null, finished_at: null });

    expect(await claimRuns(db, { productionId, parentId: null, session: { id, user: 'alice' }, limit: 1 })).toEqual([15]);
    const retried = await row();
    // A new attempt starts clean of the last job, but remembers why the last one failed.
    expect(retried).toMatchObject({ status: 'claimed', session_id: id, claimed_by: 'alice', job_id: null, exit_code: null, started_at: null, last_error: 'exit code 3' });

    await move('claimed', 'downloading', { stagedPath: '/stage/15' });
    await move('downloading', 'staged', { stagedBytes: 100 });
    await move('staged', 'submitted', { jobId: 'slurm:8' });
    await move('submitted', 'finished', { outputs: { tree: '/out/15.root' }, outputBytes: 2048, exitCode: 0 }, { countAttempt: true });
    const done = await row();
    expect(done).toMatchObject({ status: 'finished', session_id: null, claimed_by: 'alice', attempts: 2, job_id: 'slurm:8', exit_code: 0 });
    expect(done).toMatchObject({ outputs: { tree: '/out/15.root' }, output_bytes: 2048, last_error: null, staged_path: null, staged_bytes: 100 });
    expect(done.finished_at).not.toBeNull();
    const messages = await db.selectFrom('events').select('message').where('production_id', '=', productionId).where('to_status', '=', 'new').execute();
    expect(messages.map((m) => m.message)).toEqual(['attempt 1/3 failed: exit code 3']);
  });

  it('counts a status changed by hand in SQL as well as the moves of the state machine', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 6, firstRun: 600 });
    const id = await session(db, productionId);
    await claimRuns(db, { productionId, parentId: null, session: { id, user: 'alice' }, limit: 4 });
    // What a coordinator might type in psql: no state machine, no setting.
    await sql`UPDATE production_runs SET status = 'failed', session_id = NULL WHERE production_id = ${productionId} AND run_number IN (600, 601)`.execute(db);
    await sql`UPDATE production_runs SET last_error = 'checked by hand' WHERE production_id = ${productionId} AND run_number = 605`.execute(db);
    const counts = await readCounts(db, productionId);
    expect(counts.counts).toMatchObject({ new: 2, claimed: 2, failed: 2 });
  });

  it('does not let a session touch a run it does not hold', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 1, firstRun: 20 });
    const alice = await session(db, productionId);
    const bob = await session(db, productionId);
    await claimRuns(db, { productionId, parentId: null, session: { id: alice, user: 'alice' }, limit: 1 });
    const moved = await transitionRuns(db, { productionId, runs: [20], from: 'claimed', to: 'new', owner: bob, actor: { user: 'bob', sessionId: bob } });
    expect(moved).toEqual([]);
    const row = await db.selectFrom('production_runs').select(['status', 'session_id']).where('run_number', '=', 20).executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'claimed', session_id: alice });
  });

  it('fences a stale session out once it has been reaped', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 4, firstRun: 30 });
    const stale = await session(db, productionId, 1);
    const claimed = await claimRuns(db, { productionId, parentId: null, session: { id: stale, user: 'carol' }, limit: 4 });
    expect(claimed).toHaveLength(4);
    await transitionRuns(db, { productionId, runs: [30], from: 'claimed', to: 'downloading', owner: stale, actor: { user: 'carol', sessionId: stale } });
    await sql`UPDATE sessions SET heartbeat_at = now() - interval '5 seconds' WHERE id = ${stale}::uuid`.execute(db);
    await serverUpFor(1);
    const reaper = await session(db, productionId);
    const outcomes = await reapExpiredSessions(db, { user: 'alice', sessionId: reaper });
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]!.returned).toEqual([30, 31, 32, 33]);
    // The reaped session wakes up: its heartbeat fails and its writes change nothing.
    expect(await heartbeat(db, stale)).toBe(false);
    const moved = await transitionRuns(db, { productionId, runs: [31], from: 'claimed', to: 'downloading', owner: stale, actor: { user: 'carol', sessionId: stale } });
    expect(moved).toEqual([]);
    // Bob claims them now; the stale session still cannot touch them.
    const bob = await session(db, productionId);
    expect(await claimRuns(db, { productionId, parentId: null, session: { id: bob, user: 'bob' }, limit: 4 })).toEqual([30, 31, 32, 33]);
    expect(await transitionRuns(db, { productionId, runs: [30, 31], from: 'claimed', to: 'new', owner: stale, actor: { user: 'carol', sessionId: stale } })).toEqual([]);
    const events = await db.selectFrom('events').select(['kind', 'message']).where('production_id', '=', productionId).where('to_status', '=', 'new').execute();
    expect(events).toHaveLength(4);
    expect(events[0]!.message).toMatch(/lease expired/);
    const ended = await db.selectFrom('sessions').select(['ended_at', 'end_reason']).where('id', '=', stale).executeTakeFirstOrThrow();
    expect(ended.ended_at).not.toBeNull();
    expect(ended.end_reason).toMatch(/lease expired/);
  });

  it('reaps a session that is only slow without stranding a run it moves at that moment', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 1, firstRun: 40 });
    const slow = await session(db, productionId, 1);
    const actor = { user: 'carol', sessionId: slow };
    await claimRuns(db, { productionId, parentId: null, session: { id: slow, user: 'carol' }, limit: 1 });
    for (const [from, to] of [['claimed', 'downloading'], ['downloading', 'staged']] as const) {
      await transitionRuns(db, { productionId, runs: [40], from, to, owner: slow, actor });
    }
    await sql`UPDATE sessions SET heartbeat_at = now() - interval '5 seconds' WHERE id = ${slow}::uuid`.execute(db);
    await serverUpFor(1);
    // The slow session records a submission on its own connection; the reaper comes in before it commits.
    const own = openDatabase(database.url, { applicationName: 'slow session', max: 1 });
    try {
      let commit!: () => void;
      const committing = new Promise<void>((r) => (commit = r));
      let recorded!: () => void;
      const hasRecorded = new Promise<void>((r) => (recorded = r));
      const submission = own.db.transaction().execute(async (tx) => {
        const moved = await transitionRuns(tx, { productionId, runs: [{ run: 40, jobId: 'local:h:1' }], from: 'staged', to: 'submitted', owner: slow, actor });
        recorded();
        await committing;
        return moved;
      });
      await hasRecorded;
      const reaper = await session(db, productionId);
      const reaping = reapExpiredSessions(db, { user: 'alice', sessionId: reaper });
      await new Promise((r) => setTimeout(r, 300)); // the reaper is now waiting on the run's row
      commit();
      expect(await submission).toEqual([40]);
      const [outcome] = await reaping;
      // It sees the run as the slow session left it (submitted) and returns it from there.
      expect(outcome!.returned).toEqual([40]);
      const row = await db.selectFrom('production_runs').select(['status', 'session_id']).where('run_number', '=', 40).executeTakeFirstOrThrow();
      expect(row).toEqual({ status: 'new', session_id: null });
    } finally {
      await own.close();
    }
  });
});

describe('a session that has ended', () => {
  it('moves nothing, not even the runs it still holds; a live reaper and an operator still can', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 6, firstRun: 50 });
    const ended = await session(db, productionId);
    const actor = { user: 'erin', sessionId: ended };
    expect(await claimRuns(db, { productionId, parentId: null, session: { id: ended, user: 'erin' }, limit: 3 })).toEqual([50, 51, 52]);
    await transitionRuns(db, { productionId, runs: [52], from: 'claimed', to: 'downloading', owner: ended, actor });
    await sql`UPDATE sessions SET ended_at = now(), end_reason = 'ended by hand' WHERE id = ${ended}::uuid`.execute(db);
    const moveEvents = async () => (await db.selectFrom('events').select('id').where('production_id', '=', productionId).where('kind', 'in', ['transition', 'adopt']).execute()).length;
    const eventsBefore = await moveEvents();

    // Every kind of move it could try: a step of a held run, a failed attempt, a return, a claim, an adoption.
    expect(await transitionRuns(db, { productionId, runs: [50], from: 'claimed', to: 'downloading', owner: ended, actor })).toEqual([]);
    expect(await transitionRuns(db, { productionId, runs: [52], from: 'downloading', to: 'new', owner: ended, actor, countAttempt: true })).toEqual([]);
    expect(await returnRunsToPool(db, { productionId, runs: [{ run: 51, status: 'claimed' }], owner: ended, actor, message: 'aborted' })).toEqual([]);
    expect(await claimRuns(db, { productionId, parentId: null, session: { id: ended, user: 'erin' }, limit: 3 })).toEqual([]);
    const other = await session(db, productionId);
    expect(await claimRuns(db, { productionId, parentId: null, session: { id: other, user: 'olga' }, limit: 1 })).toEqual([53]);
    expect(await adoptRuns(db, { productionId, runs: [53], from: other, actor, message: 'adopted' })).toEqual([]);
    const rows = await db.selectFrom('production_runs').select(['run_number', 'status', 'session_id', 'attempts']).where('production_id', '=', productionId).orderBy('run_number').execute();
    expect(rows.map((r) => [r.run_number, r.status, r.session_id === ended ? 'ended' : r.session_id === other ? 'other' : r.session_id])).toEqual([
      [50, 'claimed', 'ended'],
      [51, 'claimed', 'ended'],
      [52, 'downloading', 'ended'],
      [53, 'claimed', 'other'],
      [54, 'new', null],
      [55, 'new', null],
    ]);
    expect(rows.every((r) => r.attempts === 0)).toBe(true);
    // Only other's claim was logged.
    expect(await moveEvents()).toBe(eventsBefore + 1);

    // A live reaper returns and adopts the ended session's runs (owner: the ended session, actor: the reaper).
    const reaper = { user: 'rita', sessionId: other };
    expect(await adoptRuns(db, { productionId, runs: [50], from: ended, actor: reaper, message: 'adopted from an ended session' })).toEqual([50]);
    expect(await returnRunsToPool(db, { productionId, runs: [{ run: 51, status: 'claimed' }, { run: 52, status: 'downloading' }], owner: ended, actor: reaper, message: 'returned' })).toEqual([51, 52]);
    // An operator (no session) moves runs whoever holds them, as before.
    expect(await returnRunsToPool(db, { productionId, runs: [{ run: 50, status: 'claimed' }], owner: other, actor: { user: 'oscar', sessionId: null }, message: 'released' })).toEqual([50]);
    const after = await db.selectFrom('production_runs').select(['run_number', 'status', 'session_id']).where('production_id', '=', productionId).where('session_id', 'is not', null).execute();
    expect(after).toEqual([{ run_number: 53, status: 'claimed', session_id: other }]);
  });

  it('a move under way when the session is being ended finishes first; one that comes while it is ended is refused without waiting', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 3, firstRun: 70 });
    const slow = await session(db, productionId);
    const actor = { user: 'sam', sessionId: slow };
    await claimRuns(db, { productionId, parentId: null, session: { id: slow, user: 'sam' }, limit: 3 });
    const own = openDatabase(database.url, { applicationName: 'slow session', max: 1 });
    const ender = openDatabase(database.url, { applicationName: 'ender', max: 1 });
    let commit!: () => void;
    const committing = new Promise<void>((r) => (commit = r));
    let endCommitted!: () => void;
    const endMayCommit = new Promise<void>((r) => (endCommitted = r));
    try {
      // The session's move is under way (not committed) when someone starts ending the session.
      let moved!: () => void;
      const hasMoved = new Promise<void>((r) => (moved = r));
      const move = own.db.transaction().execute(async (tx) => {
        const result = await transitionRuns(tx, { productionId, runs: [70], from: 'claimed', to: 'downloading', owner: slow, actor });
        moved();
        await committing;
        return result;
      });
      await hasMoved;
      let lockTaken = false;
      const ending = ender.db.transaction().execute(async (tx) => {
        await sql`SELECT lock_session_for_ending(${slow}::uuid)`.execute(tx);
        lockTaken = true;
        await sql`UPDATE sessions SET ended_at = now(), end_reason = 'released' WHERE id = ${slow}::uuid`.execute(tx);
        await endMayCommit;
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(lockTaken).toBe(false); // the ender waits for the move under way
      commit();
      expect(await move).toEqual([70]);
      while (!lockTaken) await new Promise((r) => setTimeout(r, 20));
      // While it is being ended (not committed yet), a move of the session is refused at once.
      const started = Date.now();
      expect(await transitionRuns(db, { productionId, runs: [71], from: 'claimed', to: 'downloading', owner: slow, actor })).toEqual([]);
      expect(Date.now() - started).toBeLessThan(1000);
      endCommitted();
      await ending;
      expect(await transitionRuns(db, { productionId, runs: [72], from: 'claimed', to: 'downloading', owner: slow, actor })).toEqual([]);
      const rows = await db.selectFrom('production_runs').select(['run_number', 'status']).where('production_id', '=', productionId).orderBy('run_number').execute();
      expect(rows.map((r) => r.status)).toEqual(['downloading', 'claimed', 'claimed']);
    } finally {
      // Let both transactions end whatever failed, so the connections can close.
      commit();
      endCommitted();
      await new Promise((r) => setTimeout(r, 100));
      await own.close();
      await ender.close();
    }
  });
});

describe('a job that cannot be prepared', () => {
  it('fails that attempt only: back to new with the attempt counted, then failed once attempts are used up', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 2, firstRun: 80, maxAttempts: 2 });
    const staging = await mkdtemp(join(tmpdir(), 'rp-staging-'));
    try {
      // The staging area as its frozen config would name it (a frozen config cannot be changed in the database).
      const seeded = await getProduction(db, productionId);
      const production = { ...seeded, config: { ...seeded.config, stagingDir: staging } };
      const id = await session(db, productionId);
      const context = { db, production, actor: { user: 'alice', sessionId: id } };
      const stage = async () => {
        expect(await claimRuns(db, { productionId, parentId: null, session: { id, user: 'alice' }, limit: 1 })).toEqual([80]);
        const stagedPath = join(staging, 'in-80.mid');
        await writeFile(stagedPath, 'input');
        await transitionRuns(db, { productionId, runs: [{ run: 80, stagedPath }], from: 'claimed', to: 'staged', owner: id, actor: context.actor });
        const row = await db.selectFrom('production_runs').select(['attempts']).where('production_id', '=', productionId).where('run_number', '=', 80).executeTakeFirstOrThrow();
        return { run: 80, attempts: row.attempts, stagedPath };
      };
      const row = () => db.selectFrom('production_runs').selectAll().where('production_id', '=', productionId).where('run_number', '=', 80).executeTakeFirstOrThrow();

      const first = await stage();
      const error = "EACCES: permission denied, mkdir '/data/tree/v1'";
      expect(await failAttemptBeforeSubmit(context, first, error)).toEqual({ kind: 'retry', run: 80, exitCode: null, error: `the job could not be prepared: ${error}`, attempt: 1 });
      expect(await row()).toMatchObject({ status: 'new', session_id: null, attempts: 1, staged_path: null, last_error: `the job could not be prepared: ${error}` });
      expect(existsSync(first.stagedPath)).toBe(false); // the staging area does not keep what nobody will use

      const second = await stage();
      expect(await failAttemptBeforeSubmit(context, second, error)).toMatchObject({ kind: 'failed', attempt: 2 });
      expect(await row()).toMatchObject({ status: 'failed', session_id: null, attempts: 2 });
      expect(existsSync(second.stagedPath)).toBe(false);
      const events = await db.selectFrom('events').select(['from_status', 'to_status', 'message']).where('production_id', '=', productionId).where('from_status', '=', 'staged').orderBy('id').execute();
      expect(events).toEqual([
        { from_status: 'staged', to_status: 'new', message: `attempt 1/2 failed: the job could not be prepared: ${error}` },
        { from_status: 'staged', to_status: 'failed', message: `attempt 2/2 failed: the job could not be prepared: ${error}` },
      ]);
      // A run this session no longer holds is left alone.
      expect(await failAttemptBeforeSubmit(context, { run: 81, attempts: 0, stagedPath: null }, error)).toEqual({ kind: 'lost-ownership', run: 81 });
      const why = await db.selectFrom('run_status_transitions').select('why').where('from_status', '=', 'staged').where('to_status', '=', 'failed').executeTakeFirstOrThrow();
      expect(why.why).toBe('the job could not be prepared and attempts are exhausted');
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
});

describe('claims', () => {
  it('16 concurrent connections claim 10,000 runs in batches, each exactly once', async () => {
    const { db } = database.handle;
    const { productionId, runs } = await seedProduction(db, { runs: 10_000, firstRun: 100_000 });
    const claimedBy = new Map<number, string>();
    await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const own = openDatabase(database.url, { max: 1 });
        try {
          const id = await session(own.db, productionId);
          for (;;) {
            const got = await claimRuns(own.db, { productionId, parentId: null, session: { id, user: `user${i}` }, limit: 25 });
            if (got.length === 0) break;
            for (const run of got) {
              expect(claimedBy.has(run)).toBe(false);
              claimedBy.set(run, id);
            }
          }
        } finally {
          await own.close();
        }
      }),
    );
    expect(claimedBy.size).toBe(runs.length);
    const dup = await sql<{ n: number }>`SELECT count(*)::int AS n FROM events WHERE production_id = ${productionId} AND to_status = 'claimed' GROUP BY run_number HAVING count(*) > 1`.execute(db);
    expect(dup.rows).toHaveLength(0);
    const counts = await readCounts(db, productionId);
    expect(counts.counts.claimed).toBe(10_000);
    expect(counts.counts.new).toBe(0);
  });

  it('never exceeds the production limit under concurrent claims', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 200, firstRun: 300_000, maxRunning: 17 });
    const results = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const own = openDatabase(database.url, { max: 1 });
        try {
          const id = await session(own.db, productionId);
          let total = 0;
          for (let i = 0; i < 5; i++) total += (await claimRuns(own.db, { productionId, parentId: null, session: { id, user: 'u' }, limit: 3 })).length;
          return total;
        } finally {
          await own.close();
        }
      }),
    );
    expect(results.reduce((a, b) => a + b, 0)).toBe(17);
    expect((await readCounts(db, productionId)).counts.claimed).toBe(17);
  });

  it('claims only from the datasets asked for, in run order', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 30, firstRun: 400_000, datasets: ['A', 'B', 'C'] });
    const id = await session(db, productionId);
    const got = await claimRuns(db, { productionId, parentId: null, session: { id, user: 'u' }, limit: 100, datasets: ['B'] });
    expect(got).toHaveLength(10);
    expect([...got].sort((a, b) => a - b)).toEqual(got);
    const rows = await db.selectFrom('production_runs').select('dataset').where('production_id', '=', productionId).where('status', '=', 'claimed').execute();
    expect(new Set(rows.map((r) => r.dataset))).toEqual(new Set(['B']));
  });

  it('claims nothing for a paused production', async () => {
    const { db } = database.handle;
    const { productionId } = await seedProduction(db, { runs: 5, firstRun: 500_000 });
    await db.updateTable('productions').set({ status: 'paused' }).where('id', '=', productionId).execute();
    const id = await session(db, productionId);
    expect(await claimRuns(db, { productionId, parentId: null, session: { id, user: 'u' }, limit: 5 })).toEqual([]);
  });
});
