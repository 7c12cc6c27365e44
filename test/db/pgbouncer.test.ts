/**
 * run-production behind a real PgBouncer in transaction pooling mode with a
 * pool (4 server connections) much smaller than the number of sessions: the
 * way a team may put a pooler in front of its shared database. Real CLI
 * processes, real PgBouncer, real PostgreSQL.
 *
 * Through such a pooler each transaction (or statement outside one) may run
 * on another server connection, so anything that keeps state on a server
 * connection between transactions breaks. The migration runner once took a
 * session-level advisory lock: the lock stayed with one server connection, the
 * unlock went to another, and sessions hung for ever at start.
 *
 * With CI=true a missing pgbouncer fails these tests instead of skipping them.
 */
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { openDatabase } from '../../src/db/connection.js';
import { migrate, readMigrationFiles, SQL_DIR } from '../../src/db/migrate.js';
import { PREPARE_ENV } from '../../src/db/prepared.js';
import { createProductionFixture, runCli, startCli, type CliProcess, type CliResult } from '../helpers/cli.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { pgbouncerMissing, startPgBouncer, type PgBouncerServer } from '../helpers/pgbouncer.js';

const missing = pgbouncerMissing();
if (missing && !process.env.CI) console.warn(`Skipping the PgBouncer tests: ${missing}.`);

const POOL_SIZE = 4;

