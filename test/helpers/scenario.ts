import { existsSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterEach, expect } from 'vitest';
import { createProductionFixture, runCli, startCli, type CliProcess, type ProductionFixture } from './cli.js';
import { createTestDatabase, type TestDatabase } from './database.js';

/**
 * A production as shifters run it, for tests with real CLI processes: a fresh database, a fixture
 * directory (archive, catalogue, job script, config), the catalogue imported and version 1 made.
 * Everything a scenario starts is killed and removed after each test of the file that imports it.
 */

export interface Scenario {
  database: TestDatabase;
  fixture: ProductionFixture;
  env: NodeJS.ProcessEnv;
  cli(args: string[]): ReturnType<typeof runCli>;
  /** A CLI process in the background; `extraEnv` adds variables of its own to the scenario's. */
  start(args: string[], extraEnv?: NodeJS.ProcessEnv): CliProcess;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

export interface ScenarioSteps {
  /** Runs between making the fixture and importing its catalogue (to rewrite the archive or catalogue). */
  prepare?: (fixture: ProductionFixture) => Promise<void>;
  /** Arguments of the `new` that makes version 1; null to make none. */
  newArgs?: string[] | null;
}

export async function scenario(
  runs: number,
  options: Parameters<typeof createProductionFixture>[0] extends infer O ? Partial<O> : never = {},
  steps: ScenarioSteps = {},
): Promise<Scenario> {
  const database = await createTestDatabase();
  const fixture = await createProductionFixture({ runs, ...options });
  const env = { DATABASE_URL: database.url, ...fixture.env };
  const started: CliProcess[] = [];
  cleanups.push(async () => {
    for (const p of started) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await killJobsUnder(fixture.dir);
    await database.drop();
    await rm(fixture.dir, { recursive: true, force: true });
  });
  const s: Scenario = {
    database,
    fixture,
    env,
    cli: (args) => runCli(args, { env, cwd: fixture.dir }),
    start: (args, extraEnv = {}) => {
      const p = startCli(args, { env: { ...env, ...extraEnv }, cwd: fixture.dir });
      started.push(p);
      return p;
    },
  };
  await steps.prepare?.(fixture);
  expect((await s.cli(['datasets', 'import', fixture.catalogue])).code).toBe(0);
  const newArgs = steps.newArgs === undefined ? ['new', '--production', 'alcapana', '--tag', 'v1'] : steps.newArgs;
  if (newArgs) {
    const made = await s.cli(newArgs);
    expect(made.code, made.stderr).toBe(0);
  }
  return s;
}

export const RUN = ['run', '--production', 'alcapana', '--plain', '--pause', '1'];

/** Job wrapper processes (and their groups) whose command line names files under dir. */
export async function jobPidsUnder(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('rp-job-wrapper') && cmdline.includes(dir)) pids.push(Number(entry));
  }
  return pids;
}

export async function killJobsUnder(dir: string): Promise<void> {
  for (const pid of await jobPidsUnder(dir)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
}

export async function until(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function sessionOf(s: Scenario, pid: number): Promise<string | undefined> {
  const row = await s.database.handle.db.selectFrom('sessions').select('id').where('pid', '=', pid).executeTakeFirst();
  return row?.id;
}

export async function heldBy(s: Scenario, sessionId: string) {
  return s.database.handle.db
    .selectFrom('production_runs')
    .select(['run_number', 'status', 'job_id', 'staged_path', 'attempts'])
    .where('session_id', '=', sessionId)
    .orderBy('run_number')
    .execute();
}

export async function statusCounts(s: Scenario, type = 'alcapana') {
  const rows = await sql<{ status: string; n: number }>`
    SELECT pr.status, count(*)::int AS n FROM production_runs pr JOIN productions p ON p.id = pr.production_id
     WHERE p.type = ${type} GROUP BY 1`.execute(s.database.handle.db);
  return Object.fromEntries(rows.rows.map((r) => [r.status, r.n]));
}

export async function finishedEventsPerRun(s: Scenario): Promise<Map<number, number>> {
  const rows = await sql<{ run_number: number; n: number }>`
    SELECT pr.run_number, (SELECT count(*) FROM events e WHERE e.production_id = pr.production_id AND e.run_number = pr.run_number AND e.to_status = 'finished')::int AS n
      FROM production_runs pr JOIN productions p ON p.id = pr.production_id WHERE p.type = 'alcapana'`.execute(s.database.handle.db);
  return new Map(rows.rows.map((r) => [r.run_number, r.n]));
}

