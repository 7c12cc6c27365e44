import { readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { releaseSession } from '../../src/admin/release.js';
import { findSession } from '../../src/admin/sessions.js';
import { adoptionDeciderFor } from '../../src/state/adoption.js';
import { checkAutoPause } from '../../src/state/auto-pause.js';
import { claimRuns } from '../../src/state/claim.js';
import { ensureModulesFile, prepareJob } from '../../src/session/prepare-job.js';
import { readHeldRuns } from '../../src/state/held-runs.js';
import { findProduction, getProduction } from '../../src/state/productions.js';
import { reapExpiredSessions, startSession } from '../../src/state/sessions.js';
import { transitionRuns, type Actor } from '../../src/state/transition.js';
import type { Grid } from '../../src/grids/grid.js';
import { createLocalGrid } from '../../src/grids/local.js';
import { releaseJob } from '../../src/grids/wrapper.js';
import { runCli } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { groupAlive, heldBy, RUN, type Scenario, scenario, sessionOf, statusCounts, until } from '../helpers/scenario.js';
import { seedProduction } from '../helpers/seed.js';

/** Operator commands and auto-pause on productions seeded in SQL and moved through the real state machine. */

let database: TestDatabase;
let env: NodeJS.ProcessEnv;
const cli = (args: string[]) => runCli(args, { env });
const db = () => database.handle.db;

beforeAll(async () => {
  database = await createTestDatabase();
  // No config file: these commands need only the database.
  env = { DATABASE_URL: database.url, RUN_PRODUCTION_CONFIG: '/nonexistent/run-production.json' };
});
afterAll(async () => {
  await database?.drop();
});

/** Claims `runs` for a session and takes them to `submitted` with a local job id, as the loop does. */
async function onGrid(productionId: number, sessionId: string, user: string, runs: number[]): Promise<void> {
  const actor = { user, sessionId };
  expect(await claimRuns(db(), { productionId, parentId: null, session: { id: sessionId, user }, limit: runs.length })).toEqual(runs);
  await transitionRuns(db(), { productionId, runs, from: 'claimed', to: 'staged', owner: sessionId, actor });
  await transitionRuns(db(), {
    productionId,
    runs: runs.map((run) => ({ run, jobId: `local:nohost:${run}`, message: `submitted to local as local:nohost:${run}, attempt 1` })),
    from: 'staged',
    to: 'submitted',
    owner: sessionId,
    actor,
  });
}

async function failAttempt(productionId: number, actor: Actor & { sessionId: string }, run: number, code: number): Promise<void> {
  await transitionRuns(db(), {
    productionId,
    runs: [{ run, exitCode: code, lastError: `exit code ${code}: boom` }],
    from: 'submitted',
    to: 'new',
    owner: actor.sessionId,
    actor,
    countAttempt: true,
    message: `attempt 1/3 failed: exit code ${code}: boom`,
  });
}

describe('auto-pause', () => {
  it('pauses after K consecutive failed attempts, naming the exit codes; a success or a resume starts the count again', async () => {
    const { productionId } = await seedProduction(db(), { runs: 10, firstRun: 100, type: 'autopause', config: { autoPause: { failures: 3 } } });
    const sessionId = await startSession(db(), { user: 'alice', host: 'h', pid: 1, productionId, options: {}, leaseSeconds: 60 });
    const actor = { user: 'alice', sessionId };
    const production = async () => getProduction(db(), productionId);
    await onGrid(productionId, sessionId, 'alice', [100, 101, 102, 103, 104, 105]);

    await failAttempt(productionId, actor, 100, 7);
    await failAttempt(productionId, actor, 101, 7);
    expect(await checkAutoPause(db(), await production(), actor)).toBeNull();
    // A finished attempt breaks the streak.
    await transitionRuns(db(), { productionId, runs: [102], from: 'submitted', to: 'finished', owner: sessionId, actor, countAttempt: true, message: 'finished on h, attempt 1, 10 bytes of output' });
    await failAttempt(productionId, actor, 103, 7);
    // An abort is not an attempt: it neither counts nor breaks the streak.
    await transitionRuns(db(), { productionId, runs: [104], from: 'submitted', to: 'new', owner: sessionId, actor, message: 'aborted (SIGINT)' });
    await failAttempt(productionId, actor, 105, 9);
    expect(await checkAutoPause(db(), await production(), actor)).toBeNull();

    await onGrid(productionId, sessionId, 'alice', [100]);
    await failAttempt(productionId, actor, 100, 7);
    const reason = await checkAutoPause(db(), await production(), actor);
    expect(reason).toMatch(/^auto-paused: 3 consecutive failed job attempts \(exit code 7 ×2, exit code 9 ×1\)/);
    expect(await production()).toMatchObject({ status: 'paused', statusReason: reason });
    const pauseEvents = await db().selectFrom('events').select(['kind', 'message', 'user_name']).where('production_id', '=', productionId).where('kind', '=', 'pause').execute();
    expect(pauseEvents).toEqual([{ kind: 'pause', message: reason, user_name: 'alice' }]);
    // Already paused: nothing more happens, whoever asks.
    expect(await checkAutoPause(db(), await production(), actor)).toBeNull();

    const resumed = await cli(['resume', '--production', 'autopause']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/autopause v1 resumed \(was paused: auto-paused: 3 consecutive/);
    expect((await production()).status).toBe('active');
    // The failures before the resume no longer count.
    expect(await checkAutoPause(db(), await production(), actor)).toBeNull();
  });

  it('reads only the newest outcomes and the last resume through the indexes of 002 and 010 (cheap after every failure)', async () => {
    // A test database is tiny, so the planner would rightly scan it; forbid that to see which plan the indexes allow.
    await db().transaction().execute(async (tx) => {
      await sql`SET LOCAL enable_seqscan = off`.execute(tx);
      const plan = await sql<{ 'QUERY PLAN': string }>`
        EXPLAIN SELECT o.outcome, o.exit_code, o.error FROM attempt_outcomes AS o
         WHERE o.production_id = 1
           AND o.event_id > coalesce((SELECT max(e.id) FROM events AS e WHERE e.production_id = 1 AND e.kind <> 'transition' AND e.kind = 'resume'), 0)
         ORDER BY o.event_id DESC LIMIT 10`.execute(tx);
      const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(text).toMatch(/Index Scan Backward using events_attempt_outcomes_idx/);
      expect(text).toMatch(/events_actions_idx/);
      // The outcome's job id is a column of its event (sql/010): no lookup of the run's submission.
      expect(text).not.toMatch(/events_run_idx/);
    });
  });
});

describe('pause, resume, limits, close', () => {
  it('pause needs a reason, is seen by claims, and each change writes an event', async () => {
    const { productionId } = await seedProduction(db(), { runs: 3, firstRun: 200, type: 'switches' });
    expect((await cli(['pause', '--production', 'switches'])).code).toBe(64);
    const paused = await cli(['pause', '--production', 'switches', '--reason', 'disk full on /data']);
    expect(paused.code).toBe(0);
    expect(paused.stdout).toContain('switches v1 paused: disk full on /data.');
    expect((await cli(['pause', '--production', 'switches', '--reason', 'again'])).stdout).toContain('already paused');
    const sessionId = await startSession(db(), { user: 'bob', host: 'h', pid: 2, productionId, options: {}, leaseSeconds: 60 });
    expect(await claimRuns(db(), { productionId, parentId: null, session: { id: sessionId, user: 'bob' }, limit: 3 })).toEqual([]);
    expect((await cli(['resume', '--production', 'switches'])).code).toBe(0);
    expect(await claimRuns(db(), { productionId, parentId: null, session: { id: sessionId, user: 'bob' }, limit: 1 })).toEqual([200]);

    expect((await cli(['limits', '--production', 'switches', '--max-running', '2'])).stdout).toContain('max-running none -> 2');
    expect((await db().selectFrom('productions').select('max_running').where('id', '=', productionId).executeTakeFirstOrThrow()).max_running).toBe(2);
    expect((await cli(['limits', '--production', 'switches', '--max-running', 'none'])).stdout).toContain('max-running 2 -> none');
    expect((await cli(['limits', '--production', 'switches', '--max-running', 'zero'])).code).toBe(64);

    const refused = await cli(['close', '--production', 'switches']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/switches v1 has 1 run\(s\) in flight \(claimed to running\); close refused/);
    expect((await db().selectFrom('productions').select('status').where('id', '=', productionId).executeTakeFirstOrThrow()).status).toBe('active');

    const kinds = await db().selectFrom('events').select('kind').where('production_id', '=', productionId).where('kind', '<>', 'transition').orderBy('id').execute();
    expect(kinds.map((k) => k.kind)).toEqual(['pause', 'session-start', 'resume', 'limits', 'limits']);
    const unknown = await cli(['pause', '--production', 'nosuch', '--reason', 'x']);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toMatch(/There is no production of type "nosuch"/);
  });
});

describe('release', () => {
  it('refuses a live session, saying when its lease expires; --force takes its runs', async () => {
    const { productionId } = await seedProduction(db(), { runs: 4, firstRun: 300, type: 'releasing' });
    const sessionId = await startSession(db(), { user: 'carol', host: 'far-away', pid: 3, productionId, options: {}, leaseSeconds: 600 });
    await onGrid(productionId, sessionId, 'carol', [300, 301]);
    expect(await claimRuns(db(), { productionId, parentId: null, session: { id: sessionId, user: 'carol' }, limit: 1 })).toEqual([302]);

    expect((await cli(['release', '--session', sessionId.slice(0, 6)])).code).toBe(64);
    const refused = await cli(['release', '--session', sessionId.slice(0, 8)]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`Session ${sessionId.slice(0, 8)} \\(carol@far-away pid 3\\) is live: its lease expires at \\S+ \\(in \\d+s\\)`));
    expect(refused.stderr).toContain('--force');
    expect((await db().selectFrom('production_runs').select('status').where('run_number', '=', 300).executeTakeFirstOrThrow()).status).toBe('submitted');

    const forced = await cli(['release', '--session', sessionId, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain('returned runs [300, 301, 302]');
    // Its jobs are on another host: the shifter is told to cancel them there.
    expect(forced.stderr).toMatch(/WARNING: jobs local:nohost:300, local:nohost:301 run where this host cannot cancel them/);
    const runs = await db().selectFrom('production_runs').select(['status', 'session_id', 'attempts']).where('production_id', '=', productionId).orderBy('run_number').execute();
    expect(runs.map((r) => r.status)).toEqual(['new', 'new', 'new', 'new']);
    expect(runs.every((r) => r.session_id === null && r.attempts === 0)).toBe(true);
    const session = await db().selectFrom('sessions').selectAll().where('id', '=', sessionId).executeTakeFirstOrThrow();
    expect(session.ended_at).not.toBeNull();
    expect(session.end_reason).toMatch(/^released by \S+ \(--force, session was live\)/);
    const activity = await sql<{ runs_rolled_back: number }>`SELECT runs_rolled_back FROM operator_activity WHERE type = 'releasing' AND session_id IS NULL AND user_name <> 'carol'`.execute(db());
    expect(activity.rows).toEqual([]); // the release was done outside a session: it shows in events, not as a session's activity
    const event = await db().selectFrom('events').select('message').where('production_id', '=', productionId).where('kind', '=', 'release').executeTakeFirstOrThrow();
    expect(event.message).toContain('returned runs [300, 301, 302]');
    expect((await cli(['release', '--session', sessionId])).stderr).toMatch(/already ended .* holds no runs/);
  });

  /** A live session (a long lease) holding `jobs` runs with real gated jobs of the local grid, waiting on the fixture's hold file, and one claimed run. */
  async function liveSessionWithJobs(s: Scenario, jobs: number, leaseSeconds: number) {
    const db = s.database.handle.db;
    await writeFile(s.fixture.holdFile, '');
    const production = await findProduction(db, 'alcapana');
    const actor = { user: 'lena', sessionId: await startSession(db, { user: 'lena', host: hostname(), pid: process.pid, productionId: production.id, options: {}, leaseSeconds }) };
    const runs = await claimRuns(db, { productionId: production.id, parentId: null, session: { id: actor.sessionId, user: 'lena' }, limit: jobs + 1 });
    const onGrid = runs.slice(0, jobs);
    await transitionRuns(db, { productionId: production.id, runs: onGrid, from: 'claimed', to: 'staged', owner: actor.sessionId, actor });
    const grid = createLocalGrid({ killGraceSeconds: 2 });
    const modules = await ensureModulesFile(production);
    const jobIds: string[] = [];
    for (const detail of (await readHeldRuns(db, actor.sessionId)).filter((r) => r.status === 'staged')) {
      const job = await prepareJob({ db, production, actor }, detail, modules);
      const jobId = await grid.submit(job);
      await transitionRuns(db, { productionId: production.id, runs: [{ run: detail.run, jobId, jobToken: job.release.token }], from: 'staged', to: 'submitted', owner: actor.sessionId, actor });
      await releaseJob(job.release);
      jobIds.push(jobId);
    }
    const pids = jobIds.map((id) => Number(id.split(':').at(-1)));
    await until(async () => (await readFile(s.fixture.executionsLog, 'utf8').catch(() => '')).trim().split('\n').length === jobs, 'the jobs run');
    return { db, production, actor, runs, grid, jobIds, pids };
  }

  const operator = { user: 'oscar', sessionId: null };

  it('--force ends the session before it touches its runs: the session cannot count the cancelled jobs as failures, nor claim again', async () => {
    const s = await scenario(6, { firstRun: 700 });
    const { db, production, actor, runs, grid, jobIds, pids } = await liveSessionWithJobs(s, 2, 600);
    let atCancel: { ended: boolean; judged: number[]; claimed: number[] } | null = null;
    // The real local grid, looked over at the moment it cancels: what the live session would do on
    // seeing its jobs end, a failed attempt recorded and a new claim, must be refused by then.
    const watched: Grid = {
      ...grid,
      async cancel(ids) {
        const row = await db.selectFrom('sessions').select('ended_at').where('id', '=', actor.sessionId).executeTakeFirstOrThrow();
        atCancel = {
          ended: row.ended_at !== null,
          judged: await transitionRuns(db, { productionId: production.id, runs: [{ run: runs[0]!, exitCode: 143, lastError: 'exit code 143' }], from: 'submitted', to: 'new', owner: actor.sessionId, actor, countAttempt: true }),
          claimed: await claimRuns(db, { productionId: production.id, parentId: null, session: { id: actor.sessionId, user: actor.user }, limit: 2 }),
        };
        await grid.cancel(ids);
      },
    };
    const outcome = await releaseSession(db, await findSession(db, actor.sessionId), { force: true, actor: operator, gridFor: async () => watched });
    expect(atCancel).toEqual({ ended: true, judged: [], claimed: [] });
    expect(outcome).toMatchObject({ returned: runs, cancelledJobs: jobIds, unreachableJobs: [], wasLive: true });
    const rows = await db.selectFrom('production_runs').select(['run_number', 'status', 'session_id', 'attempts']).where('production_id', '=', production.id).orderBy('run_number').execute();
    expect(rows.every((r) => r.status === 'new' && r.session_id === null && r.attempts === 0)).toBe(true);
    await until(async () => !pids.some(groupAlive), 'the cancelled jobs are gone');
    const event = await db.selectFrom('events').select('message').where('production_id', '=', production.id).where('kind', '=', 'release').executeTakeFirstOrThrow();
    expect(event.message).toMatch(new RegExp(`returned runs \\[${runs.join(', ')}\\]; cancelled jobs ${jobIds.join(', ')}$`));
  });

  it('a release that dies after ending the session leaves its runs to the reaper, which takes them a lease later', async () => {
    const s = await scenario(4, { firstRun: 710 });
    const { db, production, actor, runs, grid, pids } = await liveSessionWithJobs(s, 1, 1);
    const dying: Grid = {
      ...grid,
      async cancel() {
        throw new Error('the release process died here');
      },
    };
    await expect(releaseSession(db, await findSession(db, actor.sessionId), { force: true, actor: operator, gridFor: async () => dying })).rejects.toThrow(/died here/);
    const ended = await db.selectFrom('sessions').select(['ended_at', 'end_reason']).where('id', '=', actor.sessionId).executeTakeFirstOrThrow();
    expect(ended.end_reason).toMatch(/^released by oscar \(--force, session was live\)/);
    expect((await heldBy(s, actor.sessionId)).map((r) => r.run_number)).toEqual(runs); // held by an ended session, for now
    expect(pids.every(groupAlive)).toBe(true);

    await new Promise((r) => setTimeout(r, 1100));
    const [outcome] = await reapExpiredSessions(db, operator, { decide: adoptionDeciderFor(db, { orphans: 'adopt', adopter: null }) });
    expect(outcome).toMatchObject({ session: { id: actor.sessionId, endReason: ended.end_reason }, returned: runs, kept: [] });
    expect(await heldBy(s, actor.sessionId)).toEqual([]);
    await until(async () => !pids.some(groupAlive), 'the job is cancelled by the reaper');
    const rows = await db.selectFrom('production_runs').select(['status', 'attempts']).where('production_id', '=', production.id).where('run_number', 'in', runs).execute();
    expect(rows.every((r) => r.status === 'new' && r.attempts === 0)).toBe(true);
  });

  it('a live CLI session released with --force: every run returned, none held by the ended session, and it leaves without claiming again', async () => {
    const s = await scenario(8, { firstRun: 720 });
    const db = s.database.handle.db;
    await writeFile(s.fixture.holdFile, '');
    const live = s.start([...RUN, '--nproc', '2', '--nprep', '1', '--lease', '60']);
    let id: string | undefined;
    await until(async () => Boolean((id = await sessionOf(s, live.child.pid!))), 'the session exists');
    await until(async () => {
      const held = await heldBy(s, id!);
      return held.filter((r) => r.status === 'running').length === 2 && held.some((r) => r.status === 'staged');
    }, 'the session has 2 jobs running and a run staged');
    const held = await heldBy(s, id!);
    const pids = held.filter((r) => r.job_id).map((r) => Number(r.job_id!.split(':').at(-1)));

    const released = await s.cli(['release', '--session', id!, '--force']);
    expect(released.code, released.stderr).toBe(0);
    expect(released.stdout).toContain(`returned runs [${held.map((r) => r.run_number).join(', ')}]`);
    const result = await live.done;
    expect(result.code).toBe(1); // it found itself ended and left
    expect(await heldBy(s, id!)).toEqual([]);
    const rows = await db.selectFrom('production_runs').select(['run_number', 'status', 'session_id', 'attempts']).where('run_number', 'in', held.map((r) => r.run_number)).execute();
    expect(rows.every((r) => r.status === 'new' && r.session_id === null && r.attempts === 0)).toBe(true);
    // It claimed its three runs once, and nothing after the release.
    const claims = await sql<{ n: number }>`SELECT count(*)::int AS n FROM events WHERE session_id = ${id!}::uuid AND to_status = 'claimed'`.execute(db);
    expect(claims.rows[0]!.n).toBe(3);
    expect(pids.some(groupAlive)).toBe(false);

    await rm(s.fixture.holdFile);
    const rest = await s.cli([...RUN, '--until-done']);
    expect(rest.code, rest.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 8 });
  });

  it('releases an expired session without --force', async () => {
    const { productionId } = await seedProduction(db(), { runs: 1, firstRun: 400, type: 'expired' });
    const sessionId = await startSession(db(), { user: 'dave', host: 'h', pid: 4, productionId, options: {}, leaseSeconds: 1 });
    expect(await claimRuns(db(), { productionId, parentId: null, session: { id: sessionId, user: 'dave' }, limit: 1 })).toEqual([400]);
    await new Promise((r) => setTimeout(r, 1500));
    const released = await cli(['release', '--session', sessionId.slice(0, 12)]);
    expect(released.code, released.stderr).toBe(0);
    expect(released.stdout).toContain('returned runs [400]');
  });
});
