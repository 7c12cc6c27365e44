import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { adoptionDeciderFor, lookAfterRevoking } from '../../src/state/adoption.js';
import { claimRuns } from '../../src/state/claim.js';
import { attemptFiles } from '../../src/session/attempt-files.js';
import type { JobContext } from '../../src/session/context.js';
import { assessEndedJob, moveFor, onGridRuns, recordJudgements } from '../../src/session/judge.js';
import { ensureModulesFile, prepareJob } from '../../src/session/prepare-job.js';
import { readHeldRuns } from '../../src/state/held-runs.js';

const jobStatusPath = (context: JobContext, run: { run: number; dataset: string; attempts: number }) => attemptFiles(context.production, context.actor.user, run).statusPath;
import { findProduction, type Production } from '../../src/state/productions.js';
import { heartbeat, reapExpiredSessions, removeReturnedFiles, startSession } from '../../src/state/sessions.js';
import { transitionRuns, type Actor } from '../../src/state/transition.js';
import { createLocalGrid } from '../../src/grids/local.js';
import { releaseJob, releasePathFor } from '../../src/grids/wrapper.js';
import { groupAlive, scenario, type Scenario } from '../helpers/scenario.js';

/**
 * The reaper against a real database, real job processes of the local grid and real wrapper files:
 * who may be reaped after an outage, what a loop session does with another production's sessions,
 * runs held by sessions that ended, and jobs the reaper cannot reach.
 */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HOST = hostname();

/** A session is reaped only once the database server has been up for longer than its lease. */
async function serverUpFor(s: Scenario, seconds: number): Promise<void> {
  for (;;) {
    const up = await sql<{ s: number }>`SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS s`.execute(s.database.handle.db);
    if (up.rows[0]!.s > seconds) return;
    await sleep(100);
  }
}

async function newSession(s: Scenario, production: Production, user: string, leaseSeconds: number): Promise<Actor & { sessionId: string }> {
  const sessionId = await startSession(s.database.handle.db, { user, host: HOST, pid: process.pid, productionId: production.id, options: {}, leaseSeconds });
  return { user, sessionId };
}

/** Its heartbeat `seconds` ago, as after a crash (or an outage) that long. */
async function silentFor(s: Scenario, sessionId: string, seconds: number): Promise<void> {
  await sql`UPDATE sessions SET heartbeat_at = now() - ${seconds}::float8 * interval '1 second' WHERE id = ${sessionId}::uuid`.execute(s.database.handle.db);
}

/** Claims `count` runs for the actor and moves them to `status` (staged ones with a staged file), as the loop does. */
async function hold(s: Scenario, production: Production, actor: Actor & { sessionId: string }, count: number, status: 'claimed' | 'staged'): Promise<number[]> {
  const { db } = s.database.handle;
  const runs = await claimRuns(db, { productionId: production.id, parentId: null, session: { id: actor.sessionId, user: actor.user }, limit: count });
  expect(runs).toHaveLength(count);
  if (status === 'staged') {
    const staged = [];
    for (const run of runs) {
      const path = join(production.config.stagingDir, `in-${run}.mid`);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, 'input');
      staged.push({ run, stagedPath: path });
    }
    expect(await transitionRuns(db, { productionId: production.id, runs: staged, from: 'claimed', to: 'staged', owner: actor.sessionId, actor })).toEqual(runs);
  }
  return runs;
}

/** Submits a staged run's job on the real local grid, records and releases it: the loop's submit. */
async function submitted(s: Scenario, production: Production, actor: Actor & { sessionId: string }, run: number): Promise<string> {
  const { db } = s.database.handle;
  const context: JobContext = { db, production, actor };
  const detail = (await readHeldRuns(db, actor.sessionId)).find((r) => r.run === run)!;
  const job = await prepareJob(context, detail, await ensureModulesFile(production));
  const jobId = await createLocalGrid().submit(job);
  await transitionRuns(db, { productionId: production.id, runs: [{ run, jobId, jobToken: job.release.token }], from: 'staged', to: 'submitted', owner: actor.sessionId, actor });
  expect(await releaseJob(job.release)).toBe(true);
  return jobId;
}

