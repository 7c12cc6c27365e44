import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, SQL_DIR } from '../../src/db/migrate.js';
import { freePort } from '../setup/global-database.js';
import { createProductionFixture, runCli, type ProductionFixture } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { seedProduction } from '../helpers/seed.js';

let database: TestDatabase;
let fixture: ProductionFixture;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  database = await createTestDatabase();
  fixture = await createProductionFixture({ runs: 12 });
  env = { DATABASE_URL: database.url, ...fixture.env };
});
afterAll(async () => {
  await database?.drop();
  await rm(fixture.dir, { recursive: true, force: true });
});

const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => runCli(args, { env: { ...env, ...extra }, cwd: fixture.dir });

describe('the command line', () => {
  it('lists every command with one line each', async () => {
    const result = await cli(['--help']);
    expect(result.code).toBe(0);
    for (const command of ['run', 'new', 'datasets', 'productions', 'status', 'sessions', 'db', 'demo']) {
      expect(result.stdout).toMatch(new RegExp(`^  ${command}\\b.*\\S`, 'm'));
    }
  });

  it('exits 64 with the usage line on a usage error', async () => {
    const result = await cli(['status']);
    expect(result.code).toBe(64);
    expect(result.stderr).toMatch(/required option '--production <type>'/);
    expect(result.stderr).toMatch(/Usage: run-production status/);
    const bad = await cli(['run', '--production', 'alcapana', '--nproc', 'many']);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toMatch(/--nproc/);
  });

  it('names host and port of an unreachable database within 10 s and exits 2', async () => {
    const port = await freePort();
    const started = Date.now();
    // In DATABASE_URL: a password on the command line (--database) is refused before anything is tried.
    const result = await cli(['status', '--production', 'alcapana'], { DATABASE_URL: `postgres://u:secret@127.0.0.1:${port}/db` });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toContain(`127.0.0.1:${port}`);
    expect(result.stderr).not.toContain('secret');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('datasets import', () => {
  it('imports, is a no-op on identical rows, refuses changed rows unless --update', async () => {
    const first = await cli(['datasets', 'import', fixture.catalogue]);
    expect(first.stderr).toBe('');
    expect(first.stdout).toMatch(/12 new, 0 updated, 0 unchanged/);
    const again = await cli(['datasets', 'import', fixture.catalogue]);
    expect(again.stdout).toMatch(/0 new, 0 updated, 12 unchanged/);
    const text = await readFile(fixture.catalogue, 'utf8');
    const changed = join(fixture.dir, 'changed.csv');
    await writeFile(changed, text.replace('5003,SiR2,gold', '5003,SiR2,silver') + '9999,SiR2,gold,10\n');
    const refused = await cli(['datasets', 'import', changed]);
    expect(refused.code).toBe(65);
    expect(refused.stderr).toMatch(/line 5: run 5003 \(quality gold → silver\)/);
    expect(refused.stderr).toMatch(/--update/);
    const rows = await database.handle.db.selectFrom('runs').select(['run_number', 'quality']).where('run_number', 'in', [5003, 9999]).execute();
    expect(rows).toEqual([{ run_number: 5003, quality: 'gold' }]);
    const updated = await cli(['datasets', 'import', changed, '--update']);
    expect(updated.stdout).toMatch(/1 new, 1 updated/);
    await database.handle.db.deleteFrom('runs').where('run_number', '=', 9999).execute();
    await cli(['datasets', 'import', fixture.catalogue, '--update']);
  });

  it('names the line and field of a bad CSV line and imports nothing', async () => {
    const bad = join(fixture.dir, 'bad.csv');
    await writeFile(bad, 'run,dataset,quality,size_bytes\n7001,SiR2,gold,100\n7002,SiR2,gold,12x\n');
    const result = await cli(['datasets', 'import', bad]);
    expect(result.code).toBe(65);
    expect(result.stderr).toMatch(/bad\.csv line 3, field size_bytes: expected a whole number of bytes, got "12x"/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    const rows = await database.handle.db.selectFrom('runs').select('run_number').where('run_number', '=', 7001).execute();
    expect(rows).toHaveLength(0);
  });
});

describe('new, productions list and status', () => {
  it('creates the next version, freezes the config, and reports counts per status and dataset', async () => {
    const created = await cli(['new', '--production', 'alcapana', '--tag', 'v5-r1', '--datasets', 'SiR2,Al50b']);
    expect(created.stderr).toBe('');
    expect(created.stdout).toMatch(/^INFO: Starting new production, version 1$/m);
    const second = await cli(['new', '--production', 'alcapana', '--tag', 'v5-r2']);
    expect(second.stdout).toMatch(/Starting new production, version 2/);
    const status = await cli(['status', '--production', 'alcapana', '--version', '1', '--json']);
    const parsed = JSON.parse(status.stdout);
    expect(parsed.production).toEqual({ type: 'alcapana', version: 1, tag: 'v5-r1', status: 'active' });
    expect(parsed.total).toBe(8);
    expect(parsed.counts).toEqual({ new: 8, claimed: 0, downloading: 0, staged: 0, submitted: 0, running: 0, finished: 0, failed: 0 });
    expect(Object.keys(parsed.datasets).sort()).toEqual(['Al50b', 'SiR2']);
    expect(parsed.datasets.SiR2.new).toBe(4);
    const frozen = await database.handle.db.selectFrom('productions').select('config').where('version', '=', 1).where('type', '=', 'alcapana').executeTakeFirstOrThrow();
    expect((frozen.config as { job: { script: string } }).job.script).toBe(join(fixture.dir, 'job.sh'));
    const list = await cli(['productions', 'list', '--json']);
    expect(JSON.parse(list.stdout).map((p: { version: number }) => p.version)).toEqual([1, 2]);
    const child = await cli(['new', '--production', 'rootana', '--tag', 'ra-1', '--from-version', '1']);
    expect(child.stdout).toMatch(/Starting new production, version 1/);
    expect(child.stdout).toMatch(/has 8 runs/);
  });

  it('says which versions exist for an unknown type or version', async () => {
    const type = await cli(['status', '--production', 'nosuch']);
    expect(type.code).toBe(64);
    expect(type.stderr).toMatch(/no production of type "nosuch"/);
    const version = await cli(['status', '--production', 'alcapana', '--version', '9']);
    expect(version.code).toBe(64);
    expect(version.stderr).toMatch(/no alcapana production version 9; versions: 1, 2/);
    const config = await cli(['new', '--production', 'nosuch', '--tag', 't']);
    expect(config.code).toBe(64);
    expect(config.stderr).toMatch(/has no production type "nosuch"; it defines: alcapana, rootana/);
  });

  it('names the path of a bad config field and an unknown placeholder, and creates nothing', async () => {
    const original = await readFile(fixture.configFile, 'utf8');
    const config = JSON.parse(original);
    const badFile = join(fixture.dir, 'bad-config.json');
    config.types.alcapana.job.backend = 'slurmm';
    await writeFile(badFile, JSON.stringify(config));
    const bad = await cli(['new', '--production', 'alcapana', '--tag', 't', '--config', badFile]);
    expect(bad.code).toBe(65);
    expect(bad.stderr).toMatch(/bad-config\.json: types\.alcapana\.job\.backend: expected one of local, slurm, sge, htcondor, got "slurmm"/);
    config.types.alcapana.job.backend = 'local';
    config.types.alcapana.outputs.tree = '{dataDir}/tree/tree{runn:05d}.root';
    await writeFile(badFile, JSON.stringify(config));
    const placeholder = await cli(['new', '--production', 'alcapana', '--tag', 't', '--config', badFile]);
    expect(placeholder.code).toBe(65);
    expect(placeholder.stderr).toMatch(/types\.alcapana\.outputs\.tree: unknown placeholder \{runn:05d\}/);
    await writeFile(badFile, '{\n  "types": {\n    "a": }\n}');
    const json = await cli(['new', '--production', 'alcapana', '--tag', 't', '--config', badFile]);
    expect(json.code).toBe(65);
    expect(json.stderr).toMatch(/not valid JSON at line 3, column 10: expected a value/);
    const versions = await database.handle.db.selectFrom('productions').select('version').where('type', '=', 'alcapana').execute();
    expect(versions).toHaveLength(2);
  });
});

describe('migrations', () => {
  it('refuses a changed applied migration and a database migrated by a newer version', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rp-sql-'));
    await cp(SQL_DIR, dir, { recursive: true });
    const other = await createTestDatabase({ migrated: false });
    try {
      await migrate(other.handle.pool, { dir: dir + '/' });
      await writeFile(join(dir, '001_foundation.sql'), (await readFile(join(dir, '001_foundation.sql'), 'utf8')) + '\n-- edited\n');
      await expect(migrate(other.handle.pool, { dir: dir + '/' })).rejects.toThrow(/001_foundation\.sql was changed after it was applied.*new numbered migration/);
      await other.handle.pool.query(`INSERT INTO schema_migrations (version, name, checksum, applied_by) VALUES (999, 'future', 'x', 'test')`);
      const result = await runCli(['db', 'migrate'], { env: { DATABASE_URL: other.url } });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/migrated by a newer run-production \(it has migration 999_future/);
    } finally {
      await other.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('claims across OS processes', () => {
  it('4 processes claim 10,000 runs, each exactly once', async () => {
    const { productionId, runs } = await seedProduction(database.handle.db, { runs: 10_000, firstRun: 1_000_000 });
    const worker = new URL('../helpers/claim-worker.mjs', import.meta.url).pathname;
    const outputs = await Promise.all(
      Array.from({ length: 4 }, () => promisify(execFile)(process.execPath, [worker, database.url, String(productionId), '50'], { maxBuffer: 10 * 1024 * 1024 })),
    );
    const all = outputs.flatMap((o) => JSON.parse(o.stdout) as number[]);
    expect(all).toHaveLength(runs.length);
    expect(new Set(all).size).toBe(runs.length);
    expect(outputs.every((o) => (JSON.parse(o.stdout) as number[]).length > 0)).toBe(true);
  });
});

describe('the embedded server', () => {
  it('two commands starting it at the same moment both succeed and share it', async () => {
    const home = await mkdtemp(join(tmpdir(), 'rp-home-'));
    const embeddedEnv = { RUN_PRODUCTION_HOME: home, RUN_PRODUCTION_PGPORT: String(await freePort()), DATABASE_URL: '' };
    try {
      const [a, b] = await Promise.all([runCli(['db', 'migrate'], { env: embeddedEnv }), runCli(['db', 'migrate'], { env: embeddedEnv })]);
      expect([a.code, b.code, a.stderr, b.stderr]).toEqual([0, 0, '', '']);
      const status = JSON.parse((await runCli(['db', 'status', '--json'], { env: embeddedEnv })).stdout);
      expect(status).toMatchObject({ kind: 'embedded', answers: true, schemaVersion: expect.any(Number), pending: 0 });
      expect(status.url).not.toMatch(/:[^:@/]+@/.source.replace('[^:@/]+', '(?!\\*\\*\\*)[^:@/]+'));
      const password = (await readFile(join(home, 'pg.password'), 'utf8')).trim();
      expect(status.url).not.toContain(password);
      const { mode } = await import('node:fs/promises').then((fs) => fs.stat(join(home, 'pg.password')));
      expect(mode & 0o077).toBe(0);
      const stop = await runCli(['db', 'stop'], { env: embeddedEnv });
      expect(stop.stdout).toMatch(/stopped/);
      const after = JSON.parse((await runCli(['db', 'status', '--json'], { env: embeddedEnv })).stdout);
      expect(after.answers).toBe(false);
    } finally {
      await runCli(['db', 'stop'], { env: embeddedEnv });
      await rm(home, { recursive: true, force: true });
    }
  });
});
