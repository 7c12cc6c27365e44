import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freeLocalPort } from '../../src/db/embedded.js';
import { runCli } from '../helpers/cli.js';

/** `npm start` is `run-production demo`: on a fresh home, with its own embedded PostgreSQL. */
describe('the demo', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  afterAll(async () => {
    if (env) await runCli(['db', 'stop'], { env });
    if (home) await rm(home, { recursive: true, force: true });
  });

  it('runs 30 runs to completion with one retry, and starts the next version when run again', async () => {
    home = await mkdtemp(join(tmpdir(), 'rp-demo-'));
    env = { RUN_PRODUCTION_HOME: home, RUN_PRODUCTION_PGPORT: String(await freeLocalPort()), DATABASE_URL: '' };
    const first = await runCli(['demo', '--plain', '--pause', '1'], { env, cwd: home });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/INFO: Starting new production, version 1/);
    expect(first.stdout).toMatch(/Retrying run: 3105 \(exit code 3, attempt 1\/3 failed\)/);
    expect(first.stdout).toMatch(/Finished run: 3105/);
    expect(first.stdout).toMatch(/alcapana v1: 30 runs\n.*F finished 30 .*X failed 0/);
    const demo = join(home, 'demo');
    expect((await readdir(join(demo, 'data', 'tree', 'v1'))).length).toBe(30);
    expect(existsSync(join(demo, 'data', 'log', 'v1', 'alcapana.run03105.attempt1.err'))).toBe(true);
    const staged = await readdir(join(demo, 'staging', 'alcapana', 'v1'));
    expect(staged).toEqual([]);

    const second = await runCli(['demo', '--plain', '--pause', '1'], { env, cwd: home });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/INFO: Starting new production, version 2/);
    expect(second.stdout).toMatch(/Catalogue .*: 0 new, 30 unchanged/);
    expect(second.stdout).toMatch(/alcapana v2: 30 runs/);
  });
});