/** Records a job on another host (`local:otherhost:PID`), as a session there would; its files are written by hand. */
async function submittedElsewhere(s: Scenario, production: Production, actor: Actor & { sessionId: string }, run: number, pid: number): Promise<string> {
  const { db } = s.database.handle;
  const jobId = `local:otherhost:${pid}`;
  await transitionRuns(db, { productionId: production.id, runs: [{ run, jobId, jobToken: `token-${run}` }], from: 'staged', to: 'submitted', owner: actor.sessionId, actor });
  const statusPath = jobStatusPath({ db, production, actor }, { run, dataset: '', attempts: 0 });
  await mkdir(dirname(statusPath), { recursive: true }); // its session made the job's directory before submitting
  await writeFile(releasePathFor(statusPath), `token-${run}`);
  return statusPath;
}

const startRecord = (pid: number) => ({ host: 'otherhost', pid, started: '2026-01-01T00:00:00Z' });

async function runRows(s: Scenario, production: Production, runs: number[]) {
  return s.database.handle.db
    .selectFrom('production_runs')
    .select(['run_number', 'status', 'session_id', 'attempts', 'last_error'])
    .where('production_id', '=', production.id)
    .where('run_number', 'in', runs)
    .orderBy('run_number')
    .execute();
}

async function sessionEnded(s: Scenario, sessionId: string): Promise<boolean> {
  const row = await s.database.handle.db.selectFrom('sessions').select('ended_at').where('id', '=', sessionId).executeTakeFirstOrThrow();
  return row.ended_at !== null;
}

describe('reaping after a database outage', () => {
  it('reaps a session only for a reaper connected for its lease, and only on a server up for longer than it', async () => {
    const s = await scenario(6, { firstRun: 61_000 });
    const { db } = s.database.handle;
    const production = await findProduction(db, 'alcapana');
    const reaper = await newSession(s, production, 'rita', 60);
    await serverUpFor(s, 2);

    // Everybody's heartbeat is a minute old, as after an outage of a minute.
    const quiet = await newSession(s, production, 'quinn', 2);
    const runs = await hold(s, production, quiet, 2, 'claimed');
    await silentFor(s, quiet.sessionId, 60);
    // The reaper itself has only been back for a second: quinn gets its lease to heartbeat again.
    expect(await reapExpiredSessions(db, reaper, { reaperConnectedSeconds: 1 })).toEqual([]);
    expect(await sessionEnded(s, quiet.sessionId)).toBe(false);
    expect((await runRows(s, production, runs)).every((r) => r.status === 'claimed' && r.session_id === quiet.sessionId)).toBe(true);
    // Connected for a whole lease of quinn's: quinn had its chance.
    const [outcome] = await reapExpiredSessions(db, reaper, { reaperConnectedSeconds: 2 });
    expect(outcome).toMatchObject({ session: { id: quiet.sessionId, endReason: null }, returned: runs, adopted: [], kept: [] });

    // A server restarted less than a lease ago: nobody could heartbeat while it was down.
    const uptime = (await sql<{ s: number }>`SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS s`.execute(db)).rows[0]!.s;
    const longLease = Math.ceil(uptime) + 3600;
    const patient = await newSession(s, production, 'pat', longLease);
    const held = await hold(s, production, patient, 1, 'claimed');
    await silentFor(s, patient.sessionId, longLease + 60);
    expect(await reapExpiredSessions(db, reaper, { reaperConnectedSeconds: longLease * 2 })).toEqual([]);
    expect(await reapExpiredSessions(db, { user: 'operator', sessionId: null })).toEqual([]); // nor `sessions --reap`
    expect(await heartbeat(db, patient.sessionId)).toBe(true); // back, with its run
    expect((await runRows(s, production, held))[0]).toMatchObject({ status: 'claimed', session_id: patient.sessionId });
  });
});