describe.skipIf(missing !== null && !process.env.CI)('behind PgBouncer in transaction mode, pool of 4', () => {
  let bouncer: PgBouncerServer;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    bouncer = await startPgBouncer({ serverUrl: inject('adminDatabaseUrl'), poolSize: POOL_SIZE, maxClientConn: 1000 });
  });

  afterAll(async () => {
    await bouncer?.stop();
  });

  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
  });

  /** A fresh database that has never been migrated, and its URL through the pooler. */
  async function unmigratedDatabase(): Promise<{ database: TestDatabase; pooledUrl: string }> {
    const database = await createTestDatabase({ migrated: false });
    cleanups.push(() => database.drop());
    return { database, pooledUrl: bouncer.urlFor(database.url) };
  }

  /**
   * Waits for every process; past the deadline kills them and fails with what
   * each stuck one printed last and what the server connections were waiting on.
   */
  async function allExit(processes: CliProcess[], database: TestDatabase, timeoutMs: number): Promise<CliResult[]> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await Promise.race([Promise.all(processes.map((p) => p.done)), deadline]);
    clearTimeout(timer);
    if (outcome !== 'timeout') return outcome;
    const stuck = processes.filter((p) => p.child.exitCode === null && p.child.signalCode === null);
    const waits = await sql<{ state: string; wait: string; query: string }>`
      SELECT state, coalesce(wait_event_type || '/' || wait_event, '-') AS wait, left(query, 80) AS query FROM pg_stat_activity
       WHERE datname = current_database() AND pid <> pg_backend_pid()`
      .execute(database.handle.db)
      .then((r) => r.rows.map((row) => `${row.state} ${row.wait} ${row.query}`).join('\n'))
      .catch((error: Error) => `(pg_stat_activity: ${error.message})`);
    const pools = await bouncer.admin('SHOW POOLS').then((rows) => JSON.stringify(rows), (error: Error) => error.message);
    for (const p of stuck) p.child.kill('SIGKILL');
    const last = stuck
      .slice(0, 3)
      .map((p) => `pid ${p.child.pid}: ${p.output().stdout.trim().split('\n').slice(-3).join(' | ')} ${p.output().stderr.trim().split('\n').slice(-3).join(' | ')}`)
      .join('\n');
    throw new Error(
      `${stuck.length} of ${processes.length} processes still running after ${timeoutMs / 1000} s:\n${last}\n` +
        `server connections of the database:\n${waits}\nPgBouncer pools: ${pools}`,
    );
  }

  /** Advisory locks anybody holds in this database: a leaked session-level lock would stay here. */
  async function advisoryLocks(database: TestDatabase): Promise<number> {
    const result = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
       WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()`.execute(database.handle.db);
    return result.rows[0]!.n;
  }

  /** Our database's pool in PgBouncer: its mode and how many server connections it has. */
  async function poolOf(database: TestDatabase): Promise<{ mode: string; serverConnections: number }> {
    const name = new URL(database.url).pathname.slice(1);
    const rows = await bouncer.admin<Record<string, string | number>>('SHOW POOLS');
    const pool = rows.find((row) => row.database === name);
    if (!pool) throw new Error(`PgBouncer has no pool for ${name}: ${JSON.stringify(rows)}`);
    const servers = ['sv_active', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login'].reduce((sum, key) => sum + Number(pool[key] ?? 0), 0);
    return { mode: String(pool.pool_mode), serverConnections: servers };
  }

  it('16 `db migrate` racing an unmigrated database all finish, each file applied once, no advisory lock left held', async () => {
    const { database, pooledUrl } = await unmigratedDatabase();
    const env = { DATABASE_URL: pooledUrl, [PREPARE_ENV]: 'off' };
    const started = Date.now();
    const processes = Array.from({ length: 16 }, () => startCli(['db', 'migrate'], { env }));
    cleanups.push(async () => {
      for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    });
    const results = await allExit(processes, database, 60_000);
    const seconds = (Date.now() - started) / 1000;

    for (const result of results) expect(result.code, result.stderr).toBe(0);
    // Between them the processes applied every file exactly once; the others found nothing to do.
    const files = (await readMigrationFiles()).map((f) => f.file);
    const appliedByProcesses = results.flatMap((r) => /^Applied (.+); schema version \d+\.$/m.exec(r.stdout)?.[1]!.split(', ') ?? []);
    expect(appliedByProcesses.sort()).toEqual([...files].sort());
    for (const result of results) expect(result.stdout).toMatch(/^(Applied .+|Schema is up to date \(version \d+\))/m);

    const ledger = await sql<{ version: number; n: number }>`
      SELECT version, count(*)::int AS n FROM schema_migrations GROUP BY version ORDER BY version`.execute(database.handle.db);
    const versions = (await readMigrationFiles()).map((f) => f.version);
    expect(ledger.rows).toEqual(versions.map((version) => ({ version, n: 1 })));

    // The pooler still has the server connections that ran the migrations (idle, not closed),
    // so a session-level lock left on one of them would still be counted here.
    const pool = await poolOf(database);
    expect(pool.mode).toBe('transaction');
    expect(pool.serverConnections).toBeGreaterThan(0);
    expect(pool.serverConnections).toBeLessThanOrEqual(POOL_SIZE);
    expect(await advisoryLocks(database)).toBe(0);
    console.log(`16 db migrate through a pool of ${POOL_SIZE}: ${seconds.toFixed(1)} s`);
  });

  it('a failing migration through the pooler is rolled back and leaves no lock behind: the next migrator proceeds', async () => {
    const { database, pooledUrl } = await unmigratedDatabase();
    const files = await readMigrationFiles();
    const dir = await mkdtemp(join(tmpdir(), 'rp-pgbouncer-sql-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    for (const file of files) await copyFile(join(SQL_DIR, file.file), join(dir, file.file));
    const broken = `${String(files.at(-1)!.version + 1).padStart(3, '0')}_broken.sql`;
    await writeFile(join(dir, broken), 'CREATE TABLE pgbouncer_probe (id integer);\nSELECT no_such_function();\n');
    // Two pools, as two sessions would have: small, so they share the pooler's connections with nobody else.
    const first = openDatabase(pooledUrl, { max: 2 });
    const second = openDatabase(pooledUrl, { max: 2 });
    cleanups.push(async () => {
      await first.close();
      await second.close();
    });

    await expect(migrate(first.pool, { dir: dir + '/' })).rejects.toThrow(new RegExp(`Migration sql/${broken} failed and was rolled back: .*no_such_function`));
    // The files before it were each committed on their own; the broken one left nothing.
    const ledger = await sql<{ version: number }>`SELECT version FROM schema_migrations ORDER BY version`.execute(database.handle.db);
    expect(ledger.rows.map((r) => r.version)).toEqual(files.map((f) => f.version));
    const probe = await sql<{ present: boolean }>`SELECT to_regclass('pgbouncer_probe') IS NOT NULL AS present`.execute(database.handle.db);
    expect(probe.rows[0]!.present).toBe(false);
    expect(await advisoryLocks(database)).toBe(0);

    // The other session's migrator gets the lock at once (a leaked lock would make this wait for ever).
    const result = await Promise.race([
      migrate(second.pool),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('second migrator still waiting after 10 s')), 10_000)),
    ]);
    expect(result).toEqual({ applied: [], version: files.at(-1)!.version });
  });

  it('20 sessions on 300 runs through the pooler: all exit 0, every run finished exactly once', { timeout: 180_000 }, async () => {
    const { database, pooledUrl } = await unmigratedDatabase();
    const fixture = await createProductionFixture({ runs: 300 });
    cleanups.push(() => rm(fixture.dir, { recursive: true, force: true }));
    cleanups.push(() => killJobsUnder(fixture.dir));
    const env = { DATABASE_URL: pooledUrl, [PREPARE_ENV]: 'off', ...fixture.env };
    const cli = (args: string[]) => runCli(args, { env, cwd: fixture.dir });

    // The first command applies the migrations, through the pooler too.
    const imported = await cli(['datasets', 'import', fixture.catalogue]);
    expect(imported.code, imported.stderr).toBe(0);
    const created = await cli(['new', '--production', 'alcapana', '--tag', 'v1']);
    expect(created.code, created.stderr).toBe(0);

    // All at once: 20 migrators taking the migration lock, then 20 sessions claiming, moving
    // and heartbeating through 4 server connections.
    const started = Date.now();
    const args = ['run', '--production', 'alcapana', '--plain', '--pause', '1', '--until-done', '--nproc', '2', '--nprep', '1', '--lease', '30'];
    const sessions = Array.from({ length: 20 }, () => startCli(args, { env, cwd: fixture.dir }));
    cleanups.push(async () => {
      for (const p of sessions) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    });
    const results = await allExit(sessions, database, 120_000);
    const seconds = (Date.now() - started) / 1000;
    for (const result of results) expect(result.code, `${result.stdout.slice(-2000)}\n${result.stderr}`).toBe(0);

    const db = database.handle.db;
    const production = await db.selectFrom('productions').select('id').where('type', '=', 'alcapana').executeTakeFirstOrThrow();
    const runs = await db
      .selectFrom('production_runs')
      .select(['run_number', 'status', 'attempts', 'session_id'])
      .where('production_id', '=', production.id)
      .orderBy('run_number')
      .execute();
    const expected = Array.from({ length: 300 }, (_, i) => 5000 + i);
    expect(runs.map((r) => r.run_number)).toEqual(expected);
    expect(runs.filter((r) => r.status !== 'finished')).toEqual([]);
    expect(runs.filter((r) => r.attempts !== 1)).toEqual([]);

    // Each run's job started exactly once (the job script logs every start of its own) ...
    const starts = new Map<number, number>();
    for (const line of (await readFile(fixture.executionsLog, 'utf8')).trim().split('\n')) {
      const run = Number(line.split(' ')[0]);
      starts.set(run, (starts.get(run) ?? 0) + 1);
    }
    expect([...starts.keys()].sort((a, b) => a - b)).toEqual(expected);
    expect([...starts.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    // ... and was recorded finished exactly once.
    const finishedEvents = await sql<{ run_number: number; n: number }>`
      SELECT run_number, count(*)::int AS n FROM events
       WHERE production_id = ${production.id} AND to_status = 'finished' GROUP BY run_number ORDER BY run_number`.execute(db);
    expect(finishedEvents.rows).toEqual(expected.map((run_number) => ({ run_number, n: 1 })));

    const ledger = await sql<{ version: number; n: number }>`
      SELECT version, count(*)::int AS n FROM schema_migrations GROUP BY version ORDER BY version`.execute(db);
    expect(ledger.rows).toEqual((await readMigrationFiles()).map((f) => ({ version: f.version, n: 1 })));

    const pool = await poolOf(database);
    expect(pool.mode).toBe('transaction');
    expect(pool.serverConnections).toBeLessThanOrEqual(POOL_SIZE);
    expect(await advisoryLocks(database)).toBe(0);
    console.log(`20 sessions, 300 runs through a pool of ${POOL_SIZE}: ${seconds.toFixed(1)} s`);
  });
});

/** Kills the process groups of job wrappers whose command line names files under dir (a failed test's leftovers). */
async function killJobsUnder(dir: string): Promise<void> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes('rp-job-wrapper') || !cmdline.includes(dir)) continue;
    try {
      process.kill(-Number(entry), 'SIGKILL');
    } catch {
      // gone already
    }
  }
}
