/**
 * Secrets between shifters (issue 13): what the coordinator knows (DATABASE_URL with its password,
 * PGPASSWORD, the SFTP password, everything in .env, the ssh-agent socket) never reaches a job's
 * environment, a command line or a message. Real CLI processes, a real database, real files.
 * The same for Slurm jobs is in test/grids/slurm.test.ts.
 */
import { chmod, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeUrl, hasPassword, redactUrl, UNPARSEABLE } from '../../src/db/connection.js';
import { freePort } from '../setup/global-database.js';
import { createProductionFixture, runCli, type ProductionFixture } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { killJobsUnder } from '../helpers/scenario.js';

const SECRETS = {
  PGPASSWORD: 'pgpassword-secret-1',
  RUN_PRODUCTION_SFTP_PASSWORD: 'sftp-secret-2',
  SSH_AUTH_SOCK: '/tmp/ssh-agent-secret-3/agent.42',
};
const DOTENV_SECRET = 'dotenv-secret-4';

let database: TestDatabase;
let fixture: ProductionFixture;

beforeAll(async () => {
  database = await createTestDatabase();
  fixture = await createProductionFixture({
    runs: 3,
    typeExtra: { job: { backend: 'local', script: './env-job.sh', environment: ['RP_TEST_ALLOWED', 'RP_TEST_DOTENV_TOKEN', 'RP_TEST_UNSET'] } },
  });
  // The fixture's job, after writing down its whole environment.
  await writeFile(join(fixture.dir, 'env-job.sh'), `#!/bin/bash\nenv > ${JSON.stringify(fixture.dir)}/env-of-run-$RUN.txt\nexec ${JSON.stringify(join(fixture.dir, 'job.sh'))}\n`, { mode: 0o755 });
});
afterAll(async () => {
  await killJobsUnder(fixture.dir).catch(() => undefined);
  await database?.drop();
  await rm(fixture.dir, { recursive: true, force: true });
});

const dotenvPath = () => join(fixture.dir, '.env');
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => runCli(args, { env: { DATABASE_URL: database.url, ...fixture.env, ...env }, cwd: fixture.dir });

describe('the job environment', () => {
  it('holds none of the coordinator\'s secrets, even allow-listed, and the allow-listed variables it asked for', async () => {
    const password = new URL(database.url).password;
    expect(password, 'the test database URL carries a password').not.toBe('');
    await writeFile(dotenvPath(), `RP_TEST_DOTENV_TOKEN=${DOTENV_SECRET}\n`, { mode: 0o600 });
    try {
      const env = { ...SECRETS, RP_TEST_ALLOWED: 'allowed-value', RP_TEST_UNLISTED: 'unlisted-value' };
      expect((await cli(['datasets', 'import', fixture.catalogue], env)).code).toBe(0);
      const made = await cli(['new', '--production', 'alcapana', '--tag', 'v1'], env);
      expect(made.code, made.stderr).toBe(0);
      const run = await cli(['run', '--production', 'alcapana', '--plain', '--pause', '1', '--until-done'], env);
      expect(run.code, run.stdout + run.stderr).toBe(0);
      expect(run.stdout).toMatch(/Finished run: 5002/);
    } finally {
      await rm(dotenvPath(), { force: true });
    }

    const files = (await readdir(fixture.dir)).filter((name) => name.startsWith('env-of-run-')).sort();
    expect(files).toEqual(['env-of-run-5000.txt', 'env-of-run-5001.txt', 'env-of-run-5002.txt']);
    for (const file of files) {
      const text = await readFile(join(fixture.dir, file), 'utf8');
      const names = text.split('\n').map((line) => line.split('=')[0]!);
      for (const name of ['DATABASE_URL', 'PGPASSWORD', 'RUN_PRODUCTION_SFTP_PASSWORD', 'RUN_PRODUCTION_CONFIG', 'SSH_AUTH_SOCK', 'RP_TEST_DOTENV_TOKEN', 'RP_TEST_UNLISTED']) {
        expect(names, `${file} has ${name}`).not.toContain(name);
      }
      for (const value of [password, ...Object.values(SECRETS), DOTENV_SECRET, 'unlisted-value']) expect(text, file).not.toContain(value);
      // The allow-listed variable, the base set and the job's own variables.
      expect(text).toContain('RP_TEST_ALLOWED=allowed-value\n');
      expect(names).toEqual(expect.arrayContaining(['PATH', 'HOME', 'RUN', 'DATASET', 'INPUT', 'ATTEMPT', 'OUTPUT_TREE', 'OUTPUT_OLOG']));
      expect(text).toContain(`PATH=${process.env.PATH}\n`);
    }
  });

  it('refuses at new an allow-list that names a secret', async () => {
    for (const name of ['DATABASE_URL', 'PGPASSWORD', 'RUN_PRODUCTION_SFTP_PASSWORD', 'SSH_AUTH_SOCK']) {
      const configFile = join(fixture.dir, `allow-${name}.json`);
      const config = JSON.parse(await readFile(fixture.configFile, 'utf8'));
      config.types.alcapana.job.environment = ['ROOTSYS', name];
      await writeFile(configFile, JSON.stringify(config));
      const result = await cli(['new', '--production', 'alcapana', '--tag', `bad-${name}`, '--config', configFile]);
      expect(result.code, result.stderr).toBe(65);
      expect(result.stderr).toContain(`types.alcapana.job.environment: ${name} never reaches a job`);
    }
  });
});