describe('sessions of another production', () => {
  it('a loop session reaps them only while they have no job on the grid, and never cancels their jobs; `sessions --reap` does', async () => {
    const s = await scenario(8, { firstRun: 62_000 });
    const { db } = s.database.handle;
    await writeFile(s.fixture.holdFile, ''); // jobs wait
    expect((await s.cli(['new', '--production', 'alcapana', '--tag', 'v2'])).code).toBe(0);
    const mine = await findProduction(db, 'alcapana', 1);
    const theirs = await findProduction(db, 'alcapana', 2);
    const reaper = await newSession(s, mine, 'rita', 60);
    await serverUpFor(s, 1);

    // busy: a job of theirs on the grid, and a claimed run. idle: only staged runs (a staging reservation).
    const busy = await newSession(s, theirs, 'bo', 1);
    const [onGrid] = await hold(s, theirs, busy, 1, 'staged');
    const jobId = await submitted(s, theirs, busy, onGrid!);
    const [claimed] = await hold(s, theirs, busy, 1, 'claimed');
    const idle = await newSession(s, theirs, 'ida', 1);
    const idleRuns = await hold(s, theirs, idle, 2, 'staged');
    const idleFiles = (await readHeldRuns(db, idle.sessionId)).map((r) => r.stagedPath!);
    await silentFor(s, busy.sessionId, 10);
    await silentFor(s, idle.sessionId, 10);
    const jobPid = Number(jobId.split(':').at(-1));
    expect(groupAlive(jobPid)).toBe(true);

    const grid = createLocalGrid({ killGraceSeconds: 1 });
    const loopReap = (options: { adopterProductionId?: number } = {}) =>
      reapExpiredSessions(db, reaper, {
        reaperConnectedSeconds: 60,
        ...options,
        // --orphans cancel: the policy that would kill a job it was allowed to touch.
        decide: adoptionDeciderFor(db, { orphans: 'cancel', adopter: { productionId: mine.id, grid } }),
      });
    const outcomes = await loopReap({ adopterProductionId: mine.id });
    expect(outcomes.map((o) => o.session.id)).toEqual([idle.sessionId]);
    expect(outcomes[0]).toMatchObject({ returned: idleRuns, adopted: [], kept: [] });
    await removeReturnedFiles(outcomes[0]!, async () => theirs.config.stagingDir);
    expect(idleFiles.some((f) => existsSync(f))).toBe(false); // its reservations no longer block anyone
    // busy is left alone: live, holding both runs, its job running.
    expect(await sessionEnded(s, busy.sessionId)).toBe(false);
    expect((await runRows(s, theirs, [onGrid!, claimed!])).map((r) => [r.status, r.session_id])).toEqual([
      ['submitted', busy.sessionId],
      ['claimed', busy.sessionId],
    ]);
    expect(groupAlive(jobPid)).toBe(true);

    // A loop that does not say its production still does not touch their job: the run on the grid
    // stays held by the ended session for a session of its own production.
    const [unsaid] = await loopReap();
    expect(unsaid).toMatchObject({ session: { id: busy.sessionId }, returned: [claimed], adopted: [], kept: [onGrid] });
    expect(groupAlive(jobPid)).toBe(true);
    expect((await runRows(s, theirs, [onGrid!]))[0]).toMatchObject({ status: 'submitted', session_id: busy.sessionId });

    // The operator's `sessions --reap` cancels it (a lease after the session ended) and returns the run.
    expect(await reapExpiredSessions(db, { user: 'operator', sessionId: null }, { decide: adoptionDeciderFor(db, { orphans: 'adopt', adopter: null }) })).toEqual([]);
    await sleep(1100);
    const [operator] = await reapExpiredSessions(db, { user: 'operator', sessionId: null }, { decide: adoptionDeciderFor(db, { orphans: 'adopt', adopter: null }) });
    expect(operator).toMatchObject({ session: { id: busy.sessionId }, returned: [onGrid], kept: [] });
    expect(operator!.session.endReason).toMatch(/lease expired; reaped by session/);
    const deadline = Date.now() + 10_000;
    while (groupAlive(jobPid) && Date.now() < deadline) await sleep(100);
    expect(groupAlive(jobPid)).toBe(false);
    expect((await runRows(s, theirs, [onGrid!]))[0]).toMatchObject({ status: 'new', session_id: null, attempts: 0 });
  });
});

