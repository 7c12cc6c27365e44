import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, createProductionFixture, runCli, type ProductionFixture } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

/**
 * The real CLI under a pseudo-terminal (util-linux `script`): stdout and stdin
 * are a terminal, so it draws the Ink display and reads keys in raw mode.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

async function setup(runs: number, firstRun: number): Promise<{ database: TestDatabase; fixture: ProductionFixture; env: NodeJS.ProcessEnv }> {
  const database = await createTestDatabase();
  const fixture = await createProductionFixture({ runs, firstRun, jobSleep: 0.5 });
  // CI=false: the CLI shows the live display only where Ink draws live frames (not in CI).
  const env = { ...process.env, DATABASE_URL: database.url, ...fixture.env, TERM: 'xterm-256color', LANG: 'C.UTF-8', CI: 'false' };
  cleanups.push(async () => {
    await database.drop();
    await rm(fixture.dir, { recursive: true, force: true });
  });
  expect((await runCli(['datasets', 'import', fixture.catalogue], { env })).code).toBe(0);
  expect((await runCli(['new', '--production', 'alcapana', '--tag', 'pty'], { env })).code).toBe(0);
  return { database, fixture, env };
}

function underPty(args: string[], env: NodeJS.ProcessEnv, cwd: string) {
  const command = `stty cols 120 rows 40; exec ${[process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' ')}`;
  const child = spawn('script', ['-qfec', command, '/dev/null'], { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  child.stderr.on('data', (d: Buffer) => (screen += d.toString()));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { child, screen: () => screen, done };
}

async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const plain = (text: string) => text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');

describe('the live display in a terminal', () => {
  it('shows runs moving to finished and leaves a summary', async () => {
    const { database, fixture, env } = await setup(6, 110_000);
    const session = underPty(['run', '--production', 'alcapana', '--until-done', '--pause', '1', '--nproc', '3'], env, fixture.dir);
    const code = await session.done;
    const screen = plain(session.screen());
    expect(code, screen).toBe(0);
    expect(screen).toMatch(/alcapana v1 \[pty\]/);
    expect(screen).toMatch(/R running/);
    expect(screen).toMatch(/F finished [1-6]/);
    expect(screen).toMatch(/6\/6 finished, 0 failed/);
    expect(screen).toMatch(/d drain/);
    expect(screen).toMatch(/production done: every run finished or failed/);
    expect(screen).not.toMatch(/Raw mode is not supported|ERROR/);
    const rows = await database.handle.db.selectFrom('production_runs').select('status').execute();
    expect(rows.every((r) => r.status === 'finished')).toBe(true);
  });

  it('Ctrl-C typed in the terminal cancels the jobs and rolls the runs back', async () => {
    const { database, fixture, env } = await setup(8, 120_000);
    await writeFile(fixture.holdFile, '');
    const session = underPty(['run', '--production', 'alcapana', '--pause', '1', '--nproc', '3', '--nprep', '1'], env, fixture.dir);
    await until(async () => (await database.handle.db.selectFrom('production_runs').select('status').where('status', '=', 'running').execute()).length === 3, '3 jobs running');
    const jobs = await database.handle.db.selectFrom('production_runs').select(['run_number', 'job_id']).where('status', '=', 'running').execute();
    await until(() => /R running 3/.test(plain(session.screen())), 'the display shows them');
    session.child.stdin.write('\x03');
    const code = await session.done;
    const screen = plain(session.screen());
    expect(code, screen).toBe(130);
    for (const job of jobs) expect(screen).toContain(`Cancelling job ${job.job_id}`);
    expect(screen).toMatch(/Aborting runs: \[120000, 120001, 120002, 120003\]/);
    for (const job of jobs) {
      const pid = Number(job.job_id!.split(':').at(-1));
      expect(existsSync(`/proc/${pid}`)).toBe(false);
    }
    const rows = await database.handle.db.selectFrom('production_runs').select(['status', 'session_id']).execute();
    expect(rows.every((r) => r.status === 'new' && r.session_id === null)).toBe(true);
    await rm(fixture.holdFile);
  });
});
