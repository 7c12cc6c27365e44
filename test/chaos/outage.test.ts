import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { rootFileProblem } from '../../src/outputs/validate.js';
import { createProductionFixture, runCli, startCli, type CliProcess, type ProductionFixture } from '../helpers/cli.js';
import type { TestDatabase } from '../helpers/database.js';
import { startPrivateServer, startRelay, type PrivateServer, type Relay } from '../helpers/pg-server.js';
import { filesUnder, killJobsUnder, until } from '../helpers/scenario.js';

/**
 * The database goes away under running sessions (issue 12): the real PostgreSQL server, one of
 * this file's own (the test run's shared server must never be stopped), is stopped for longer than
 * the lease and started again. Nobody may reap anybody for that, no live job may be cancelled, no
 * job may run twice, and an input that arrives while the database is down must not be lost.
 */

const LEASE = 6;
/** Longer than the lease: every heartbeat is older than its lease when the server comes back. */
const OUTAGE_MS = 1.5 * LEASE * 1000;
/**
 * How much later than the server one session's network comes back: well within what the reap rule
 * allows (a reaper waits until it has been connected for a lease and the server has been up for a
 * lease; a session heartbeats every quarter lease), and long enough that without that rule the
 * first session back reaps it.
 */
const RELAY_LAG_MS = 2_500;
const LOOP = ['--plain', '--pause', '1', '--lease', String(LEASE), '--until-done'];

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface World {
  server: PrivateServer;
  database: TestDatabase;
  fixture: ProductionFixture;
  env: NodeJS.ProcessEnv;
  started: CliProcess[];
  relays: Relay[];
}

