import { existsSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  filesUnder,
  finishedEventsPerRun,
  groupAlive,
  heldBy,
  jobPidsUnder,
  RUN,
  type Scenario,
  scenario,
  sessionOf,
  statusCounts,
  until,
} from '../helpers/scenario.js';
import { startCli } from '../helpers/cli.js';

/**
 * The operator loop as shifters run it: real CLI processes against one real
 * PostgreSQL database, real job processes of the local grid, real signals.
 */

describe('several shifters on one production', () => {
  it('4 concurrent sessions finish a 200-run production, every run exactly once, no staged file left', async () => {
    const s = await scenario(200, { firstRun: 10_000 });
    const sessions = Array.from({ length: 4 }, () => s.start([...RUN, '--until-done', '--nproc', '4', '--nprep', '2']));
    const results = await Promise.all(sessions.map((p) => p.done));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 200 });
    const perRun = await finishedEventsPerRun(s);
    expect([...perRun.values()].every((n) => n === 1)).toBe(true);
    const trees = await filesUnder(join(s.fixture.dir, 'data', 'tree'));
    expect(trees).toHaveLength(200);
    expect(await filesUnder(join(s.fixture.dir, 'staging'))).toEqual([]);
    // Every session did some of the work.
    const claimsBySession = await sql<{ n: number }>`SELECT count(*)::int AS n FROM events WHERE to_status = 'claimed' GROUP BY session_id`.execute(s.database.handle.db);
    expect(claimsBySession.rows).toHaveLength(4);
    expect(claimsBySession.rows.reduce((a, r) => a + r.n, 0)).toBe(200);
  });
});

