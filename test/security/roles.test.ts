import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProductionFixture, runCli, startCli, type CliProcess, type ProductionFixture } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { killJobsUnder, until } from '../helpers/scenario.js';

/**
 * Security between shifters, tried as a hostile shifter would: real login roles on the real server,
 * each given one of the group roles that sql/009_roles.sql makes, the CLI run under each login, and
 * raw SQL from the hostile login's own connection. Every refusal comes from the database.
 */

const suffix = randomBytes(3).toString('hex');
const login = (name: string) => `${name}_${suffix}`;
const LOGINS = {
  alice: { name: login('alice'), role: 'run_production_shifter' },
  bob: { name: login('bob'), role: 'run_production_shifter' },
  carol: { name: login('carol'), role: 'run_production_coordinator' },
  rita: { name: login('rita'), role: 'run_production_reader' },
} as const;
type Who = keyof typeof LOGINS;
const PASSWORD = `pw-${suffix}`;

let database: TestDatabase;
let fixture: ProductionFixture;
const clients: pg.Client[] = [];
const started: CliProcess[] = [];

function urlOf(who: Who): string {
  const url = new URL(database.url);
  url.username = LOGINS[who].name;
  url.password = PASSWORD;
  return url.toString();
}

const env = (who: Who, extra: NodeJS.ProcessEnv = {}) => ({ ...fixture.env, DATABASE_URL: urlOf(who), ...extra });
const cli = (who: Who, args: string[], extra: NodeJS.ProcessEnv = {}) => runCli(args, { env: env(who, extra), cwd: fixture.dir });

/** A raw connection as that login, for the attempts a shifter could make by hand in psql. */
async function connect(who: Who): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: urlOf(who) });
  await client.connect();
  clients.push(client);
  return client;
}

/** The statement is refused by the database: insufficient privilege (42501). */
async function refused(client: pg.Client, text: string, values: unknown[] = []): Promise<string> {
  const error = await client.query(text, values).then(
    () => null,
    (e: pg.DatabaseError) => e,
  );
  expect(error, `${text} was not refused`).not.toBeNull();
  expect(error!.code, error!.message).toBe('42501');
  return error!.message;
}

const RUN = ['run', '--production', 'alcapana', '--plain', '--pause', '1'];

beforeAll(async () => {
  database = await createTestDatabase();
  for (const { name, role } of Object.values(LOGINS)) {
    await sql`${sql.raw(`CREATE ROLE ${name} LOGIN PASSWORD '${PASSWORD}' IN ROLE ${role}`)}`.execute(database.handle.db);
  }
  fixture = await createProductionFixture({ runs: 6, firstRun: 7000 });
});

afterAll(async () => {
  for (const p of started) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await killJobsUnder(fixture.dir);
  for (const client of clients) await client.end().catch(() => undefined);
  await database.drop();
  for (const { name } of Object.values(LOGINS)) await database.handle.pool.query(`DROP ROLE IF EXISTS ${name}`).catch(() => undefined);
  await rm(fixture.dir, { recursive: true, force: true });
});

