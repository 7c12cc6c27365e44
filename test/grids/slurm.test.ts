/**
 * The Slurm backend against a real single-node Slurm (test/helpers/slurm.ts).
 * Accounting is off there, so finished jobs are judged by squeue, then
 * scontrol, then the wrapper's status file: the paths clusters without
 * slurmdbd depend on.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand, type CommandRunner } from '../../src/grids/command.js';
import { GridUnavailableError, type Grid, type JobRef, type JobSpec, type JobState } from '../../src/grids/grid.js';
import { createSlurmGrid } from '../../src/grids/slurm.js';
import { sql } from 'kysely';
import { createProductionFixture, runCli, startCli, type CliProcess, type ProductionFixture } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { slurmAvailable, startSlurm, type TestSlurm } from '../helpers/slurm.js';

/** Slow and hanging stand-ins for sbatch and squeue (they run the real ones afterwards); see the scripts. */
const SLOW_BIN = fileURLToPath(new URL('../fixtures/grids/slow-bin', import.meta.url));

// In CI the test must run (and fail loudly if Slurm cannot start), never skip.
describe.skipIf(!slurmAvailable() && !process.env.CI)('Slurm backend on a real Slurm', () => {
  let slurm: TestSlurm;
  let dir: string;
  /** Every command the backend ran, in order. */
  let calls: string[][];
  let grid: Grid;

  beforeAll(async () => {
    slurm = await startSlurm();
    dir = await mkdtemp(join(tmpdir(), 'rp-slurm-jobs-'));
    const run: CommandRunner = (argv, opts) => {
      calls.push(argv);
      return runCommand(argv, { ...opts, env: slurm.env });
    };
    calls = [];
    grid = createSlurmGrid({ partition: 'debug', time: '00:10:00', memory: '64M', commandTimeoutSeconds: 20 }, run);
  });

  afterAll(async () => {
    await slurm?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  async function job(name: string, body: string, env: Record<string, string> = {}): Promise<JobSpec> {
    const workDir = join(dir, name);
    const script = join(dir, `${name}.sh`);
    await writeFile(script, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
    return {
      name,
      script,
      env,
      workDir,
      stdoutPath: join(workDir, 'job.out'),
      stderrPath: join(workDir, 'job.err'),
      statusPath: join(workDir, 'status.json'),
    };
  }

  const ref = (spec: JobSpec, jobId: string): JobRef => ({ jobId, statusPath: spec.statusPath });

  async function pollUntil(refs: JobRef[], settled: (state: JobState) => boolean, timeoutMs = 60_000): Promise<Map<string, JobState>> {
    const deadline = Date.now() + timeoutMs;
    let states = await grid.poll(refs);
    while (![...states.values()].every(settled)) {
      if (Date.now() > deadline) throw new Error(`jobs did not settle: ${JSON.stringify([...states])}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      states = await grid.poll(refs);
    }
    return states;
  }

  function squeueLists(jobId: string, states?: string): boolean {
    const args = ['--noheader', '--format=%i', `--jobs=${jobId}`, ...(states === undefined ? [] : [`--states=${states}`])];
    const result = spawnSync('squeue', args, { env: slurm.env, encoding: 'utf8' });
    return result.status === 0 && result.stdout.split('\n').some((line) => line.trim() === jobId);
  }

  it('runs a job through the wrapper and reports exit 0 and the host', async () => {
    const spec = await job('rp-test-ok', 'echo "run=$RUN" > "$OUTPUT_FILE"; echo to-stdout', {
      RUN: `2091 'quoted' $HOME`,
      OUTPUT_FILE: join(dir, 'rp-test-ok.result'),
    });
    const jobId = await grid.submit(spec);
    expect(jobId).toMatch(/^\d+$/);
    const sbatch = calls.find((argv) => argv[0] === 'sbatch')!;
    expect(sbatch).toEqual([
      'sbatch', '--parsable', '--job-name=rp-test-ok', `--chdir=${spec.workDir}`,
      `--output=${spec.workDir}/rp-test-ok.slurm-%j.out`, `--error=${spec.workDir}/rp-test-ok.slurm-%j.err`,
      '--partition=debug', '--time=00:10:00', '--mem=64M', `${spec.workDir}/rp-test-ok.rp-batch.sh`,
    ]);

    const state = (await pollUntil([ref(spec, jobId)], (s) => s.state === 'done')).get(jobId);
    expect(state).toMatchObject({ state: 'done', exitCode: 0 });
    const status = JSON.parse(await readFile(spec.statusPath, 'utf8')) as { host: string; exit: number };
    expect(status.exit).toBe(0);
    expect(state).toHaveProperty('host', status.host);
    // The environment arrived unexpanded, quotes and all.
    expect(await readFile(join(dir, 'rp-test-ok.result'), 'utf8')).toBe(`run=2091 'quoted' $HOME\n`);
    expect(await readFile(spec.stdoutPath, 'utf8')).toBe('to-stdout\n');
  });

  it('reports a non-zero exit code with the Slurm state', async () => {
    const spec = await job('rp-test-exit3', 'echo failing >&2; exit 3');
    const jobId = await grid.submit(spec);
    const state = (await pollUntil([ref(spec, jobId)], (s) => s.state === 'done')).get(jobId);
    expect(state).toMatchObject({ state: 'done', exitCode: 3, reason: 'Slurm job state FAILED' });
    expect(await readFile(spec.stderrPath, 'utf8')).toBe('failing\n');
  });

  it('cancels a running job', async () => {
    const spec = await job('rp-test-sleep', 'sleep 300');
    const jobId = await grid.submit(spec);
    await pollUntil([ref(spec, jobId)], (s) => s.state === 'running');
    // The wrapper must be up before the cancellation for it to record one.
    const deadline = Date.now() + 30_000;
    while ((await readFile(spec.statusPath, 'utf8').catch(() => '')) === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));

    await grid.cancel([jobId]);
    const gone = Date.now() + 30_000;
    while (squeueLists(jobId) && Date.now() < gone) await new Promise((r) => setTimeout(r, 300));
    expect(squeueLists(jobId)).toBe(false);

    const state = (await pollUntil([ref(spec, jobId)], (s) => s.state === 'done')).get(jobId);
    expect(state?.state).toBe('done');
    if (state?.state !== 'done') return;
    // The wrapper traps SIGTERM and records 128+15.
    expect(state.exitCode).toBe(143);
    expect(state.reason).toBe('Slurm job state CANCELLED');
    // Cancelling again, or an id Slurm never had, is not an error.
    await expect(grid.cancel([jobId, '999999'])).resolves.toBeUndefined();
  });

  it('polls many jobs in one squeue call and falls back on the wrapper once Slurm forgets them', async () => {
    const specs = await Promise.all([0, 1, 2].map((i) => job(`rp-test-many-${i}`, `exit ${i}`)));
    const ids: string[] = [];
    for (const spec of specs) ids.push(await grid.submit(spec));
    const unknown: JobRef = { jobId: '999999', statusPath: join(dir, 'never', 'status.json') };
    const refs = [...specs.map((spec, i) => ref(spec, ids[i]!)), unknown];

    calls = [];
    const first = await grid.poll(refs);
    expect([...first.keys()].sort()).toEqual(refs.map((r) => r.jobId).sort());
    const squeues = calls.filter((argv) => argv[0] === 'squeue');
    expect(squeues).toEqual([['squeue', '--noheader', '--states=all', '--format=%i|%T|%N', `--jobs=${refs.map((r) => r.jobId).join(',')}`]]);
    expect(first.get('999999')).toEqual({ state: 'lost', reason: 'Slurm no longer knows the job and its wrapper never started' });

    const done = await pollUntil(refs.slice(0, 3), (s) => s.state === 'done');
    expect(ids.map((id) => (done.get(id) as { exitCode: number }).exitCode)).toEqual([0, 1, 2]);

    // MinJobAge=5 in the test cluster: wait until squeue and scontrol have forgotten the jobs.
    const forgotten = Date.now() + 60_000;
    while (ids.some((id) => squeueLists(id, 'all')) && Date.now() < forgotten) await new Promise((r) => setTimeout(r, 1000));
    expect(ids.some((id) => squeueLists(id, 'all'))).toBe(false);

    calls = [];
    const later = await grid.poll(refs);
    expect(ids.map((id) => later.get(id))).toEqual(ids.map((_, i) => expect.objectContaining({ state: 'done', exitCode: i })));
    // Accounting is off here: sacct is not asked again once it said so; scontrol is, once per forgotten job.
    expect(calls.filter((argv) => argv[0] === 'sacct')).toEqual([]);
    expect(calls.filter((argv) => argv[0] === 'scontrol').length).toBe(4);
  });

  it('turns a submission refused by Slurm into GridUnavailableError', async () => {
    const bad = createSlurmGrid({ partition: 'no-such-partition' }, (argv, opts) => runCommand(argv, { ...opts, env: slurm.env }));
    const spec = await job('rp-test-badpart', 'true');
    const error = await bad.submit(spec).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toMatch(/^sbatch failed: sbatch: error: .*partition/i);
  });
});

/**
 * The operator loop on a real single-node Slurm, driven as shifters drive it:
 * CLI processes, Ctrl-C (SIGINT) and a SIGKILL'd session whose jobs are adopted.
 * In this file, not a file of its own: test files run in parallel, and two files
 * sharing the one test cluster would stop it under each other.
 */

describe.skipIf(!slurmAvailable() && !process.env.CI)('run-production on a real Slurm', () => {
  let slurm: TestSlurm;
  beforeAll(async () => {
    slurm = await startSlurm();
  });
  afterAll(async () => {
    await slurm?.stop();
  });

  async function setup(
    firstRun: number,
    { runs = 6, options = {} }: { runs?: number; options?: Record<string, unknown> } = {},
  ): Promise<{ database: TestDatabase; fixture: ProductionFixture; env: NodeJS.ProcessEnv; started: CliProcess[]; done(): Promise<void> }> {
    const database = await createTestDatabase();
    const fixture = await createProductionFixture({
      runs,
      firstRun,
      typeExtra: { job: { backend: 'slurm', script: './job.sh', options: { time: '00:10:00', ...options } } },
    });
    const env = { ...slurm.env, DATABASE_URL: database.url, ...fixture.env };
    expect((await runCli(['datasets', 'import', fixture.catalogue], { env })).code).toBe(0);
    expect((await runCli(['new', '--production', 'alcapana', '--tag', 'slurm'], { env })).code).toBe(0);
    const started: CliProcess[] = [];
    return {
      database,
      fixture,
      env,
      started,
      async done() {
        for (const p of started) if (p.child.exitCode === null) p.child.kill('SIGKILL');
        for (let i = 0; i < runs; i++) spawnSync('scancel', ['--name', `rp-alcapana-v1-r${firstRun + i}`], { env: slurm.env });
        await database.drop();
        await rm(fixture.dir, { recursive: true, force: true });
      },
    };
  }

  const queued = (jobIds: string[]): string[] => {
    const result = spawnSync('squeue', ['--noheader', '--states=all', '--format=%i|%T'], { env: slurm.env, encoding: 'utf8' });
    return result.stdout
      .split('\n')
      .map((l) => l.split('|'))
      .filter(([id, state]) => id && jobIds.includes(id) && !['COMPLETED', 'CANCELLED', 'FAILED'].includes(state ?? ''))
      .map(([id]) => id!);
  };

  async function until(check: () => Promise<boolean>, what: string, timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  const running = async (database: TestDatabase) =>
    database.handle.db.selectFrom('production_runs').select(['run_number', 'job_id', 'session_id']).where('status', '=', 'running').execute();

  it('Ctrl-C cancels the session\'s Slurm jobs: squeue is empty of them afterwards and the runs are new', async () => {
    const t = await setup(130_000);
    try {
      await writeFile(t.fixture.holdFile, '');
      const session = startCli(['run', '--production', 'alcapana', '--plain', '--pause', '1', '--nproc', '2', '--nprep', '0'], { env: t.env, cwd: t.fixture.dir });
      t.started.push(session);
      await until(async () => (await running(t.database)).length === 2, '2 Slurm jobs running');
      const jobIds = (await running(t.database)).map((r) => r.job_id!);
      expect(queued(jobIds)).toHaveLength(2);
      session.child.kill('SIGINT');
      const result = await session.done;
      expect(result.code, result.stderr).toBe(130);
      for (const id of jobIds) expect(result.stdout).toContain(`Cancelling job ${id}`);
      await until(async () => queued(jobIds).length === 0, 'squeue no longer lists the jobs', 30_000);
      const rows = await t.database.handle.db.selectFrom('production_runs').select(['status', 'session_id']).execute();
      expect(rows.every((r) => r.status === 'new' && r.session_id === null)).toBe(true);
    } finally {
      await rm(t.fixture.holdFile, { force: true });
      await t.done();
    }
  });

  it('after a SIGKILL another session adopts the live Slurm jobs and the production completes once', async () => {
    const t = await setup(140_000);
    try {
      await writeFile(t.fixture.holdFile, '');
      const victim = startCli(['run', '--production', 'alcapana', '--plain', '--pause', '1', '--nproc', '2', '--nprep', '0', '--lease', '3'], { env: t.env, cwd: t.fixture.dir });
      t.started.push(victim);
      await until(async () => (await running(t.database)).length === 2, '2 Slurm jobs running');
      const before = await running(t.database);
      victim.child.kill('SIGKILL');
      await victim.done;
      expect(queued(before.map((r) => r.job_id!))).toHaveLength(2); // the jobs outlive their session
      const reaper = startCli(['run', '--production', 'alcapana', '--plain', '--pause', '1', '--nproc', '2', '--lease', '3', '--until-done'], { env: t.env, cwd: t.fixture.dir });
      t.started.push(reaper);
      await reaper.waitFor(/Reaped session .*adopted \[/, 60_000);
      await rm(t.fixture.holdFile);
      const result = await reaper.done;
      expect(result.code, result.stderr).toBe(0);
      const statuses = await t.database.handle.db.selectFrom('production_runs').select('status').execute();
      expect(statuses.every((r) => r.status === 'finished')).toBe(true);
      const adopted = await t.database.handle.db.selectFrom('events').select('run_number').where('kind', '=', 'adopt').execute();
      expect(adopted.map((e) => e.run_number).sort()).toEqual(before.map((r) => r.run_number).sort());
      const submissions = await sql<{ run_number: number; n: number }>`
        SELECT run_number, count(*)::int AS n FROM events WHERE to_status = 'submitted' GROUP BY 1`.execute(t.database.handle.db);
      expect(submissions.rows.every((r) => r.n === 1)).toBe(true);
    } finally {
      await rm(t.fixture.holdFile, { force: true });
      await t.done();
    }
  });

  it('a session killed after recording a Slurm job but before releasing it: the job waits, the reaper adopts and releases it, it runs once', async () => {
    const t = await setup(150_000);
    try {
      const victim = startCli(['run', '--production', 'alcapana', '--plain', '--pause', '1', '--nproc', '1', '--nprep', '0', '--lease', '3'], {
        env: { ...t.env, RUN_PRODUCTION_CRASH_AT: 'recorded' },
        cwd: t.fixture.dir,
      });
      t.started.push(victim);
      expect((await victim.done).signal).toBe('SIGKILL');
      const [recorded] = await t.database.handle.db.selectFrom('production_runs').select(['run_number', 'job_id', 'attempts']).where('status', '=', 'submitted').execute();
      expect(recorded?.job_id).toMatch(/^\d+/);
      // On the grid but gated: Slurm may start it, the script does not run.
      await new Promise((r) => setTimeout(r, 3000));
      expect(queued([recorded!.job_id!])).toHaveLength(1);
      expect(existsSync(t.fixture.executionsLog)).toBe(false);
      await until(async () => {
        const row = await sql<{ expired: boolean }>`SELECT bool_and(heartbeat_at < now() - lease_seconds * interval '1 second') AS expired FROM sessions`.execute(t.database.handle.db);
        return row.rows[0]!.expired;
      }, 'the victim\'s lease has expired');

      const reaper = startCli(['run', '--production', 'alcapana', '--plain', '--pause', '1', '--nproc', '2', '--lease', '3', '--until-done'], { env: t.env, cwd: t.fixture.dir });
      t.started.push(reaper);
      const result = await reaper.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/Reaped session .*adopted \[/);
      const rows = await t.database.handle.db.selectFrom('production_runs').select(['run_number', 'status', 'attempts', 'job_id']).orderBy('run_number').execute();
      expect(rows.every((r) => r.status === 'finished' && r.attempts === 1)).toBe(true);
      // The recorded job itself finished the run: released by the reaper, not submitted again.
      expect(rows.find((r) => r.run_number === recorded!.run_number)?.job_id).toBe(recorded!.job_id);
      const executions = (await readFile(t.fixture.executionsLog, 'utf8')).trim().split('\n').sort();
      expect(executions).toEqual(rows.map((r) => `${r.run_number} 1`).sort());
    } finally {
      await t.done();
    }
  });

  describe('slow and hanging Slurm commands (issue 12)', () => {
    /** The sessions' environment with the slowed commands first on PATH. */
    const slowed = (env: NodeJS.ProcessEnv, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({ ...env, ...extra, PATH: `${SLOW_BIN}${delimiter}${env.PATH ?? ''}` });

    it('an sbatch slower than the lease costs no live session its lease, nor a job', async () => {
      const runs = 8;
      const t = await setup(160_000, { runs, options: { commandTimeoutSeconds: 20 } });
      try {
        const sbatchLog = join(t.fixture.dir, 'sbatch.log');
        const args = ['run', '--production', 'alcapana', '--plain', '--pause', '1', '--lease', '6', '--nproc', '4', '--nprep', '0', '--until-done'];
        // The first session's every sbatch takes 8 s, longer than the 6 s lease: a pass submitting
        // several takes its whole 20 s scheduler budget. The second session's sbatch takes 1 s (a
        // quicker submit host), so it is soon idle, heartbeating between short passes: a reaper that
        // would take the first session's runs and jobs if the lease were renewed only between passes.
        const first = startCli(args, { env: slowed(t.env, { RP_TEST_SBATCH_DELAY: '8', RP_TEST_SBATCH_LOG: sbatchLog }), cwd: t.fixture.dir });
        t.started.push(first);
        await first.waitFor(/Claimed run/);
        const second = startCli(args, { env: slowed(t.env, { RP_TEST_SBATCH_DELAY: '1', RP_TEST_SBATCH_LOG: sbatchLog }), cwd: t.fixture.dir });
        t.started.push(second);
        const results = await Promise.all([first.done, second.done]);
        for (const r of results) expect(r.code, r.stdout + r.stderr).toBe(0);
        // The slow one said so.
        expect(results[0]!.stdout).toMatch(/WARNING: sbatch locally has not answered for \d+s \(timeout 20s\)/);
        for (const r of results) expect(r.stdout).not.toMatch(/Reaped session|Cancelling job|cancelled job|lost its lease/);
        const reaps = await t.database.handle.db.selectFrom('events').select('id').where('kind', '=', 'reap').execute();
        expect(reaps).toEqual([]);
        const rows = await t.database.handle.db.selectFrom('production_runs').select(['run_number', 'status', 'attempts', 'job_id']).orderBy('run_number').execute();
        expect(rows).toHaveLength(runs);
        expect(rows.every((r) => r.status === 'finished' && r.attempts === 1)).toBe(true);
        // Exactly one Slurm job per run was ever submitted (none submitted and then cancelled), and it ran the script once.
        const submittedJobs = (await readFile(sbatchLog, 'utf8')).trim().split('\n').sort();
        expect(submittedJobs).toEqual(rows.map((r) => r.job_id!).sort());
        const executions = (await readFile(t.fixture.executionsLog, 'utf8')).trim().split('\n').sort();
        expect(executions).toEqual(rows.map((r) => `${r.run_number} 1`).sort());
        const perRun = await sql<{ run_number: number; submitted: number; finished: number }>`
          SELECT run_number, count(*) FILTER (WHERE to_status = 'submitted')::int AS submitted, count(*) FILTER (WHERE to_status = 'finished')::int AS finished
            FROM events WHERE run_number IS NOT NULL GROUP BY 1`.execute(t.database.handle.db);
        expect(perRun.rows).toHaveLength(runs);
        expect(perRun.rows.every((r) => r.submitted === 1 && r.finished === 1)).toBe(true);
        // The slow session kept and submitted the four runs it claimed first.
        const bySession = await sql<{ pid: number; n: number }>`
          SELECT s.pid, count(*)::int AS n FROM events e JOIN sessions s ON s.id = e.session_id WHERE e.to_status = 'submitted' GROUP BY 1`.execute(t.database.handle.db);
        expect(bySession.rows.find((r) => r.pid === first.child.pid)?.n).toBe(4);
      } finally {
        await t.done();
      }
    });

    it('a squeue that hangs is named within seconds, and Ctrl-C does not wait for it: the jobs are cancelled, the runs new', async () => {
      const t = await setup(170_000, { runs: 2, options: { commandTimeoutSeconds: 30 } });
      const hang = join(t.fixture.dir, 'squeue-hangs');
      try {
        await writeFile(t.fixture.holdFile, '');
        // Until the hang file exists squeue answers at once, so the session first gets both jobs running.
        // --lease 8: the heartbeat, which also looks for hanging commands, beats every 2 s.
        const session = startCli(['run', '--production', 'alcapana', '--plain', '--pause', '1', '--lease', '8', '--nproc', '2', '--nprep', '0'], {
          env: slowed(t.env, { RP_TEST_SBATCH_DELAY: '0', RP_TEST_SQUEUE_HANG_FILE: hang, RP_TEST_SQUEUE_DELAY: '120' }),
          cwd: t.fixture.dir,
        });
        t.started.push(session);
        await until(async () => (await running(t.database)).length === 2, '2 Slurm jobs running');
        const jobIds = (await running(t.database)).map((r) => r.job_id!);
        expect(queued(jobIds)).toHaveLength(2);

        await writeFile(hang, '');
        const hangingSince = Date.now();
        await session.waitFor(/squeue .*has not answered for \d+s/, 12_000);
        expect(Date.now() - hangingSince).toBeLessThan(12_000);
        expect(session.output().stdout).toMatch(/WARNING: squeue locally has not answered for \d+s \(timeout 30s\)/);

        const sent = Date.now();
        session.child.kill('SIGINT');
        const result = await session.done;
        const took = Date.now() - sent;
        expect(result.code, result.stdout + result.stderr).toBe(130);
        expect(took, 'the rollback waited for the hanging squeue').toBeLessThan(8_000);
        for (const id of jobIds) expect(result.stdout).toContain(`Cancelling job ${id}`);
        // The real squeue, not the hanging one.
        await until(async () => queued(jobIds).length === 0, 'squeue no longer lists the jobs', 15_000);
        const rows = await t.database.handle.db.selectFrom('production_runs').select(['status', 'session_id']).execute();
        expect(rows.every((r) => r.status === 'new' && r.session_id === null)).toBe(true);
      } finally {
        await rm(hang, { force: true });
        await rm(t.fixture.holdFile, { force: true });
        await t.done();
      }
    });
  });
});

// Issue 13: a Slurm job gets a clean environment. Self-contained: its own cluster handle and grid.
import { registerDotenvNames } from '../../src/grids/batch-script.js';

describe.skipIf(!slurmAvailable() && !process.env.CI)('Slurm jobs get a clean environment', () => {
  it('a job sees none of the submitter\'s secrets, even with SBATCH_EXPORT=ALL set, only the base set, the allow-list and its own variables', { timeout: 120_000 }, async () => {
    const slurm = await startSlurm();
    const dir = await mkdtemp(join(tmpdir(), 'rp-slurm-env-'));
    const planted: Record<string, string> = {
      DATABASE_URL: 'postgres://u:db-secret-1@db.example.org/prod',
      PGPASSWORD: 'pg-secret-2',
      RUN_PRODUCTION_SFTP_PASSWORD: 'sftp-secret-3',
      SSH_AUTH_SOCK: '/tmp/agent-secret-4/agent.1',
      // Would override the batch script's --export=NONE if sbatch saw it.
      SBATCH_EXPORT: 'ALL',
      RP_TEST_DOTENV_TOKEN: 'dotenv-secret-5',
      RP_TEST_ALLOWED: 'allowed-value',
      RP_TEST_UNLISTED: 'unlisted-value-6',
    };
    const saved = Object.fromEntries(Object.keys(planted).map((name) => [name, process.env[name]]));
    Object.assign(process.env, planted);
    // As the CLI registers the names of its .env: never passed, even when allow-listed.
    registerDotenvNames(['RP_TEST_DOTENV_TOKEN']);
    try {
      // The backend's commands with the environment it gives them, plus what finds this test cluster.
      const run: CommandRunner = (argv, opts = {}) =>
        runCommand(argv, { ...opts, env: { ...(opts.env ?? process.env), SLURM_CONF: slurm.env.SLURM_CONF, PATH: slurm.env.PATH } });
      const grid = createSlurmGrid({ partition: 'debug', time: '00:10:00', memory: '64M', commandTimeoutSeconds: 20, environment: ['RP_TEST_ALLOWED', 'RP_TEST_DOTENV_TOKEN'] }, run);
      const workDir = join(dir, 'rp-test-env');
      const script = join(dir, 'rp-test-env.sh');
      const envFile = join(dir, 'job-env.txt');
      await writeFile(script, '#!/bin/bash\nenv > "$OUTPUT_ENV"\n', { mode: 0o755 });
      const spec: JobSpec = {
        name: 'rp-test-env', script, env: { RUN: '2091', OUTPUT_ENV: envFile }, workDir,
        stdoutPath: join(workDir, 'job.out'), stderrPath: join(workDir, 'job.err'), statusPath: join(workDir, 'status.json'),
      };
      const jobId = await grid.submit(spec);
      const deadline = Date.now() + 60_000;
      let state = (await grid.poll([{ jobId, statusPath: spec.statusPath }])).get(jobId);
      while (state?.state !== 'done') {
        if (Date.now() > deadline) throw new Error(`job did not end: ${JSON.stringify(state)}`);
        await new Promise((resolve) => setTimeout(resolve, 500));
        state = (await grid.poll([{ jobId, statusPath: spec.statusPath }])).get(jobId);
      }
      expect(state).toMatchObject({ state: 'done', exitCode: 0 });

      const text = await readFile(envFile, 'utf8');
      const names = text.split('\n').map((line) => line.split('=')[0]!);
      for (const name of Object.keys(planted).filter((n) => n !== 'RP_TEST_ALLOWED')) expect(names, `the job has ${name}`).not.toContain(name);
      for (const [name, value] of Object.entries(planted)) if (name !== 'RP_TEST_ALLOWED' && name !== 'SBATCH_EXPORT') expect(text, `the job has the value of ${name}`).not.toContain(value);
      expect(text).toContain('RP_TEST_ALLOWED=allowed-value\n');
      expect(text).toContain(`PATH=${process.env.PATH}\n`);
      expect(text).toContain('RUN=2091\n');
      // Slurm's own variables are there: the job ran under Slurm with --export=NONE.
      expect(text).toMatch(/^SLURM_JOB_ID=\d+$/m);
      expect((await readFile(join(workDir, 'rp-test-env.rp-batch.sh'), 'utf8')).split('\n')[1]).toBe('#SBATCH --export=NONE');
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      await slurm.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