describe('abort', () => {
  it('SIGINT cancels the session\'s jobs, returns its runs, deletes its files; finished runs and other sessions go on', async () => {
    const s = await scenario(20, { firstRun: 20_000 });
    const warmup = await s.cli([...RUN, '--limit', '3', '--until-done']);
    expect(warmup.code, warmup.stderr).toBe(0);
    const finishedBefore = await s.database.handle.db.selectFrom('production_runs').select(['run_number', 'outputs', 'finished_at']).where('status', '=', 'finished').execute();
    expect(finishedBefore).toHaveLength(3);

    await writeFile(s.fixture.holdFile, '');
    const other = s.start([...RUN, '--nproc', '2', '--nprep', '0', '--limit', '2']);
    await until(async () => (await statusCounts(s)).running === 2, 'the other session runs 2 jobs');
    const victim = s.start([...RUN, '--nproc', '3', '--nprep', '2']);
    const victimId = await (async () => {
      let id: string | undefined;
      await until(async () => Boolean((id = await sessionOf(s, victim.child.pid!))), 'the victim has a session');
      return id!;
    })();
    await until(async () => (await heldBy(s, victimId)).filter((r) => r.status === 'running').length === 3, 'the victim has 3 jobs running');
    await until(async () => (await heldBy(s, victimId)).filter((r) => r.status === 'staged').length === 2, 'the victim has 2 runs staged');
    const held = await heldBy(s, victimId);
    const jobPids = held.filter((r) => r.job_id).map((r) => Number(r.job_id!.split(':').at(-1)));
    const stagedFiles = held.map((r) => r.staged_path).filter((p): p is string => Boolean(p));
    expect(jobPids.every(groupAlive)).toBe(true);
    expect(stagedFiles.every((p) => existsSync(p))).toBe(true);

    victim.child.kill('SIGINT');
    const result = await victim.done;
    expect(result.code).toBe(130);
    for (const r of held.filter((h) => h.job_id)) expect(result.stdout).toContain(`Cancelling job ${r.job_id}`);
    expect(result.stdout).toContain(`Aborting runs: [${held.map((r) => r.run_number).join(', ')}]`);
    expect(jobPids.some(groupAlive)).toBe(false);
    for (const path of stagedFiles) expect(existsSync(path)).toBe(false);
    const logs = await filesUnder(join(s.fixture.dir, 'data', 'log'));
    for (const r of held) expect(logs.filter((f) => f.includes(`run${String(r.run_number).padStart(5, '0')}`))).toEqual([]);
    expect((await filesUnder(join(s.fixture.dir, 'staging'))).filter((f) => f.includes('.part-'))).toEqual([]);
    const after = await s.database.handle.db.selectFrom('production_runs').select(['run_number', 'status', 'attempts', 'session_id']).where('run_number', 'in', held.map((r) => r.run_number)).execute();
    expect(after.every((r) => r.status === 'new' && r.attempts === 0 && r.session_id === null)).toBe(true);
    const aborted = await s.database.handle.db.selectFrom('events').select(['run_number', 'message']).where('session_id', '=', victimId).where('to_status', '=', 'new').execute();
    expect(aborted.map((e) => e.run_number).sort()).toEqual(held.map((r) => r.run_number));
    expect(aborted.every((e) => e.message === 'aborted (SIGINT)')).toBe(true);
    const ended = await s.database.handle.db.selectFrom('sessions').select(['ended_at', 'end_reason']).where('id', '=', victimId).executeTakeFirstOrThrow();
    expect(ended.end_reason).toBe('aborted (SIGINT)');
    const finishedAfter = await s.database.handle.db.selectFrom('production_runs').select(['run_number', 'outputs', 'finished_at']).where('run_number', 'in', finishedBefore.map((r) => r.run_number)).execute();
    expect(finishedAfter).toEqual(finishedBefore);

    await rm(s.fixture.holdFile);
    expect((await other.done).code).toBe(0);
    const rest = await s.cli([...RUN, '--until-done']);
    expect(rest.code, rest.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 20 });
    expect([...(await finishedEventsPerRun(s)).values()].every((n) => n === 1)).toBe(true);
  });

  it('SIGKILL: after the lease another session reaps it, adopts its live jobs, and the production completes once', async () => {
    const s = await scenario(12, { firstRun: 30_000 });
    await writeFile(s.fixture.holdFile, '');
    const victim = s.start([...RUN, '--nproc', '3', '--nprep', '1', '--lease', '3']);
    let victimId: string | undefined;
    await until(async () => Boolean((victimId = await sessionOf(s, victim.child.pid!))), 'the victim has a session');
    await until(async () => (await heldBy(s, victimId!)).filter((r) => r.status === 'running').length === 3, 'the victim has 3 jobs running');
    const running = (await heldBy(s, victimId!)).filter((r) => r.status === 'running');
    victim.child.kill('SIGKILL');
    await victim.done;
    const jobPids = running.map((r) => Number(r.job_id!.split(':').at(-1)));
    expect(jobPids.every(groupAlive)).toBe(true); // the jobs outlive their session

    const reaper = s.start([...RUN, '--until-done', '--nproc', '3', '--nprep', '1', '--lease', '3']);
    await reaper.waitFor(/Reaped session/, 30_000);
    const adopted = await s.database.handle.db.selectFrom('events').select('run_number').where('kind', '=', 'adopt').execute();
    expect(adopted.map((e) => e.run_number).sort()).toEqual(running.map((r) => r.run_number));
    await rm(s.fixture.holdFile);
    const result = await reaper.done;
    expect(result.code, result.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 12 });
    expect([...(await finishedEventsPerRun(s)).values()].every((n) => n === 1)).toBe(true);
    // The adopted runs were not submitted again: their first job finished them.
    const submissions = await sql<{ run_number: number; n: number }>`
      SELECT run_number, count(*)::int AS n FROM events WHERE to_status = 'submitted' AND run_number = ANY(${running.map((r) => r.run_number)}::int[]) GROUP BY 1`.execute(s.database.handle.db);
    expect(submissions.rows.every((r) => r.n === 1)).toBe(true);
    expect(await filesUnder(join(s.fixture.dir, 'staging'))).toEqual([]);
  });
});

/** How often each run's job script really started (the fixture's executions log). */
async function executionsPerRun(s: Scenario): Promise<Map<number, number>> {
  const text = existsSync(s.fixture.executionsLog) ? await readFile(s.fixture.executionsLog, 'utf8') : '';
  const counts = new Map<number, number>();
  for (const line of text.split('\n').filter(Boolean)) {
    const run = Number(line.split(' ')[0]);
    counts.set(run, (counts.get(run) ?? 0) + 1);
  }
  return counts;
}