describe('.env', () => {
  it('is refused, with its path and the chmod, when group or others can read it', async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      await writeFile(dotenvPath(), `DATABASE_URL=postgres://u:${DOTENV_SECRET}@127.0.0.1:1/db\n`);
      await chmod(dotenvPath(), mode);
      const result = await runCli(['status', '--production', 'alcapana'], { env: { ...fixture.env, DATABASE_URL: database.url }, cwd: fixture.dir });
      expect(result.code).toBe(1);
      expect(result.stderr.trim()).toBe(
        `run-production: refusing to use ${dotenvPath()}: it holds secrets (DATABASE_URL, RUN_PRODUCTION_SFTP_PASSWORD) but group or others have access ` +
          `(mode 0${mode.toString(8)}); protect it with: chmod 600 ${dotenvPath()}`,
      );
      expect(result.stdout).toBe('');
    }
    await chmod(dotenvPath(), 0o600);
    // Mode 0600: read; its DATABASE_URL loses to the environment's, as before.
    const ok = await runCli(['status', '--production', 'alcapana'], { env: { ...fixture.env, DATABASE_URL: database.url }, cwd: fixture.dir });
    expect(ok.code, ok.stderr).toBe(0);
    await rm(dotenvPath(), { force: true });
  });
});

describe('connection strings', () => {
  it('refuses --database with a password (every user sees it in ps), pointing to DATABASE_URL in .env and ~/.pgpass', async () => {
    const port = await freePort();
    for (const url of [`postgres://u:argv-secret@127.0.0.1:${port}/db`, `postgresql://u@127.0.0.1:${port}/db?sslmode=disable&password=argv-secret`]) {
      const result = await runCli(['status', '--production', 'alcapana', '--database', url], { env: fixture.env, cwd: fixture.dir });
      expect(result.code).toBe(64);
      expect(result.stderr).toMatch(/--database: refusing a password on the command line/);
      expect(result.stderr).toMatch(/~\/\.pgpass/);
      expect(result.stderr).toMatch(/DATABASE_URL in \.env \(chmod 600\)/);
      expect(result.stderr).not.toContain('argv-secret');
    }
    // Without a password it is tried (and here nothing answers).
    const bare = await runCli(['status', '--production', 'alcapana', '--database', `postgres://u@127.0.0.1:${port}/db`], { env: fixture.env, cwd: fixture.dir });
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain(`127.0.0.1:${port}`);
  });

  it('never prints a key=value, one-slash or otherwise malformed DATABASE_URL, in errors or in db status', async () => {
    const port = await freePort();
    for (const dsn of [
      `host=127.0.0.1 port=${port} dbname=prod user=u password=kv-secret`,
      `host=127.0.0.1 port=${port} dbname=prod password='kv-secret with spaces'`,
      `postgres:/u:kv-secret@127.0.0.1:${port}/prod`,
      `postgres://u:kv/secret@127.0.0.1:${port}/prod`,
    ]) {
      for (const args of [['db', 'status'], ['db', 'status', '--json'], ['status', '--production', 'alcapana']]) {
        const result = await runCli(args, { env: { ...fixture.env, DATABASE_URL: dsn }, cwd: fixture.dir });
        expect(result.code, `${args.join(' ')} with ${dsn}: ${result.stdout}${result.stderr}`).toBe(64);
        expect(result.stdout + result.stderr).not.toContain('kv-secret');
        expect(result.stdout + result.stderr).not.toContain('secret@');
        expect(result.stdout + result.stderr).toMatch(/DATABASE_URL is (a key=value connection string|not a well-formed postgres:\/\/ URL); run-production needs a URL/);
      }
      const json = await runCli(['db', 'status', '--json'], { env: { ...fixture.env, DATABASE_URL: dsn }, cwd: fixture.dir });
      expect(json.stdout, json.stderr).not.toBe('');
      const status = JSON.parse(json.stdout);
      expect(status).toMatchObject({ kind: 'server', answers: false });
      expect([UNPARSEABLE, `host=127.0.0.1 port=${port} dbname=prod user=u password=***`, `host=127.0.0.1 port=${port} dbname=prod password=***`]).toContain(status.url);
    }
  });

  it('db status shows a URL with its passwords redacted, in the userinfo and in the query', async () => {
    const url = new URL(database.url);
    url.searchParams.set('password', url.password);
    url.searchParams.set('application_name', 'rp-test');
    const result = await runCli(['db', 'status', '--json'], { env: { ...fixture.env, DATABASE_URL: url.toString() }, cwd: fixture.dir });
    expect(result.code, result.stderr).toBe(0);
    const status = JSON.parse(result.stdout);
    expect(status.answers).toBe(true);
    expect(status.url).not.toContain(new URL(database.url).password);
    expect(status.url).toMatch(/^postgres(ql)?:\/\/[^:]+:\*\*\*@.*[?&]password=\*\*\*/);
  });

  it('redacts every form libpq accepts and describes them without throwing', () => {
    expect(redactUrl('postgres://u:pw@h:5433/db?password=pw2&sslmode=require#frag')).toBe('postgres://u:***@h:5433/db?password=***&sslmode=require');
    expect(redactUrl('postgresql://u@h/db')).toBe('postgresql://u@h/db');
    expect(redactUrl("host=h port=5433 dbname=db password='a b\\' c' user=u")).toBe('host=h port=5433 dbname=db password=*** user=u');
    expect(redactUrl('host = h password = pw')).toBe('host=h password=***');
    for (const junk of ['postgres:/u:pw@h/db', 'postgres://u:p/w@h/db', 'postgres://u:p#w@h/db', 'a b c pw', "password='unterminated", '']) {
      expect(redactUrl(junk)).toBe(UNPARSEABLE);
      expect(describeUrl(junk).label).toBe(UNPARSEABLE);
      expect(hasPassword(junk)).toBe(true);
    }
    expect(describeUrl('host=db01 port=6432 dbname=prod password=pw')).toMatchObject({ host: 'db01', port: 6432, label: 'db01:6432/prod' });
    expect(describeUrl('postgres://u:pw@[::1]:5433/prod')).toMatchObject({ host: '::1', port: 5433, database: 'prod' });
    expect(describeUrl('postgres:///prod?host=/var/run/postgresql')).toMatchObject({ host: '/var/run/postgresql', port: 5432, database: 'prod' });
    expect(hasPassword('postgres://u@h/db')).toBe(false);
    expect(hasPassword('postgres://u@h/db?PASSWORD=x')).toBe(true);
    expect(hasPassword('host=h dbname=d')).toBe(false);
  });
});

