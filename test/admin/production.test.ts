import { rm, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProductionFixture, runCli, startCli, type ProductionFixture } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

/**
 * One production run by the real loop with known outcomes, then every
 * bookkeeping view and command checked against them:
 *   12 runs 5000-5011; 5003 and 5007 exit 7 on every attempt (failed after 3),
 *   5005 exits 5 on its first attempt and then finishes; the rest finish at once.
 * So: 10 finished, 2 failed, 17 jobs (10 finished + 7 failed: 6 x exit 7, 1 x exit 5).
 */

let database: TestDatabase;
let fixture: ProductionFixture;
let env: NodeJS.ProcessEnv;
const cli = (args: string[]) => runCli(args, { env, cwd: fixture.dir });
const PROD = ['--production', 'alcapana'];
const runLoop = () => cli(['run', ...PROD, '--until-done', '--plain', '--nproc', '4', '--nprep', '2', '--pause', '1']);

beforeAll(async () => {
  database = await createTestDatabase();
  fixture = await createProductionFixture({ runs: 12 });
  env = { DATABASE_URL: database.url, ...fixture.env };
  for (const name of ['fail-5003', 'fail-5007', 'fail-once-5005']) await writeFile(join(fixture.dir, name), '');
  expect((await cli(['datasets', 'import', fixture.catalogue])).code).toBe(0);
  expect((await cli(['new', ...PROD, '--tag', 'v1-test'])).code).toBe(0);
  const run = await runLoop();
  expect(run.code, run.stderr + run.stdout).toBe(0);
}, 300_000);

afterAll(async () => {
  await database?.drop();
  if (fixture) await rm(fixture.dir, { recursive: true, force: true });
});

const db = () => database.handle.db;

describe('views on a production run by the real loop', () => {
  it('production_summary: runs, jobs, success rate, volumes per production and per dataset', async () => {
    const rows = await sql<Record<string, unknown>>`SELECT * FROM production_summary ORDER BY dataset NULLS FIRST`.execute(db());
    const all = rows.rows[0]!;
    expect(all).toMatchObject({
      dataset: null,
      runs_total: 12,
      runs_finished: 10,
      runs_failed: 2,
      runs_new: 0,
      jobs_run: 17,
      jobs_finished: 10,
      jobs_exit_zero: 10,
      attempt_success_percent: 58.8,
      percent_finished: 83.3,
      attempts_used: 3 + 3 + 2 + 9,
    });
    // Each fixture tree is 1024 bytes and each hist 'hist of RUN\n' 13 bytes; logs add a little more.
    expect(all.output_bytes as number).toBeGreaterThan(10 * 1037);
    const catalogue = await sql<{ n: number }>`SELECT sum(size_bytes)::bigint AS n FROM runs WHERE run_number NOT IN (5003, 5007)`.execute(db());
    expect(all.input_bytes).toBe(catalogue.rows[0]!.n);
    expect(rows.rows.slice(1).map((r) => [r.dataset, r.runs_total, r.runs_finished, r.runs_failed])).toEqual([
      ['Al100', 4, 4, 0],
      ['Al50b', 4, 3, 1],
      ['SiR2', 4, 3, 1],
    ]);
  });

  it('run_history: every event of a run in order, with user and session', async () => {
    const rows = await sql<{ step: number; kind: string; from_status: string; to_status: string; message: string; user_name: string; session_host: string }>`
      SELECT step, kind, from_status, to_status, message, user_name, session_host FROM run_history
       WHERE type = 'alcapana' AND run_number = 5005 ORDER BY event_id`.execute(db());
    expect(rows.rows.map((r) => r.step)).toEqual(rows.rows.map((_, i) => i + 1));
    const path = rows.rows.map((r) => `${r.from_status}>${r.to_status}`);
    expect(path.slice(0, 4)).toEqual(['new>claimed', 'claimed>downloading', 'downloading>staged', 'staged>submitted']);
    expect(path.at(-1)).toMatch(/>finished$/);
    expect(rows.rows.find((r) => /^attempt 1\/3 failed( on \S+)?: exit code 5/.test(r.message))).toBeDefined();
    expect(rows.rows.every((r) => r.user_name === process.env.USER || r.user_name.length > 0)).toBe(true);
    expect(rows.rows[0]!.session_host).toBe(hostname());
    // Why each step happened is a column: the loop names no reason yet, transitionRuns derives it.
    const reasons = await sql<{ reason: string; attempt: number | null }>`
      SELECT reason, attempt FROM run_history WHERE type = 'alcapana' AND run_number = 5005 ORDER BY event_id`.execute(db());
    expect(reasons.rows.slice(0, 4)).toEqual([
      { reason: 'claimed', attempt: 1 },
      { reason: 'download_started', attempt: 1 },
      { reason: 'staged', attempt: 1 },
      { reason: 'submitted', attempt: 1 },
    ]);
    expect(reasons.rows.filter((r) => r.reason === 'retry')).toEqual([{ reason: 'retry', attempt: 1 }]);
    expect(reasons.rows.at(-1)).toEqual({ reason: 'finished', attempt: 2 });
  });

  it('operator_activity: what the session did, and the per-user sum', async () => {
    const rows = await sql<Record<string, unknown>>`
      SELECT session_id, sessions, runs_claimed, runs_finished, jobs_failed, runs_failed, runs_rolled_back, extract(epoch FROM online)::float8 AS online
        FROM operator_activity WHERE type = 'alcapana' ORDER BY session_id NULLS FIRST`.execute(db());
    expect(rows.rows).toHaveLength(2);
    const [user, session] = rows.rows;
    for (const row of [user!, session!]) {
      expect(row).toMatchObject({ runs_claimed: 17, runs_finished: 10, jobs_failed: 7, runs_failed: 2, runs_rolled_back: 0 });
      expect(row.online as number).toBeGreaterThan(0);
    }
    expect(user!.session_id).toBeNull();
  });

  it('failures: per exit code, per host, per dataset, with the runs and the last error line', async () => {
    const rows = await sql<Record<string, unknown>>`
      SELECT grouped_by, exit_code, host, dataset, failed_attempts, runs, runs_failed_now, last_error
        FROM failures WHERE type = 'alcapana' ORDER BY grouped_by, exit_code, dataset`.execute(db());
    const byCode = rows.rows.filter((r) => r.grouped_by === 'exit_code');
    expect(byCode).toMatchObject([
      { exit_code: 5, failed_attempts: 1, runs: [5005], runs_failed_now: null },
      { exit_code: 7, failed_attempts: 6, runs: [5003, 5007], runs_failed_now: [5003, 5007] },
    ]);
    expect(byCode[1]!.last_error).toMatch(/^exit code 7: failing on purpose \(fail-500[37]\)/);
    expect(rows.rows.filter((r) => r.grouped_by === 'host')).toMatchObject([{ host: hostname(), failed_attempts: 7, runs: [5003, 5005, 5007] }]);
    expect(rows.rows.filter((r) => r.grouped_by === 'dataset').map((r) => [r.dataset, r.failed_attempts])).toEqual([
      ['Al100', 1],
      ['Al50b', 3],
      ['SiR2', 3],
    ]);
  });
});