/** Until the session's lease has run out, so that the next session's first pass reaps it. */
async function leaseExpired(s: Scenario, sessionId: string): Promise<void> {
  await until(async () => {
    const row = await sql<{ expired: boolean }>`
      SELECT heartbeat_at < now() - lease_seconds * interval '1 second' AS expired FROM sessions WHERE id = ${sessionId}::uuid`.execute(s.database.handle.db);
    return row.rows[0]!.expired;
  }, 'the lease has expired');
}

/**
 * A session that SIGKILLs itself at a crash point of its first submission (one run claimed); resolves,
 * once its job has left without running the script and its lease has expired, to the run as it left it.
 */
async function killedAt(s: Scenario, point: 'submitted' | 'recorded') {
  const victim = startCli([...RUN, '--nproc', '1', '--nprep', '0', '--lease', '2'], { env: { ...s.env, RUN_PRODUCTION_CRASH_AT: point }, cwd: s.fixture.dir });
  expect((await victim.done).signal).toBe('SIGKILL');
  const sessionId = (await sessionOf(s, victim.child.pid!))!;
  const [held] = await heldBy(s, sessionId);
  // Its job, gated, sees its submitter gone and leaves without running the script.
  await until(async () => (await jobPidsUnder(s.fixture.dir)).length === 0, 'the job has left');
  expect(await executionsPerRun(s)).toEqual(new Map());
  await leaseExpired(s, sessionId);
  return held!;
}

describe('a session killed while submitting', () => {
  it('between the scheduler accepting a job and recording it: the unrecorded job never runs, the run is done once by the next session', async () => {
    const s = await scenario(4, { firstRun: 31_000 });
    const held = await killedAt(s, 'submitted');
    expect(held).toMatchObject({ status: 'staged', job_id: null }); // the job existed, the database did not know it

    const next = s.start([...RUN, '--until-done', '--nproc', '2', '--lease', '2']);
    const result = await next.done;
    expect(result.code, result.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 4 });
    const executions = await executionsPerRun(s);
    expect([...executions.keys()].sort()).toEqual([31_000, 31_001, 31_002, 31_003]);
    expect([...executions.values()].every((n) => n === 1)).toBe(true);
    expect([...(await finishedEventsPerRun(s)).values()].every((n) => n === 1)).toBe(true);
    expect(await filesUnder(join(s.fixture.dir, 'staging'))).toEqual([]);
  });

  it('between recording a job and releasing it: the reaper adopts the run, the job never ran, the run is done once', async () => {
    const s = await scenario(3, { firstRun: 32_000 });
    const held = await killedAt(s, 'recorded');
    expect(held.status).toBe('submitted');

    const next = s.start([...RUN, '--until-done', '--nproc', '2', '--lease', '2']);
    const result = await next.done;
    expect(result.code, result.stderr).toBe(0);
    const adopted = await s.database.handle.db.selectFrom('events').select('run_number').where('kind', '=', 'adopt').execute();
    expect(adopted.map((e) => e.run_number)).toEqual([held.run_number]);
    expect(await statusCounts(s)).toEqual({ finished: 3 });
    // The adopted job had left without running (its submitter was gone): judged lost, its run ran once, on attempt 2.
    const executions = await executionsPerRun(s);
    expect([...executions.values()].every((n) => n === 1)).toBe(true);
    expect(executions.size).toBe(3);
    expect((await readFile(s.fixture.executionsLog, 'utf8')).split('\n')).toContain(`${held.run_number} 2`);
    expect(await filesUnder(join(s.fixture.dir, 'staging'))).toEqual([]);
  });
});

