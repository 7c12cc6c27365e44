import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freeLocalPort } from '../../src/db/embedded.js';
import { createProductionFixture, runCli, startCli } from '../helpers/cli.js';

/**
 * Ctrl-C while the database is gone: the jobs are still cancelled, the message
 * says the lease will return the runs, and once the database is back the
 * lease expiry does return them. Uses an embedded server of its own, so that
 * stopping it touches no other test.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

async function wrapperPidsUnder(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes('rp-job-wrapper') || !cmdline.includes(dir)) continue;
    // Only the wrapper itself, which leads its process group; its short-lived forks share its command line.
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    if (pgrp === Number(entry)) pids.push(pgrp);
  }
  return pids;
}

describe('abort without a database', () => {
  it('cancels the jobs, says the lease will return the runs, and the lease does', async () => {
    const home = await mkdtemp(join(tmpdir(), 'rp-offline-'));
    const fixture = await createProductionFixture({ runs: 4, firstRun: 150_000 });
    const env = { RUN_PRODUCTION_HOME: home, RUN_PRODUCTION_PGPORT: String(await freeLocalPort()), DATABASE_URL: '', ...fixture.env };
    const cli = (args: string[]) => runCli(args, { env, cwd: fixture.dir });
    cleanups.push(async () => {
      await cli(['db', 'stop']);
      for (const pid of await wrapperPidsUnder(fixture.dir)) process.kill(-pid, 'SIGKILL');
      await rm(home, { recursive: true, force: true });
      await rm(fixture.dir, { recursive: true, force: true });
    });
    expect((await cli(['datasets', 'import', fixture.catalogue])).code).toBe(0);
    expect((await cli(['new', '--production', 'alcapana', '--tag', 'offline'])).code).toBe(0);

    await writeFile(fixture.holdFile, '');
    const session = startCli(['run', '--production', 'alcapana', '--plain', '--pause', '1', '--nproc', '2', '--nprep', '0', '--lease', '3'], { env, cwd: fixture.dir });
    cleanups.push(async () => {
      if (session.child.exitCode === null) session.child.kill('SIGKILL');
    });
    await session.waitFor(/Submitting run: \d+[\s\S]*Submitting run: \d+/);
    let jobs: number[] = [];
    const deadline = Date.now() + 30_000;
    while ((jobs = await wrapperPidsUnder(fixture.dir)).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(jobs).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 1500)); // let the submissions be recorded

    expect((await cli(['db', 'stop'])).stdout).toMatch(/stopped/);
    session.child.kill('SIGINT');
    const result = await session.done;
    expect(result.code).toBe(130);
    expect(result.stdout.match(/Cancelling job local:/g)).toHaveLength(2);
    expect(result.stdout).toMatch(/The database cannot be reached: the jobs were cancelled, and the runs of session \w+ \(.*\) return to new when its lease expires \(3s\)/);
    expect(await wrapperPidsUnder(fixture.dir)).toEqual([]);
    for (const pid of jobs) expect(existsSync(`/proc/${pid}`)).toBe(false);

    // The database comes back; after the lease, a reaper returns the runs.
    expect((await cli(['db', 'migrate'])).code).toBe(0);
    await new Promise((r) => setTimeout(r, 3500));
    const reaped = await cli(['sessions', '--reap']);
    expect(reaped.stdout).toMatch(/Reaped session \w+ .*returned runs \[150000, 150001\]/);
    const status = JSON.parse((await cli(['status', '--production', 'alcapana', '--json'])).stdout);
    expect(status.counts.new).toBe(4);
    expect(status.total).toBe(4);
    await rm(fixture.holdFile);
  });
});