describe('roles in the database', () => {
  it('only a coordinator imports the catalogue and creates a production', async () => {
    const bobImports = await cli('bob', ['datasets', 'import', fixture.catalogue]);
    expect(bobImports.code).toBe(77);
    expect(bobImports.stderr).toMatch(new RegExp(`datasets import needs the run_production_coordinator role, which the database login ${LOGINS.bob.name} does not have`));
    expect((await cli('carol', ['datasets', 'import', fixture.catalogue])).code).toBe(0);
    const bobCreates = await cli('bob', ['new', '--production', 'alcapana', '--tag', 'v1']);
    expect(bobCreates.code).toBe(77);
    expect((await cli('carol', ['new', '--production', 'alcapana', '--tag', 'v1'])).code).toBe(0);
    const frozen = await database.handle.db.selectFrom('productions').select(['frozen_by', 'config_sha256']).executeTakeFirstOrThrow();
    expect(frozen.frozen_by).toBe(LOGINS.carol.name);
    expect(frozen.config_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('a reader reads but cannot run a session', async () => {
    expect((await cli('rita', ['status', '--production', 'alcapana'])).code).toBe(0);
    const run = await cli('rita', [...RUN, '--until-done']);
    expect(run.code).toBe(77);
    expect(run.stderr).toMatch(/needs the run_production_shifter role/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it("a shifter's session runs as its login, whatever $USER says, and says who froze its config", async () => {
    await writeFile(fixture.holdFile, '');
    const alice = startCli([...RUN, '--lease', '5', '--nproc', '6', '--nprep', '0'], { env: env('alice', { USER: LOGINS.carol.name }), cwd: fixture.dir });
    started.push(alice);
    await alice.waitFor(new RegExp(`Running the config of alcapana v1 frozen by ${LOGINS.carol.name} at `));
    await until(async () => (await database.handle.db.selectFrom('production_runs').select('run_number').where('status', '=', 'running').execute()).length === 6, 'six runs running under alice');
    const logins = await sql<{ login: string }>`SELECT DISTINCT login FROM events WHERE kind = 'transition' AND to_status = 'claimed'`.execute(database.handle.db);
    expect(logins.rows.map((r) => r.login)).toEqual([LOGINS.alice.name]);
    const session = await database.handle.db.selectFrom('sessions').select(['id', 'login', 'user_name']).where('ended_at', 'is', null).executeTakeFirstOrThrow();
    expect(session.login).toBe(LOGINS.alice.name);
  });

  it("a hostile shifter cannot change the frozen config, the event log, or another shifter's runs and sessions", async () => {
    const bob = await connect('bob');
    const aliceSession = (await database.handle.db.selectFrom('sessions').select('id').where('ended_at', 'is', null).executeTakeFirstOrThrow()).id;
    // The config every session runs: refused for bob by the grants, for everybody by the trigger.
    await refused(bob, `UPDATE productions SET config = jsonb_set(config, '{job,script}', '"/tmp/evil.sh"')`);
    const carol = await connect('carol');
    await refused(carol, `UPDATE productions SET config = '{}'::jsonb`);
    // Even the owner (here a superuser, who bypasses every grant) meets the trigger.
    const owner = await database.handle.pool.query(`UPDATE productions SET config = '{}'::jsonb`).then(() => null, (e: pg.DatabaseError) => e);
    expect(owner?.message).toMatch(/frozen definition of alcapana v1 .* cannot be changed/);
    // The event log is append-only, for everybody.
    await refused(bob, 'DELETE FROM events');
    await refused(carol, `UPDATE events SET message = 'nothing happened'`);
    await refused(carol, 'TRUNCATE events');
    // Acting in another's name: the login column is not his to write.
    await refused(bob, `INSERT INTO events (production_id, user_name, kind, message, login) VALUES (NULL, 'x', 'note', 'forged', $1)`, [LOGINS.alice.name]);
    // Alice's live session and its runs are invisible to bob's writes: nothing moves.
    const runs = await bob.query(`UPDATE production_runs SET status = 'new', session_id = NULL, claimed_by = NULL WHERE session_id = $1`, [aliceSession]);
    expect(runs.rowCount).toBe(0);
    const ended = await bob.query(`UPDATE sessions SET ended_at = now(), end_reason = 'bob' WHERE id = $1`, [aliceSession]);
    expect(ended.rowCount).toBe(0);
    // A coordinator's actions.
    expect(await refused(bob, `UPDATE productions SET status = 'closed'`)).toMatch(/needs the run_production_coordinator role/);
    await refused(bob, 'UPDATE productions SET max_running = 1');
    for (const args of [
      ['close', '--production', 'alcapana'],
      ['limits', '--production', 'alcapana', '--max-running', '1'],
      ['retry', '--production', 'alcapana'],
      ['release', '--session', aliceSession, '--force'],
    ]) {
      const result = await cli('bob', args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(77);
      expect(result.stderr).toMatch(/needs the run_production_coordinator role/);
    }
    const held = await database.handle.db.selectFrom('production_runs').select('run_number').where('session_id', '=', aliceSession).execute();
    expect(held).toHaveLength(6);
    // Pausing and resuming are a shifter's.
    expect((await cli('bob', ['pause', '--production', 'alcapana', '--reason', 'beam off'])).code).toBe(0);
    expect((await cli('bob', ['resume', '--production', 'alcapana'])).code).toBe(0);
  });

  it("another shifter's session reaps a dead session and adopts its runs; everything finishes once", async () => {
    const alice = started.at(-1)!;
    alice.child.kill('SIGKILL');
    await alice.done;
    await rm(fixture.holdFile);
    const bob = await cli('bob', [...RUN, '--lease', '5', '--until-done']);
    expect(bob.code, bob.stdout + bob.stderr).toBe(0);
    expect(bob.stdout).toMatch(/Reaped session/);
    const rows = await database.handle.db.selectFrom('production_runs').select('status').execute();
    expect(rows.every((r) => r.status === 'finished')).toBe(true);
    const finishedBy = await sql<{ login: string; n: number }>`
      SELECT login, count(*)::int AS n FROM events WHERE to_status = 'finished' GROUP BY login`.execute(database.handle.db);
    expect(finishedBy.rows).toEqual([{ login: LOGINS.bob.name, n: 6 }]);
  });

  it('a config changed behind the triggers is refused by every session', async () => {
    // Only a superuser can do this (the trigger stops everyone else), and the hash still tells.
    await database.handle.pool.query('ALTER TABLE productions DISABLE TRIGGER productions_frozen');
    await database.handle.pool.query(`UPDATE productions SET config = jsonb_set(config, '{maxAttempts}', '9')`);
    await database.handle.pool.query('ALTER TABLE productions ENABLE TRIGGER productions_frozen');
    const result = await cli('alice', [...RUN, '--until-done']);
    expect(result.code).toBe(65);
    expect(result.stderr).toMatch(/frozen config of alcapana v1 \(frozen by .*\) no longer matches its sha256/);
  });
});