describe('judging jobs', () => {
  it('retries a failing job up to maxAttempts, keeps every attempt\'s logs, and never finishes missing or truncated output', async () => {
    const s = await scenario(6, { firstRun: 40_000 });
    for (const name of ['fail-40000', 'truncate-40001', 'nooutput-40002', 'fail-once-40003']) await writeFile(join(s.fixture.dir, name), '');
    const result = await s.cli([...RUN, '--until-done', '--nproc', '3', '--nprep', '1']);
    expect(result.code, result.stderr).toBe(0);
    const rows = await s.database.handle.db.selectFrom('production_runs').select(['run_number', 'status', 'attempts', 'exit_code', 'last_error']).orderBy('run_number').execute();
    const byRun = new Map(rows.map((r) => [r.run_number, r]));
    expect(byRun.get(40000)).toMatchObject({ status: 'failed', attempts: 3, exit_code: 7 });
    expect(byRun.get(40000)!.last_error).toMatch(/failing on purpose/);
    expect(byRun.get(40001)).toMatchObject({ status: 'failed', attempts: 3, exit_code: 0 });
    expect(byRun.get(40001)!.last_error).toMatch(/truncated ROOT file \(600 bytes, its header says 1024\)/);
    expect(byRun.get(40002)).toMatchObject({ status: 'failed', attempts: 3 });
    expect(byRun.get(40002)!.last_error).toMatch(/tree: .* is missing/);
    expect(byRun.get(40003)).toMatchObject({ status: 'finished', attempts: 2 });
    expect(byRun.get(40004)).toMatchObject({ status: 'finished', attempts: 1 });
    const logs = (await filesUnder(join(s.fixture.dir, 'data', 'log', 'v1'))).map((f) => f.split('/').at(-1)).sort();
    for (const attempt of [1, 2, 3]) {
      expect(logs).toContain(`alcapana.run40000.attempt${attempt}.err`);
      expect(logs).toContain(`alcapana.run40000.attempt${attempt}.out`);
    }
    expect(await readFile(join(s.fixture.dir, 'data', 'log', 'v1', 'alcapana.run40000.attempt2.err'), 'utf8')).toMatch(/failing on purpose/);
    expect(logs).toContain('alcapana.run40003.attempt1.err');
    expect(existsSync(join(s.fixture.dir, 'data', 'tree', 'v1', 'tree40001.root'))).toBe(false);
    expect(result.stdout).toMatch(/Retrying run: 40003 \(exit code 5, attempt 1\/3 failed\): failing once/);
    expect(result.stdout).toMatch(/Failed run: 40000 \(exit code 7, attempt 3\/3, no attempts left\)/);
    expect(await filesUnder(join(s.fixture.dir, 'staging'))).toEqual([]);
  });
});

describe('auto-pause', () => {
  it('pauses the production after K failed attempts in a row; resume lifts it and the session goes on', async () => {
    const s = await scenario(6, { firstRun: 45_000, typeExtra: { autoPause: { failures: 3 }, maxAttempts: 5 } });
    for (let run = 45_000; run < 45_006; run++) await writeFile(join(s.fixture.dir, `fail-${run}`), '');
    const session = s.start([...RUN, '--until-done', '--nproc', '2', '--nprep', '1']);
    await session.waitFor(/Production paused automatically: .*exit code 7/);
    const production = await s.database.handle.db.selectFrom('productions').select(['status', 'status_reason']).executeTakeFirstOrThrow();
    expect(production.status).toBe('paused');
    expect(production.status_reason).toMatch(/3 consecutive failed job attempts \(exit code 7 ×3\)/);
    const submittedAtPause = (await s.database.handle.db.selectFrom('events').select('id').where('to_status', '=', 'submitted').execute()).length;
    await new Promise((r) => setTimeout(r, 2500));
    expect((await s.database.handle.db.selectFrom('events').select('id').where('to_status', '=', 'submitted').execute()).length).toBe(submittedAtPause);
    for (let run = 45_000; run < 45_006; run++) await rm(join(s.fixture.dir, `fail-${run}`));
    expect((await s.cli(['resume', '--production', 'alcapana'])).code).toBe(0);
    const result = await session.done;
    expect(result.code, result.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 6 });
  });
});