describe('archive sources', () => {
  it('refuses a password in input.source at new, pointing to ~/.netrc, .env and ssh-agent, without showing it', async () => {
    const configFile = join(fixture.dir, 'sftp-password.json');
    const config = JSON.parse(await readFile(fixture.configFile, 'utf8'));
    config.types.alcapana.input = { source: 'sftp://shifter:src-secret@archive.example.org/midas/run{run:05d}.mid' };
    await writeFile(configFile, JSON.stringify(config));
    const before = await database.handle.db.selectFrom('productions').select('id').execute();
    const result = await cli(['new', '--production', 'alcapana', '--tag', 'sftp-pw', '--config', configFile]);
    expect(result.code).toBe(65);
    expect(result.stderr).toContain('types.alcapana.input.source: a password in the URL is refused');
    expect(result.stderr).toMatch(/~\/\.netrc.*RUN_PRODUCTION_SFTP_PASSWORD in \.env.*ssh-agent/);
    expect(result.stderr).not.toContain('src-secret');
    expect(await database.handle.db.selectFrom('productions').select('id').execute()).toHaveLength(before.length);
    // The user alone is fine.
    config.types.alcapana.input = { source: 'sftp://shifter@archive.example.org/midas/run{run:05d}.mid' };
    await writeFile(configFile, JSON.stringify(config));
    const fine = await cli(['new', '--production', 'alcapana', '--tag', 'sftp-user', '--config', configFile]);
    expect(fine.code, fine.stderr).toBe(0);
  });
});