let world: World | null = null;
afterEach(async () => {
  const w = world;
  world = null;
  if (!w) return;
  for (const p of w.started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await killJobsUnder(w.fixture.dir);
  for (const relay of w.relays) await relay.cut();
  await w.server.start().catch(() => undefined); // a failed test may have left it stopped
  await w.database.drop().catch(() => undefined);
  await w.server.destroy().catch(() => undefined);
  await rm(w.fixture.dir, { recursive: true, force: true });
});

/**
 * A fixture on a private server, with a second production type `beta`, independent of alcapana
 * (its own outputs, the same archive and script), and the job script logging `TYPE RUN ATTEMPT`
 * to executions.log at every start, so the two productions' starts can be told apart.
 */
async function setUp(options: { runs: number; firstRun: number; jobSleep: number }): Promise<World> {
  const server = await startPrivateServer();
  const database = await server.createDatabase();
  const fixture = await createProductionFixture(options);
  const w: World = { server, database, fixture, env: { DATABASE_URL: database.url, ...fixture.env }, started: [], relays: [] };
  world = w;
  const script = join(fixture.dir, 'job.sh');
  const text = await readFile(script, 'utf8');
  const logLine = 'echo "$RUN $ATTEMPT" >> "$D/executions.log"';
  if (!text.includes(logLine)) throw new Error('the fixture job script has changed: no executions.log line');
  await writeFile(script, text.replace(logLine, 'echo "$PRODUCTION_TYPE $RUN $ATTEMPT" >> "$D/executions.log"'));
  const config = JSON.parse(await readFile(fixture.configFile, 'utf8')) as { types: Record<string, unknown> };
  config.types.beta = {
    input: { source: './archive/run{run:05d}.mid' },
    job: { backend: 'local', script: './job.sh' },
    outputs: {
      tree: '{dataDir}/beta/v{version}/tree{run:05d}.root',
      hist: '{dataDir}/beta-hist/v{version}/hist{run:05d}.txt',
      olog: '{dataDir}/log/v{version}/beta.run{run:05d}.out',
      elog: '{dataDir}/log/v{version}/beta.run{run:05d}.err',
    },
    maxAttempts: 3,
  };
  await writeFile(fixture.configFile, JSON.stringify(config, null, 2));
  return w;
}

const cli = (w: World, args: string[]) => runCli(args, { env: w.env, cwd: w.fixture.dir });
const start = (w: World, args: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
  const p = startCli(args, { env: { ...w.env, ...extraEnv }, cwd: w.fixture.dir });
  w.started.push(p);
  return p;
};

async function statusesOf(w: World, type: string): Promise<Record<string, number>> {
  const rows = await sql<{ status: string; n: number }>`
    SELECT pr.status::text, count(*)::int AS n FROM production_runs pr JOIN productions p ON p.id = pr.production_id
     WHERE p.type = ${type} GROUP BY 1`.execute(w.database.handle.db);
  return Object.fromEntries(rows.rows.map((r) => [r.status, r.n]));
}

async function eventCount(w: World, kind: string): Promise<number> {
  const row = await sql<{ n: number }>`SELECT count(*)::int AS n FROM events WHERE kind = ${kind}`.execute(w.database.handle.db);
  return row.rows[0]!.n;
}

/** Per production type and run: how often the job script started (executions.log). */
async function scriptStarts(w: World): Promise<Map<string, number>> {
  const text = await readFile(w.fixture.executionsLog, 'utf8').catch(() => '');
  const starts = new Map<string, number>();
  for (const line of text.trim().split('\n').filter(Boolean)) {
    const [type, run] = line.split(' ');
    const key = `${type} ${run}`;
    starts.set(key, (starts.get(key) ?? 0) + 1);
  }
  return starts;
}

/** Wrapper status files whose job was cancelled (SIGTERM: exit 143) or had its release revoked. */
async function cancelledJobs(w: World): Promise<string[]> {
  const cancelled: string[] = [];
  for (const file of await filesUnder(join(w.fixture.dir, 'data', '.run-production'))) {
    if (!file.endsWith('.status.json')) continue;
    const status = JSON.parse(await readFile(file, 'utf8')) as { exit?: number; revoked?: boolean };
    if (status.exit === 143 || status.revoked) cancelled.push(`${file}: ${JSON.stringify(status)}`);
  }
  return cancelled;
}

/** Every finished run of `type` has one whole ROOT tree, and no other tree is there. */
async function expectWholeTrees(w: World, type: string, treeDir: string): Promise<void> {
  const rows = await sql<{ run_number: number; outputs: Record<string, string> }>`
    SELECT pr.run_number, pr.outputs FROM production_runs pr JOIN productions p ON p.id = pr.production_id
     WHERE p.type = ${type} AND pr.status = 'finished' ORDER BY pr.run_number`.execute(w.database.handle.db);
  const trees = (await filesUnder(join(w.fixture.dir, 'data', treeDir))).sort();
  expect(trees, type).toEqual(rows.rows.map((r) => r.outputs.tree!).sort());
  for (const row of rows.rows) {
    const tree = row.outputs.tree!;
    expect(await rootFileProblem(tree, (await stat(tree)).size), `${type} run ${row.run_number}`).toBeNull();
  }
}

/** Nothing half-written anywhere: no partial download or output, nothing left in staging. */
async function expectNothingPartial(w: World): Promise<void> {
  expect(await filesUnder(join(w.fixture.dir, 'staging'))).toEqual([]);
  const leftovers = (await filesUnder(join(w.fixture.dir, 'data'))).filter((f) => /\.part-|\.tmp\.\d+$/.test(f));
  expect(leftovers).toEqual([]);
}

/** Each run finished by exactly one `finished` transition. */
async function finishedTransitions(w: World): Promise<{ type: string; run_number: number; n: number }[]> {
  const rows = await sql<{ type: string; run_number: number; n: number }>`
    SELECT p.type, e.run_number, count(*)::int AS n FROM events e JOIN productions p ON p.id = e.production_id
     WHERE e.kind = 'transition' AND e.to_status = 'finished' GROUP BY 1, 2 ORDER BY 1, 2`.execute(w.database.handle.db);
  return rows.rows;
}

const outputOf = (p: CliProcess) => `${p.output().stdout.slice(-4000)}\n${p.output().stderr.slice(-2000)}`;

describe('the database restarts mid-production', () => {
  it(`stopped for ${OUTAGE_MS / 1000}s (lease ${LEASE}s) under three sessions of two productions: every run finished once, no reap, no job cancelled, no file partial`, { timeout: 180_000 }, async () => {
    const RUNS = 40;
    const FIRST = 6000;
    const w = await setUp({ runs: RUNS, firstRun: FIRST, jobSleep: 2 });
    expect((await cli(w, ['datasets', 'import', w.fixture.catalogue])).code).toBe(0);
    expect((await cli(w, ['new', '--production', 'alcapana', '--tag', 'outage'])).code).toBe(0);
    expect((await cli(w, ['new', '--production', 'beta', '--tag', 'outage'])).code).toBe(0);
    // The second alcapana session reaches the database through a relay: its network comes back
    // RELAY_LAG_MS after the server, as for a shifter on a host further away. It can heartbeat well
    // within a lease of the server coming back, so it must keep its lease, its runs and its jobs.
    const relay = await startRelay(w.server.port);
    w.relays.push(relay);
    const run = (type: string, extraEnv: NodeJS.ProcessEnv = {}) => start(w, ['run', '--production', type, ...LOOP, '--nproc', '4', '--nprep', '2'], extraEnv);
    const sessions = [run('alcapana'), run('alcapana', { DATABASE_URL: relay.urlFor(w.database.url) }), run('beta')];
    const report = () => sessions.map((s, i) => `--- session #${i} (exit ${s.child.exitCode}):\n${outputOf(s)}`).join('\n');

    // Jobs of both productions on the grid, then the server goes away under them.
    await until(async () => ((await statusesOf(w, 'alcapana')).running ?? 0) >= 2 && ((await statusesOf(w, 'beta')).running ?? 0) >= 2, 'jobs of both productions running', 90_000);
    const stoppedAt = Date.now();
    await relay.cut();
    await w.server.stop();
    await sleep(OUTAGE_MS - (Date.now() - stoppedAt));
    await w.server.start();
    const outage = (Date.now() - stoppedAt) / 1000;
    await sleep(RELAY_LAG_MS);
    await relay.restore();
    console.log(`outage test: the server was down for ${outage.toFixed(1)}s (lease ${LEASE}s), the relayed session's network ${((Date.now() - stoppedAt) / 1000).toFixed(1)}s`);
    expect(outage).toBeGreaterThan(LEASE);

    const results = await Promise.all(sessions.map((s) => s.done));
    for (const [i, r] of results.entries()) expect(r.code, `session #${i}\n${report()}`).toBe(0);
    // The outage was felt by every session (it is not a test of sessions that were idle).
    for (const [i, r] of results.entries()) expect(r.stdout, `session #${i}`).toMatch(/Database unreachable/);

    // Nobody reaped anybody, nobody adopted anything, no job was cancelled.
    expect(await eventCount(w, 'reap'), report()).toBe(0);
    expect(await eventCount(w, 'adopt'), report()).toBe(0);
    for (const r of results) expect(r.stdout + r.stderr).not.toMatch(/Cancelling job|lost its lease/);
    expect(await cancelledJobs(w)).toEqual([]);

    // Every run of both productions finished, exactly once: one start of its job script, one `finished`.
    expect(await statusesOf(w, 'alcapana')).toEqual({ finished: RUNS });
    expect(await statusesOf(w, 'beta')).toEqual({ finished: RUNS });
    const starts = await scriptStarts(w);
    const expected = new Map<string, number>();
    for (let i = 0; i < RUNS; i++) for (const type of ['alcapana', 'beta']) expected.set(`${type} ${FIRST + i}`, 1);
    expect(Object.fromEntries([...starts].sort()), 'job script starts per run').toEqual(Object.fromEntries([...expected].sort()));
    const finished = await finishedTransitions(w);
    expect(finished).toHaveLength(2 * RUNS);
    expect(finished.filter((r) => r.n !== 1)).toEqual([]);

    // No file is partial.
    await expectWholeTrees(w, 'alcapana', 'tree');
    await expectWholeTrees(w, 'beta', 'beta');
    await expectNothingPartial(w);
    expect(await sql`SELECT 1 FROM production_runs WHERE session_id IS NOT NULL`.execute(w.database.handle.db).then((r) => r.rows)).toEqual([]);
  });

  it('an input that arrives while the database is down is recorded once it answers: the run finishes, its job runs once', { timeout: 120_000 }, async () => {
    const FIRST = 6100;
    const w = await setUp({ runs: 3, firstRun: FIRST, jobSleep: 0.05 });
    // Run 6100's source is a FIFO: the archive stats it, then its read blocks until the test writes
    // the bytes, and they can be read only once (a second download of it would wait for ever).
    const source = join(w.fixture.dir, 'archive', `run0${FIRST}.mid`);
    const bytes = await readFile(source);
    await rm(source);
    execFileSync('mkfifo', [source]);
    expect((await cli(w, ['datasets', 'import', w.fixture.catalogue])).code).toBe(0);
    expect((await cli(w, ['new', '--production', 'alcapana', '--tag', 'fifo'])).code).toBe(0);
    const session = start(w, ['run', '--production', 'alcapana', ...LOOP]);
    await session.waitFor(new RegExp(`Downloading run: ${FIRST}\\b`));

    const stoppedAt = Date.now();
    await w.server.stop();
    // The session has the FIFO open for reading (O_NONBLOCK: ENXIO until a reader is there).
    let writer: Awaited<ReturnType<typeof open>> | null = null;
    const deadline = Date.now() + 20_000;
    while (!writer) {
      writer = await open(source, constants.O_WRONLY | constants.O_NONBLOCK).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENXIO' || Date.now() > deadline) throw error;
        return null;
      });
      if (!writer) await sleep(100);
    }
    await writer.write(bytes);
    await writer.close();
    // The download completes and is verified while the database is down; its move to staged waits.
    await sleep(OUTAGE_MS - (Date.now() - stoppedAt));
    expect(await readdir(join(w.fixture.dir, 'staging'), { recursive: true }).then((names) => names.some((n) => /\.part-/.test(n))), 'the verified download is kept while the database is down').toBe(true);
    await w.server.start();

    const result = await Promise.race([
      session.done,
      sleep(60_000).then(() => {
        throw new Error(`the session did not end within 60 s of the restart:\n${outputOf(session)}`);
      }),
    ]);
    expect(result.code, outputOf(session)).toBe(0);
    expect(result.stdout).toMatch(/Database unreachable/);
    expect(await statusesOf(w, 'alcapana')).toEqual({ finished: 3 });
    const starts = await scriptStarts(w);
    expect(Object.fromEntries([...starts].sort())).toEqual({ [`alcapana ${FIRST}`]: 1, [`alcapana ${FIRST + 1}`]: 1, [`alcapana ${FIRST + 2}`]: 1 });
    expect((await finishedTransitions(w)).map((r) => r.n)).toEqual([1, 1, 1]);
    // The input the job was given is the one that came through the FIFO.
    expect(await readFile(join(w.fixture.dir, 'data', 'log', 'v1', `alcapana.run0${FIRST}.out`), 'utf8')).toMatch(new RegExp(`run ${FIRST} attempt 1 input `));
    await expectWholeTrees(w, 'alcapana', 'tree');
    await expectNothingPartial(w);
  });
  it('an outage between the session\'s start and its first snapshot is ridden out: no crash, the production finishes', { timeout: 120_000 }, async () => {
    const FIRST = 6200;
    const w = await setUp({ runs: 3, firstRun: FIRST, jobSleep: 0.05 });
    expect((await cli(w, ['datasets', 'import', w.fixture.catalogue])).code).toBe(0);
    expect((await cli(w, ['new', '--production', 'alcapana', '--tag', 'first-snapshot'])).code).toBe(0);
    const relay = await startRelay(w.server.port);
    w.relays.push(relay);
    // The session's first snapshot read (its rate-window count) is the first message with this SQL:
    // the relay cuts the session's network just as it is sent, the session row already there.
    const struck = relay.cutWhen('make_interval(mins =>', 3_000);
    const session = start(w, ['run', '--production', 'alcapana', ...LOOP], { DATABASE_URL: relay.urlFor(w.database.url) });
    await Promise.race([struck, session.done]);
    const result = await session.done;
    expect(result.stdout + result.stderr, outputOf(session)).not.toMatch(/unexpected error|\n\s+at /);
    expect(result.code, outputOf(session)).toBe(0);
    expect(result.stdout).toMatch(/Session [0-9a-f]{8} on [\s\S]*Database unreachable/);
    expect(await statusesOf(w, 'alcapana')).toEqual({ finished: 3 });
    expect(await eventCount(w, 'reap')).toBe(0);
  });
});