describe('limits and modes', () => {
  it('--spacelim below current usage starts no download; a higher limit resumes them', async () => {
    const s = await scenario(4, { firstRun: 50_000 });
    const blocked = s.start([...RUN, '--spacelim', '0.5', '--nproc', '2', '--nprep', '2']);
    await blocked.waitFor(/Downloads paused: staging area [\d.]+% used, at or above --spacelim 0.5%/);
    await new Promise((r) => setTimeout(r, 2500));
    expect(blocked.output().stdout).not.toMatch(/Downloading run/);
    expect((await statusCounts(s)).claimed).toBe(4);
    blocked.child.kill('SIGINT');
    expect((await blocked.done).code).toBe(130);
    const resumed = await s.cli([...RUN, '--spacelim', '99', '--until-done']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/Downloading run: 50000/);
    expect(await statusCounts(s)).toEqual({ finished: 4 });
  });

  it('downloads resume by themselves when the quota command reports room again', async () => {
    const quotaFile = 'quota.txt';
    const s = await scenario(3, {
      firstRun: 55_000,
      extraConfig: { quota: { command: `cat ${quotaFile}`, pattern: 'used=(?<used>\\d+) limit=(?<limit>\\d+)' } },
    });
    await writeFile(join(s.fixture.dir, quotaFile), 'used=95000000 limit=100000000\n');
    const session = s.start([...RUN, '--until-done', '--spacelim', '90']);
    await session.waitFor(/Downloads paused: staging area 95\.0% used/);
    expect(session.output().stdout).not.toMatch(/Downloading run/);
    await writeFile(join(s.fixture.dir, quotaFile), 'used=10000000 limit=100000000\n');
    const result = await session.done;
    expect(result.code, result.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 3 });
  });

  it('sessions starting together share the staging quota: never more runs staged than fit, whatever their timing', async () => {
    // The quota: the bytes of the files in staging against 8,000. Every input is 2,048-2,648 bytes,
    // so three always fit and four never do: at no moment may four runs have an input in staging.
    const quota = `find staging -type f -printf '%s\\n' 2>/dev/null | awk '{s += $1} END {print "used=" s+0 " limit=8000"}'`;
    const s = await scenario(12, { firstRun: 57_000, extraConfig: { quota: { command: quota, pattern: 'used=(?<used>\\d+) limit=(?<limit>\\d+)' } } });
    await writeFile(s.fixture.holdFile, '');
    const inStaging = async () =>
      (
        await sql<{ n: number }>`
          SELECT count(*)::int AS n FROM production_runs WHERE status IN ('downloading', 'staged', 'submitted', 'running')`.execute(s.database.handle.db)
      ).rows[0]!.n;
    let most = 0;
    let mostBytes = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        most = Math.max(most, await inStaging());
        const sizes = await Promise.all((await filesUnder(join(s.fixture.dir, 'staging'))).map((f) => stat(f).then((x) => x.size, () => 0)));
        mostBytes = Math.max(mostBytes, sizes.reduce((a, b) => a + b, 0));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      const sessions = Array.from({ length: 4 }, () => s.start([...RUN, '--until-done', '--spacelim', '100', '--nproc', '1', '--nprep', '3']));
      await until(async () => (await inStaging()) === 3, 'three inputs are staged, all that fit');
      await new Promise((r) => setTimeout(r, 2000)); // every session has had passes in which nothing more fits
      expect(await inStaging()).toBe(3);
      await rm(s.fixture.holdFile);
      for (const session of sessions) {
        const result = await session.done;
        expect(result.code, result.stdout + result.stderr).toBe(0);
      }
    } finally {
      sampling = false;
      await sampler;
    }
    expect(await statusCounts(s)).toEqual({ finished: 12 });
    expect(most).toBeLessThanOrEqual(3);
    expect(mostBytes).toBeLessThanOrEqual(8000);
  });

  it('runs the prestage command with the files about to be fetched', async () => {
    const s = await scenario(3, { firstRun: 57_000, typeExtra: { archive: { prestage: 'echo >> prestaged.txt' } } });
    const result = await s.cli([...RUN, '--until-done']);
    expect(result.code, result.stderr).toBe(0);
    const listed = await readFile(join(s.fixture.dir, 'prestaged.txt'), 'utf8');
    for (const run of [57000, 57001, 57002]) expect(listed).toContain(join(s.fixture.dir, 'archive', `run${run}.mid`));
  });

  it('--limit claims at most N runs in all; --until-done then exits 0', async () => {
    const s = await scenario(8, { firstRun: 60_000 });
    const result = await s.cli([...RUN, '--limit', '3', '--until-done', '--nproc', '5']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/ended: limit of 3 runs reached/);
    expect(await statusCounts(s)).toEqual({ finished: 3, new: 5 });
  });

  it('--dry-run prints what would be claimed, downloaded and submitted and changes nothing', async () => {
    const s = await scenario(8, { firstRun: 70_000 });
    const before = await s.database.handle.db.selectFrom('events').select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow();
    const result = await s.cli([...RUN, '--dry-run', '--nproc', '2', '--nprep', '1']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/Would claim 3 run\(s\): \[70000, 70001, 70002\]/);
    expect(result.stdout).toMatch(/Would download run 70000: file:\/\/.*archive\/run70000\.mid → .*staging\/alcapana\/v1\/run70000\.run70000\.mid/);
    expect(result.stdout).toMatch(/Would submit run 70001 to local: .*job\.sh/);
    const after = await s.database.handle.db.selectFrom('events').select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow();
    expect(after.n).toBe(before.n);
    expect(await s.database.handle.db.selectFrom('sessions').selectAll().execute()).toEqual([]);
    expect(await statusCounts(s)).toEqual({ new: 8 });
    expect(existsSync(join(s.fixture.dir, 'staging'))).toBe(false);
  });

  it('SIGUSR1 drains: no more claims, staged runs returned, submitted jobs finish, exit 0', async () => {
    const s = await scenario(10, { firstRun: 80_000 });
    await writeFile(s.fixture.holdFile, '');
    const session = s.start([...RUN, '--nproc', '2', '--nprep', '3']);
    let id: string | undefined;
    await until(async () => Boolean((id = await sessionOf(s, session.child.pid!))), 'a session');
    await until(async () => {
      const held = await heldBy(s, id!);
      return held.filter((r) => r.status === 'running').length === 2 && held.filter((r) => r.status === 'staged').length === 3;
    }, '2 running and 3 staged');
    const staged = (await heldBy(s, id!)).filter((r) => r.status === 'staged');
    session.child.kill('SIGUSR1');
    await session.waitFor(/Returning runs: \[/);
    expect(session.output().stdout).toContain(`Returning runs: [${staged.map((r) => r.run_number).join(', ')}]`);
    for (const r of staged) expect(existsSync(r.staged_path!)).toBe(false);
    await rm(s.fixture.holdFile);
    const result = await session.done;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/ended: drained/);
    expect(await statusCounts(s)).toEqual({ finished: 2, new: 8 });
  });
});