describe('commands on that production', () => {
  it('report --markdown states the known outcomes', async () => {
    const result = await cli(['report', ...PROD, '--markdown']);
    expect(result.code, result.stderr).toBe(0);
    const md = result.stdout;
    expect(md).toMatch(/^# Production report: alcapana v1 \(tag v1-test\)/);
    expect(md).toContain('Runs processed: 10 of 12 requested (83.3%); 2 failed, 0 not done');
    expect(md).toContain('Jobs run: 17 (10 finished, 7 failed); exit code 0: 10 (58.8%)');
    expect(md).toMatch(/\| 7 \| 6 \| 5003, 5007 \| 5003, 5007 \| exit code 7: failing on purpose/);
    expect(md).toMatch(/\| 5 \| 1 \| 5005 \|  \| exit code 5: failing once/);
    expect(md).toContain(`| ${hostname()} | 7 | 5003, 5005, 5007 |`);
    expect(md).toMatch(/## Shifters\n\n\| user \| sessions .*\n\| --- .*\n\| \S+ \| 1 \| \S+ \| 17 \| 10 \| 7 \| 0 \|/);
    expect(md).toMatch(/Data: .* in \(\d+ bytes\), .* out \(\d+ bytes\)/);
  });

  it('report --json for scripts; --json with --markdown is a usage error', async () => {
    const result = await cli(['report', ...PROD, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.runs).toEqual({ requested: 12, finished: 10, failed: 2, remaining: 0, percentFinished: 83.3 });
    expect(report.jobs).toMatchObject({ run: 17, finished: 10, failed: 7, exitZero: 10 });
    expect(report.failures.byExitCode.map((g: { key: number }) => g.key)).toEqual([7, 5]);
    expect(report.time.spanSeconds).toBeGreaterThanOrEqual(0);
    const both = await cli(['report', ...PROD, '--json', '--markdown']);
    expect(both.code).toBe(64);
    expect(both.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('status keeps its JSON keys and adds throughput and ETA', async () => {
    const result = await cli(['status', ...PROD, '--json']);
    expect(result.code).toBe(0);
    const status = JSON.parse(result.stdout);
    expect(Object.keys(status)).toEqual(['production', 'total', 'counts', 'datasets', 'throughput', 'waitingOnParent']);
    expect(status.throughput).toMatchObject({ finishedLast15m: 10, finishedLast24h: 10, runsPerHour15m: 40, remaining: 0, etaSeconds: 0 });
    expect(status.waitingOnParent).toBeNull();
    const text = await cli(['status', ...PROD]);
    expect(text.stdout).toMatch(/Throughput: 40 runs\/h over the last 15 min \(10 finished\)/);
    expect(text.stdout).toMatch(/0 to go, ETA done/);
  });

  it('a child production shows how many runs wait on the parent', async () => {
    expect((await cli(['new', '--production', 'rootana', '--tag', 'r1'])).code).toBe(0);
    const status = JSON.parse((await cli(['status', '--production', 'rootana', '--json'])).stdout);
    expect(status.waitingOnParent).toEqual({ parent: 'alcapana v1', waiting: 0, parentFailed: 2 });
    expect((await cli(['status', '--production', 'rootana'])).stdout).toContain('2 whose parent run failed');
  });

  it('events --run lists the run\'s life; --json is one object per line', async () => {
    const result = await cli(['events', ...PROD, '--run', '5003', '--json']);
    expect(result.code).toBe(0);
    const events = result.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events.every((e) => e.run === 5003 && e.production === 'alcapana v1')).toBe(true);
    expect(events.filter((e) => /^attempt \d\/3 failed( on \S+)?: exit code 7/.test(e.message))).toHaveLength(3);
    // A short job may end before any pass saw it running: submitted → failed is as valid as running → failed.
    expect(events.at(-1)).toMatchObject({ from: expect.stringMatching(/^(running|submitted)$/), to: 'failed', reason: 'failed', attempt: 3, exitCode: 7 });
    expect(events.filter((e) => e.reason === 'retry').map((e) => e.attempt)).toEqual([1, 2]);
    const since = await cli(['events', '--since', '1d', '--limit', '3']);
    expect(since.stdout.trim().split('\n')).toHaveLength(3);
    // Each line says why, as a code, after what happened.
    for (const line of since.stdout.trim().split('\n')) expect(line).toMatch(/ \[[a-z_]+\]  \(/);
    expect((await cli(['events', '--since', 'yesterday'])).code).toBe(64);
  });

  it('a pass records the jobs it finds ended together, one statement per kind of move', async () => {
    // Rows written by one statement share their transaction id (xmin).
    const rows = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM events
       WHERE production_id = 1 AND kind = 'transition' AND from_status IN ('submitted', 'running') AND to_status IN ('finished', 'new', 'failed')
       GROUP BY xmin::text`.execute(db());
    expect(rows.rows.reduce((sum, r) => sum + r.n, 0)).toBe(17); // every job attempt, once
    expect(Math.max(...rows.rows.map((r) => r.n))).toBeGreaterThan(1);
  });

  it('events --session lists exactly what that session wrote, from its start to its end', async () => {
    const [loop] = (await sql<{ id: string }>`SELECT id::text AS id FROM sessions WHERE production_id = 1 ORDER BY started_at LIMIT 1`.execute(db())).rows;
    const expected = await db().selectFrom('events').select(['id']).where('session_id', '=', loop!.id).orderBy('id').execute();
    expect(expected.length).toBeGreaterThan(12 * 6); // every run went through at least six statuses
    const result = await cli(['events', '--session', loop!.id.slice(0, 8), '--json', '--limit', '10000']);
    expect(result.code, result.stderr).toBe(0);
    const events = result.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events.map((e) => e.id)).toEqual(expected.map((e) => e.id));
    expect(events[0].kind).toBe('session-start');
    expect(events.at(-1).kind).toBe('session-end');
    // The newest few by default, still only this session's.
    const newest = JSON.parse((await cli(['events', '--session', loop!.id, '--json', '--limit', '1'])).stdout);
    expect(newest).toMatchObject({ id: expected.at(-1)!.id, kind: 'session-end', session: loop!.id });
  });

  it('validate finds a deleted output and --fix sends the run back to new', async () => {
    const clean = await cli(['validate', ...PROD]);
    expect(clean.code, clean.stdout + clean.stderr).toBe(0);
    expect(clean.stdout).toContain('Checked 10 finished run(s) of alcapana v1: 0 mismatch(es).');
    const row = await db().selectFrom('production_runs').select('outputs').where('run_number', '=', 5000).where('production_id', '=', 1).executeTakeFirstOrThrow();
    await unlink(row.outputs!.tree!);
    const found = await cli(['validate', ...PROD]);
    expect(found.code).toBe(1);
    expect(found.stdout).toMatch(/^run 5000 \(SiR2\): tree: .*tree05000\.root is missing$/m);
    expect(found.stdout).toContain('1 mismatch(es). Run again with --fix');
    const fixed = await cli(['validate', ...PROD, '--fix']);
    expect(fixed.code).toBe(0);
    expect(fixed.stdout).toContain('-> returned to new');
    const after = await db().selectFrom('production_runs').selectAll().where('run_number', '=', 5000).where('production_id', '=', 1).executeTakeFirstOrThrow();
    expect(after).toMatchObject({ status: 'new', outputs: null, session_id: null });
    expect(after.last_error).toMatch(/^validate: tree: .* is missing/);
    const event = await db().selectFrom('events').selectAll().where('run_number', '=', 5000).orderBy('id', 'desc').executeTakeFirstOrThrow();
    expect(event).toMatchObject({ from_status: 'finished', to_status: 'new', kind: 'transition' });
    expect(event.message).toMatch(/^validate --fix by \S+: tree: .* is missing/);
  });

  it('retry: --max-attempts raises the limit for one run, then the rest by exit code with attempts reset', async () => {
    const low = await cli(['retry', ...PROD, '--runs', '5003', '--max-attempts', '3']);
    expect(low.code).toBe(64);
    expect(low.stderr).toMatch(/--max-attempts 3 does not raise the limit: alcapana v1 already allows 3/);
    const unknown = await cli(['retry', ...PROD, '--runs', '9999']);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain('--runs: run(s) 9999 are not part of alcapana v1');

    const raised = await cli(['retry', ...PROD, '--runs', '5003,5004', '--max-attempts', '4']);
    expect(raised.code, raised.stderr).toBe(0);
    expect(raised.stdout).toContain('Retried 1 run(s) of alcapana v1 (max attempts raised from 3 to 4, attempt counts kept): 5003');
    expect(raised.stderr).toContain('run 5004 is finished, not failed; not retried.');
    const reset = await cli(['retry', ...PROD, '--exit-code', '7']);
    expect(reset.stdout).toContain('Retried 1 run(s) of alcapana v1 (attempt counts reset to 0): 5007');
    const runs = await db().selectFrom('production_runs').select(['run_number', 'status', 'attempts']).where('run_number', 'in', [5003, 5007]).where('production_id', '=', 1).orderBy('run_number').execute();
    expect(runs).toEqual([
      { run_number: 5003, status: 'new', attempts: 3 },
      { run_number: 5007, status: 'new', attempts: 0 },
    ]);
    const production = await db().selectFrom('productions').select('max_attempts').where('id', '=', 1).executeTakeFirstOrThrow();
    expect(production.max_attempts).toBe(4);
    const events = await db().selectFrom('events').select(['kind', 'message']).where('production_id', '=', 1).where('kind', '=', 'retry').orderBy('id').execute();
    expect(events.map((e) => e.message)).toEqual([
      expect.stringMatching(/of 1 failed run\(s\) \(runs 5003,5004\): max_attempts raised 3 -> 4, attempts kept; runs 5003$/),
      expect.stringMatching(/of 1 failed run\(s\) \(exit code 7\): attempts reset to 0; runs 5007$/),
    ]);
    expect((await cli(['retry', ...PROD])).stdout).toContain('No failed runs of alcapana v1 match');
  });

  it('after the fixes the loop finishes everything, and close then closes the production', async () => {
    await unlink(join(fixture.dir, 'fail-5003'));
    await unlink(join(fixture.dir, 'fail-5007'));
    const run = await runLoop();
    expect(run.code, run.stderr).toBe(0);
    const summary = await sql<{ runs_finished: number; jobs_run: number }>`SELECT runs_finished, jobs_run FROM production_summary WHERE type = 'alcapana' AND dataset IS NULL`.execute(db());
    expect(summary.rows[0]).toEqual({ runs_finished: 12, jobs_run: 20 });
    const closed = await cli(['close', ...PROD]);
    expect(closed.code, closed.stderr).toBe(0);
    expect(closed.stdout).toContain('alcapana v1 closed: 12/12 finished, 0 failed, 0 never processed.');
    const p = await db().selectFrom('productions').selectAll().where('id', '=', 1).executeTakeFirstOrThrow();
    expect(p.status).toBe('closed');
    expect(p.stopped_at).not.toBeNull();
    expect((await cli(['close', ...PROD])).stdout).toContain('already closed');
  });
});

describe('events --follow', () => {
  it('prints new events as they happen and stops cleanly on Ctrl-C', async () => {
    const follower = startCli(['events', '--production', 'rootana', '--follow'], { env, cwd: fixture.dir });
    await follower.waitFor(/new-production/);
    expect((await cli(['pause', '--production', 'rootana', '--reason', 'waiting for calibration'])).code).toBe(0);
    await follower.waitFor(/pause .*paused by \S+: waiting for calibration/, 10_000);
    follower.child.kill('SIGINT');
    const done = await follower.done;
    expect(done.code).toBe(0);
    expect(done.stderr).toBe('');
  });
});