describe('runs held by a session that ended', () => {
  it('are recovered a lease after it ended, not while a release may still be returning them', async () => {
    const s = await scenario(4, { firstRun: 63_000 });
    const { db } = s.database.handle;
    const production = await findProduction(db, 'alcapana');
    const reaper = await newSession(s, production, 'rita', 60);
    const gone = await newSession(s, production, 'gus', 1);
    const runs = await hold(s, production, gone, 3, 'staged');
    const files = (await readHeldRuns(db, gone.sessionId)).map((r) => r.stagedPath!);
    // What a release that died after ending the session leaves.
    await sql`UPDATE sessions SET ended_at = now(), end_reason = 'released by oscar' WHERE id = ${gone.sessionId}::uuid`.execute(db);
    expect(await reapExpiredSessions(db, reaper, { reaperConnectedSeconds: 60 })).toEqual([]);
    await sleep(1100);
    const [outcome] = await reapExpiredSessions(db, reaper, { reaperConnectedSeconds: 60 });
    expect(outcome).toMatchObject({ session: { id: gone.sessionId, endReason: 'released by oscar' }, returned: runs, adopted: [], kept: [] });
    await removeReturnedFiles(outcome!, async () => production.config.stagingDir);
    expect(files.some((f) => existsSync(f))).toBe(false);
    expect((await runRows(s, production, runs)).every((r) => r.status === 'new' && r.session_id === null && r.attempts === 0)).toBe(true);
    const events = await db.selectFrom('events').select(['kind', 'message', 'session_id']).where('production_id', '=', production.id).where('kind', '=', 'reap').execute();
    expect(events).toEqual([
      { kind: 'reap', session_id: reaper.sessionId, message: expect.stringMatching(/^session \w{8} \(gus@.* pid \d+\) ended \(released by oscar\) still holding runs; recovered by session/) },
    ]);
    expect(await reapExpiredSessions(db, reaper, { reaperConnectedSeconds: 60 })).toEqual([]); // nothing left
  });
});