describe('chained productions', () => {
  it('a child run is claimable only once its parent run finished, and reads the parent output in place', async () => {
    const s = await scenario(6, { firstRun: 90_000 });
    expect((await s.cli([...RUN, '--limit', '3', '--until-done'])).code).toBe(0);
    const child = await s.cli(['new', '--production', 'rootana', '--tag', 'ra1']);
    expect(child.code, child.stderr).toBe(0);
    const dry = await s.cli(['run', '--production', 'rootana', '--dry-run']);
    expect(dry.stdout).toMatch(/Would claim 3 run\(s\): \[90000, 90001, 90002\]/);
    const result = await s.cli(['run', '--production', 'rootana', '--plain', '--pause', '1', '--limit', '3', '--until-done']);
    expect(result.code, result.stderr).toBe(0);
    expect(await statusCounts(s, 'rootana')).toEqual({ finished: 3, new: 3 });
    const input = await s.database.handle.db
      .selectFrom('events')
      .innerJoin('productions', 'productions.id', 'events.production_id')
      .select('events.message')
      .where('productions.type', '=', 'rootana')
      .where('events.to_status', '=', 'staged')
      .execute();
    expect(input).toHaveLength(3);
    const rootanaRun = await s.database.handle.db
      .selectFrom('production_runs')
      .innerJoin('productions', 'productions.id', 'production_runs.production_id')
      .select(['production_runs.staged_path', 'production_runs.outputs'])
      .where('productions.type', '=', 'alcapana')
      .where('production_runs.run_number', '=', 90000)
      .executeTakeFirstOrThrow();
    expect((await stat(rootanaRun.outputs!.tree!)).size).toBe(1024); // the parent's tree is still there: read in place, not deleted
  });
});
