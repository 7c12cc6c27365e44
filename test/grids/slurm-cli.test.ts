import { spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProductionFixture, runCli, startCli, type CliProcess, type ProductionFixture } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { slurmAvailable, startSlurm, type TestSlurm } from '../helpers/slurm.js';

/**
 * The operator loop on a real single-node Slurm, driven as shifters drive it:
 * CLI processes, Ctrl-C (SIGINT) and a SIGKILL'd session whose jobs are adopted.
 */

describe.skipIf(!slurmAvailable() && !process.env.CI)('run-production on a real Slurm', () => {
  let slurm: TestSlurm;
  beforeAll(async () => {
    slurm = await startSlurm();
  });
  afterAll(async () => {
    await slurm?.stop();
  });

  async function setup(firstRun: number): Promise<{ database: TestDatabase; fixture: ProductionFixture; env: NodeJS.ProcessEnv; started: CliProcess[]; done(): Promise<void> }> {
    const database = await createTestDatabase();
    const fixture = await createProductionFixture({
      runs: 6,
      firstRun,
      typeExtra: { job: { backend: 'slurm', script: './job.sh', options: { time: '00:10:00' } } },
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
        spawnSync('scancel', ['--name', 'rp-alcapana-v1-r' + firstRun], { env: slurm.env });
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
});