describe('a job the reaper cannot reach', () => {
  it('has its release revoked; then its status file decides: not started → new, ended → adopted and judged, started → adopted until the wrapper records the revoked exit', async () => {
    const s = await scenario(6, { firstRun: 64_000 });
    const { db } = s.database.handle;
    const production = await findProduction(db, 'alcapana');
    const reaper = await newSession(s, production, 'rita', 60);
    await serverUpFor(s, 1);
    const far = await newSession(s, production, 'fay', 1);
    const [notStarted, ended, running] = await hold(s, production, far, 3, 'staged');
    const paths = {
      notStarted: await submittedElsewhere(s, production, far, notStarted!, 12345),
      ended: await submittedElsewhere(s, production, far, ended!, 12346),
      running: await submittedElsewhere(s, production, far, running!, 12347),
    };
    await writeFile(paths.ended, JSON.stringify({ ...startRecord(12346), exit: 3, finished: '2026-01-01T00:01:00Z' }));
    await writeFile(paths.running, JSON.stringify(startRecord(12347)));
    await silentFor(s, far.sessionId, 10);

    const grid = createLocalGrid();
    expect(grid.canReach('local:otherhost:12345')).toBe(false);
    const [outcome] = await reapExpiredSessions(db, reaper, {
      reaperConnectedSeconds: 60,
      adopterProductionId: production.id,
      decide: adoptionDeciderFor(db, { orphans: 'adopt', adopter: { productionId: production.id, grid }, recheckMs: 100 }),
    });
    expect(outcome).toMatchObject({ returned: [notStarted], adopted: [ended, running], kept: [] });
    for (const path of Object.values(paths)) expect(await readFile(releasePathFor(path), 'utf8')).toBe('revoked');
    expect((await runRows(s, production, [notStarted!, ended!, running!])).map((r) => [r.status, r.session_id])).toEqual([
      ['new', null],
      ['submitted', reaper.sessionId],
      ['submitted', reaper.sessionId],
    ]);

    // The adopter judges them as its loop does. The job that ran on: its wrapper saw the revocation and ended it.
    await writeFile(paths.running, JSON.stringify({ ...startRecord(12347), exit: 143, finished: '2026-01-01T00:02:00Z', revoked: true }));
    const context: JobContext = { db, production, actor: reaper };
    const held = onGridRuns(await readHeldRuns(db, reaper.sessionId));
    const polled = await grid.poll(held.map((r) => ({ jobId: r.jobId, statusPath: jobStatusPath(context, r) })));
    const judgements = [];
    for (const run of held) {
      const state = polled.get(run.jobId)!;
      expect(state.state).toBe('done');
      judgements.push(await assessEndedJob(context, run, state as Extract<typeof state, { state: 'done' }>));
    }
    expect(judgements.map((j) => [j.run.run, moveFor(j.outcome).to, moveFor(j.outcome).countAttempt])).toEqual([
      [ended, 'new', true],
      [running, 'new', false],
    ]);
    const outcomes = await recordJudgements(context, judgements);
    expect(outcomes.map((o) => o.kind)).toEqual(['retry', 'revoked']);
    const rows = await runRows(s, production, [ended!, running!]);
    expect(rows.map((r) => [r.status, r.attempts])).toEqual([
      ['new', 1],
      ['new', 0], // taken from its job, not failed: no attempt used
    ]);
    expect(rows[1]!.last_error).toMatch(/job local:otherhost:12347 was revoked and ended by its wrapper on otherhost \(exit 143\)/);
    expect(existsSync(paths.running)).toBe(false); // the next attempt has the same number and starts clean
    const messages = await db.selectFrom('events').select('message').where('production_id', '=', production.id).where('run_number', '=', running!).where('to_status', '=', 'new').execute();
    expect(messages.map((m) => m.message)).toEqual([expect.stringMatching(/not counted as an attempt, the run is redone$/)]);
    // A revoked job is not a failed attempt: the bookkeeping of outcomes leaves it out.
    const attempts = await sql<{ run_number: number }>`SELECT run_number FROM attempt_outcomes WHERE production_id = ${production.id}`.execute(db);
    expect(attempts.rows.map((r) => r.run_number)).toEqual([ended]);
  });

  it('`sessions --reap`, which cannot adopt, returns the runs whose job never started or ended, and keeps a started one until it stops', async () => {
    const s = await scenario(4, { firstRun: 65_000 });
    const { db } = s.database.handle;
    const production = await findProduction(db, 'alcapana');
    await serverUpFor(s, 1);
    const far = await newSession(s, production, 'fay', 1);
    const [notStarted, ended, running] = await hold(s, production, far, 3, 'staged');
    await submittedElsewhere(s, production, far, notStarted!, 22345);
    const endedPath = await submittedElsewhere(s, production, far, ended!, 22346);
    const runningPath = await submittedElsewhere(s, production, far, running!, 22347);
    await writeFile(endedPath, JSON.stringify({ ...startRecord(22346), exit: 0, finished: '2026-01-01T00:01:00Z' }));
    await writeFile(runningPath, JSON.stringify(startRecord(22347)));
    await silentFor(s, far.sessionId, 10);

    const operator = { user: 'operator', sessionId: null };
    const reap = () => reapExpiredSessions(db, operator, { decide: adoptionDeciderFor(db, { orphans: 'adopt', adopter: null, recheckMs: 100 }) });
    const [first] = await reap();
    expect(first).toMatchObject({ returned: [notStarted, ended], adopted: [], kept: [running] });
    expect(await sessionEnded(s, far.sessionId)).toBe(true);
    expect((await runRows(s, production, [running!]))[0]).toMatchObject({ status: 'submitted', session_id: far.sessionId });
    const event = await db.selectFrom('events').select('message').where('kind', '=', 'reap').executeTakeFirstOrThrow();
    expect(event.message).toMatch(/kept runs \[65002\] held: their jobs may still run where this reaper cannot reach them/);

    // Still running a lease later: kept again, and nothing is logged again.
    await sleep(1100);
    expect(await reap()).toEqual([]);
    // Its wrapper records the revoked exit: the job is over, the run goes back.
    await writeFile(runningPath, JSON.stringify({ ...startRecord(22347), exit: 143, finished: '2026-01-01T00:02:00Z', revoked: true }));
    const [second] = await reap();
    expect(second).toMatchObject({ session: { id: far.sessionId, endReason: expect.stringMatching(/lease expired; reaped by operator/) }, returned: [running], kept: [] });
    expect((await runRows(s, production, [notStarted!, ended!, running!])).every((r) => r.status === 'new' && r.session_id === null)).toBe(true);
  });

  it('a start record that disappears right after the revocation was a wrapper leaving at its gate: not started', async () => {
    const s = await scenario(1, { firstRun: 66_000 });
    const dir = join(s.fixture.dir, 'jobs');
    await mkdir(dir, { recursive: true });
    const leaving = join(dir, 'leaving.status.json');
    const staying = join(dir, 'staying.status.json');
    const unseen = join(dir, 'no-such-dir', 'x.status.json');
    await writeFile(leaving, JSON.stringify(startRecord(1)));
    await writeFile(staying, JSON.stringify(startRecord(2)));
    // What bin/rp-job-wrapper does when it reads its release revoked just after writing its start record.
    const timer = setTimeout(() => void rm(leaving), 100);
    try {
      expect(await lookAfterRevoking([leaving, staying, unseen], 400)).toEqual(['not-started', 'started', 'unseen']);
    } finally {
      clearTimeout(timer);
    }
    expect(await readFile(releasePathFor(staying), 'utf8')).toBe('revoked');
  });
});
