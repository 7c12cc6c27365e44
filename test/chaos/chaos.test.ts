import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../src/db/connection.js';
import { rootFileProblem } from '../../src/outputs/validate.js';
import { createProductionFixture, runCli, startCli, type CliProcess, type CliResult, type ProductionFixture } from '../helpers/cli.js';
import type { TestDatabase } from '../helpers/database.js';
import { startPrivateServer, type PrivateServer } from '../helpers/pg-server.js';

/**
 * Chaos: 8 real CLI sessions work one production while sessions are
 * interrupted (SIGINT: abort and roll back) or killed (SIGKILL: nothing runs,
 * the lease expires, another session reaps and adopts) at random and replaced
 * by new ones; jobs fail at random. Half-way through, the database server (one
 * of this file's own) is stopped for 1.5 leases and started again, while the
 * signals go on; and every pass that starts downloads waits 0-3 s for a slow
 * quota command, as on a loaded cluster file system. Once the production is
 * done, the files, the process table and the event log must tell one
 * consistent story.
 *
 * The random choices come from a seeded generator; the seed is printed and in
 * every failure message, and CHAOS_SEED=N replays a run's choices (timing on a
 * loaded machine still differs).
 */

const RUNS = 120;
const FIRST_RUN = 5000;
const SESSIONS = 8;
const LEASE = 4;
const CHAOS_SECONDS = 45;
const DEADLINE_SECONDS = 90;
/** The database outage: longer than the lease, so that every heartbeat is stale when it comes back. */
const OUTAGE_MS = 1.5 * LEASE * 1000;
/** A quota command that answers after 0-3 s (/bin/sh runs it: no $RANDOM). */
const SLOW_QUOTA = {
  command: 'sleep $(( $(od -An -N1 -tu1 /dev/urandom) % 4 )); echo used=0 limit=1000000000',
  pattern: 'used=(?<used>\\d+) limit=(?<limit>\\d+)',
};
const RUN_ARGS = ['run', '--production', 'alcapana', '--until-done', '--plain', '--nproc', '3', '--nprep', '2', '--pause', '1', '--lease', String(LEASE)];

/** mulberry32: small, seedable, good enough for picking victims. */
function randomSource(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The session found it had been reaped (its heartbeat came too late) and left without touching anything. */
const lostItsLease = (stdout: string) => /This session lost its lease/.test(stdout);

interface Session {
  index: number;
  process: CliProcess;
  signal: 'SIGINT' | 'SIGKILL' | null;
  result: CliResult | null;
}

interface TransitionEvent {
  id: number;
  at: Date;
  run_number: number;
  session_id: string | null;
  kind: 'transition' | 'adopt';
  from_status: string;
  to_status: string;
  message: string | null;
}

/** Processes whose command line mentions `needle` (zombies have exited: skipped). */
async function processesMentioning(needle: string): Promise<{ pid: number; cmdline: string }[]> {
  const found: { pid: number; cmdline: string }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0').join(' ');
      if (!cmdline.includes(needle)) continue;
      const statText = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (/\) Z /.test(statText)) continue;
      found.push({ pid: Number(entry), cmdline });
    } catch {
      /* exited while we looked */
    }
  }
  return found;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

let server: PrivateServer;
let database: TestDatabase;
let fixture: ProductionFixture;
let env: NodeJS.ProcessEnv;
const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 1_000_000);
const random = randomSource(seed);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

beforeAll(async () => {
  // A server of its own: this test stops it, and the test run's shared server must never stop.
  server = await startPrivateServer();
  database = await server.createDatabase();
  // Jobs of about a second, so that kills land while jobs are on the grid, not only between them.
  fixture = await createProductionFixture({ runs: RUNS, firstRun: FIRST_RUN, jobSleep: 1, extraConfig: { quota: SLOW_QUOTA } });
  env = { DATABASE_URL: database.url, ...fixture.env };
});
afterAll(async () => {
  // Whatever happened, leave no job of ours running on the machine.
  for (const { pid } of await processesMentioning(fixture.dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await server?.start().catch(() => undefined); // a failed test may have left it stopped
  await database?.drop().catch(() => undefined);
  await server?.destroy();
  if (fixture) await rm(fixture.dir, { recursive: true, force: true });
});

describe('chaos: sessions interrupted and killed at random', () => {
  it('ends with every run finished or failed once, files whole, no stray job and a consistent event log', { timeout: 240_000 }, async () => {
    const context = `(CHAOS_SEED=${seed})`;
    console.log(`chaos test ${context}`);
    const cli = (args: string[]) => runCli(args, { env, cwd: fixture.dir });
    expect((await cli(['datasets', 'import', fixture.catalogue])).code).toBe(0);
    expect((await cli(['new', '--production', 'alcapana', '--tag', 'chaos'])).code).toBe(0);
    const runs = Array.from({ length: RUNS }, (_, i) => FIRST_RUN + i);
    const failAlways = new Set<number>();
    const failOnce = new Set<number>();
    for (const run of runs) {
      const r = random();
      if (r < 0.04) failAlways.add(run);
      else if (r < 0.3) failOnce.add(run);
    }
    for (const run of failAlways) await writeFile(join(fixture.dir, `fail-${run}`), '');
    for (const run of failOnce) await writeFile(join(fixture.dir, `fail-once-${run}`), '');

    const db = database.handle.db;
    const production = await db.selectFrom('productions').select('id').where('type', '=', 'alcapana').executeTakeFirstOrThrow();
    const sessions: Session[] = [];
    const start = (): Session => {
      const session: Session = { index: sessions.length, process: startCli(RUN_ARGS, { env, cwd: fixture.dir }), signal: null, result: null };
      void session.process.done.then((result) => (session.result = result));
      sessions.push(session);
      return session;
    };
    const live = () => sessions.filter((s) => s.result === null && s.signal === null);
    const remaining = async () => {
      const row = await sql<{ open: number; new: number }>`
        SELECT count(*) FILTER (WHERE status NOT IN ('finished', 'failed'))::int AS open,
               count(*) FILTER (WHERE status = 'new')::int AS new
          FROM production_runs WHERE production_id = ${production.id}`.execute(db);
      return row.rows[0]!;
    };
    /** After an interrupted session exited: none of the jobs it submitted may still run (its abort cancels them). */
    const checkAbortLeftNoJob = async (session: Session) => {
      const id = /Session ([0-9a-f]{8}) on /.exec(session.process.output().stdout)?.[1];
      if (!id) return; // interrupted before its session existed
      // Reaped before it could abort (a pass outlasted the lease on the loaded machine): its runs and
      // live jobs went to the reaper, which goes on with them; the event-log checks below cover it.
      if (lostItsLease(session.process.output().stdout)) return;
      const submitted = await sql<{ run_number: number; message: string }>`
        SELECT e.run_number, e.message FROM events e JOIN sessions s ON s.id = e.session_id
         WHERE s.id::text LIKE ${id + '%'} AND e.kind = 'transition' AND e.to_status = 'submitted'`.execute(db);
      for (const row of submitted.rows) {
        // The exact job (pid) this session started: the same run and attempt may since have been resubmitted by another session.
        const pid = /as local:[^,\s]*:(\d+)/.exec(row.message)?.[1];
        const attempt = /attempt (\d+)/.exec(row.message)?.[1];
        if (!pid) continue;
        const statusFile = `run${row.run_number}/attempt${attempt}.status.json`;
        const stray = (await processesMentioning(statusFile)).filter((p) => p.pid === Number(pid) && p.cmdline.includes('rp-job-wrapper'));
        abortProblems.push(...stray.map((p) => `session ${id} (SIGINT, exit ${session.result?.code}) left job pid ${p.pid} running: ${p.cmdline}`));
      }
    };
    const abortProblems: string[] = [];
    /** The event log of some runs, and what their last holders printed: the evidence for a report. */
    const history = async (runNumbers: number[]) => {
      if (runNumbers.length === 0) return '';
      const rows = await sql<{ id: number; run_number: number; session: string | null; kind: string; from_status: string | null; to_status: string | null; message: string | null; at: Date }>`
        SELECT id, run_number, left(session_id::text, 8) AS session, kind, from_status::text, to_status::text, message, at
          FROM events WHERE production_id = ${production.id} AND run_number = ANY(${runNumbers}::int[]) ORDER BY run_number, id`.execute(db);
      const lines = rows.rows.map((e) => `${e.at.toISOString()} run ${e.run_number} #${e.id} ${e.session} ${e.kind} ${e.from_status ?? ''}→${e.to_status ?? ''} ${e.message ?? ''}`);
      for (const session of new Set(rows.rows.map((e) => e.session))) {
        const owner = sessions.find((s) => session && s.process.output().stdout.includes(`Session ${session} on`));
        if (!owner) continue;
        const out = owner.process.output().stdout.split('\n');
        const mentions = out.filter((l) => runNumbers.some((r) => l.includes(String(r))) || /Abort|Session|ERROR|WARNING/.test(l));
        lines.push(`--- session ${session} (#${owner.index}, ${owner.signal ?? 'no signal'}, exit ${owner.result?.code ?? 'running'}):`, ...mentions.slice(-40));
      }
      return lines.join('\n');
    };
    /** What is stuck: open runs with their holders, and the last lines of the sessions still running. */
    const diagnosis = async (running: Session[]) => {
      const open = await sql<{ run_number: number; status: string; session: string | null; ended: string | null; age: number | null }>`
        SELECT r.run_number, r.status::text, left(r.session_id::text, 8) AS session, s.end_reason AS ended,
               extract(epoch FROM now() - s.heartbeat_at)::float8 AS age
          FROM production_runs r LEFT JOIN sessions s ON s.id = r.session_id
         WHERE r.production_id = ${production.id} AND r.status NOT IN ('finished', 'failed') ORDER BY r.run_number`.execute(db);
      const lines = open.rows.map((r) => `run ${r.run_number} ${r.status} held by ${r.session ?? '-'} (heartbeat ${r.age?.toFixed(1) ?? '-'}s ago, ended: ${r.ended ?? 'no'})`);
      for (const s of running) lines.push(`--- session #${s.index} (${s.signal ?? 'no signal'}) pid ${s.process.child.pid}:\n${s.process.output().stdout.slice(-3000)}\n${s.process.output().stderr.slice(-1000)}`);
      return lines.join('\n');
    };

    // --- chaos ------------------------------------------------------------------------------
    for (let i = 0; i < SESSIONS; i++) start();
    const chaosStart = Date.now();
    const chaosEnd = chaosStart + CHAOS_SECONDS * 1000;
    let interrupts = 0;
    let kills = 0;
    /** Resolved while the database server runs; replaced by a pending promise during the outage. */
    let databaseUp: Promise<void> = Promise.resolve();
    /** A check of ours that reads the database: after the outage if it is down, again if the outage cut it. */
    const whenTheDatabaseAnswers = async (check: () => Promise<void>) => {
      for (;;) {
        await databaseUp;
        try {
          return await check();
        } catch (error) {
          if (!isDatabaseUnavailable(error)) throw error;
          await sleep(500);
        }
      }
    };
    const checks: Promise<void>[] = [];
    /** Interrupts or kills one live session; its replacement starts now, or after the outage (replace false). */
    const strike = (replace: boolean): boolean => {
      const candidates = live();
      if (candidates.length === 0) return false;
      const victim = pick(candidates);
      victim.signal = random() < 0.55 ? 'SIGINT' : 'SIGKILL';
      victim.process.child.kill(victim.signal);
      if (victim.signal === 'SIGINT') {
        interrupts++;
        checks.push(victim.process.done.then(() => whenTheDatabaseAnswers(() => checkAbortLeftNoJob(victim))));
      } else kills++;
      if (replace) start();
      return true;
    };
    let outage: { seconds: number; struck: number } | null = null;
    while (Date.now() < chaosEnd && (await remaining()).open > 0) {
      if (outage === null && Date.now() >= chaosStart + (CHAOS_SECONDS * 1000) / 2) {
        // Half-way: the database goes away for 1.5 leases while the signals go on. Every session
        // started first has its session (one that cannot reach the database while starting exits 2:
        // right, but not what this tests); nobody starts during the outage, the replacements after.
        for (const s of live()) await Promise.race([s.process.waitFor(/Session [0-9a-f]{8} on /, 30_000), s.process.done]);
        let up!: () => void;
        databaseUp = new Promise((resolve) => (up = resolve));
        const stoppedAt = Date.now();
        await server.stop();
        let struck = 0;
        for (;;) {
          const pause = 600 + random() * 1400;
          if (Date.now() + pause > stoppedAt + OUTAGE_MS) break;
          await sleep(pause);
          if (strike(false)) struck++;
        }
        await sleep(stoppedAt + OUTAGE_MS - Date.now());
        await server.start();
        up();
        outage = { seconds: (Date.now() - stoppedAt) / 1000, struck };
        for (let i = 0; i < struck; i++) start();
        continue;
      }
      await sleep(600 + random() * 1400);
      strike(true);
    }
    expect(outage, `${context} the chaos ended before its outage`).not.toBeNull();

    // --- let the survivors (and replacements) finish the production --------------------------
    const deadline = Date.now() + DEADLINE_SECONDS * 1000;
    for (;;) {
      const left = await remaining();
      const running = sessions.filter((s) => s.result === null);
      if (left.open === 0 && running.length === 0) break;
      // A run held by a session that has ended can never come back (reapers only look at live sessions).
      const stranded = await sql<{ run_number: number }>`
        SELECT r.run_number FROM production_runs r JOIN sessions s ON s.id = r.session_id
         WHERE r.production_id = ${production.id} AND s.ended_at IS NOT NULL`.execute(db);
      if (stranded.rows.length && running.every((s) => s.signal === null)) {
        await sleep(1000); // an ending rollback may still be committing
        const again = await sql<{ run_number: number }>`
          SELECT r.run_number FROM production_runs r JOIN sessions s ON s.id = r.session_id
           WHERE r.production_id = ${production.id} AND s.ended_at IS NOT NULL`.execute(db);
        if (again.rows.length) throw new Error(`${context} runs held by sessions that have ended (stranded for ever):\n${await diagnosis(running)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`${context} production not done after the deadline: ${left.open} runs open, ${running.length} sessions running\n${await diagnosis(running)}`);
      }
      // A session leaves when nothing is claimable; runs a killed session held come back only
      // after its lease expires, so keep sessions there while anything is open.
      if (left.open > 0 && live().length < SESSIONS) start();
      await sleep(500);
    }
    await Promise.all(sessions.map((s) => s.process.done));
    await Promise.all(checks);
    // The outage was lived through by sessions that went on afterwards (not only by sessions that died in it).
    const rodeItOut = sessions.filter((s) => /Database unreachable/.test(s.result!.stdout) && /The database answers again/.test(s.result!.stdout)).length;
    console.log(
      `chaos ${context}: ${sessions.length} sessions, ${interrupts} SIGINT, ${kills} SIGKILL; ` +
        `database down ${outage!.seconds.toFixed(1)}s (lease ${LEASE}s), ${outage!.struck} signals during the outage, ${rodeItOut} sessions rode it out`,
    );
    expect(rodeItOut, context).toBeGreaterThan(0);

    // --- sessions ended as sessions should ---------------------------------------------------
    const badExits = sessions
      .filter((s) => {
        const r = s.result!;
        // Reaped (its lease ran out during a long pass): it leaves with 1 without touching runs or jobs, whatever signal came.
        if (r.code === 1 && lostItsLease(r.stdout)) return false;
        if (s.signal === 'SIGKILL') return r.signal !== 'SIGKILL' && r.code !== 0;
        // Interrupted before its handlers were installed (still loading): Node's default action, no session yet.
        if (s.signal === 'SIGINT') return r.code !== 130 && r.code !== 0 && !(r.signal === 'SIGINT' && !/Session [0-9a-f]{8} on /.test(r.stdout));
        return r.code !== 0;
      })
      .map((s) => `session #${s.index} (${s.signal ?? 'no signal'}): code ${s.result!.code} signal ${s.result!.signal}\n${s.result!.stdout.slice(-1500)}\n${s.result!.stderr.slice(-1500)}`);
    expect(badExits, context).toEqual([]);
    const crashes = sessions.filter((s) => /unexpected error|\n\s+at .*\.js:\d+/.test(s.result!.stderr + s.result!.stdout));
    expect(crashes.map((s) => s.result!.stderr + s.result!.stdout).join('\n---\n'), context).toBe('');
    const liveRows = await db.selectFrom('sessions').select('id').where('ended_at', 'is', null).execute();
    // SIGKILLed sessions that nobody reaped (the production ended first) may stay open in the table; none may hold a run.
    const holding = await db.selectFrom('production_runs').select('run_number').where('session_id', 'is not', null).execute();
    expect(holding, context).toEqual([]);
    void liveRows;

    // --- every run finished or failed, exactly once ---------------------------------------------
    const final = await db
      .selectFrom('production_runs')
      .select(['run_number', 'status', 'attempts', 'outputs'])
      .where('production_id', '=', production.id)
      .orderBy('run_number')
      .execute();
    expect(final).toHaveLength(RUNS);
    for (const row of final) {
      expect(row.status, `${context} run ${row.run_number}`).toBe(failAlways.has(row.run_number) ? 'failed' : 'finished');
    }
    const endings = await sql<{ run_number: number; finished: number; failed: number }>`
      SELECT run_number, count(*) FILTER (WHERE to_status = 'finished')::int AS finished, count(*) FILTER (WHERE to_status = 'failed')::int AS failed
        FROM events WHERE production_id = ${production.id} AND kind = 'transition' AND to_status IN ('finished', 'failed')
       GROUP BY run_number ORDER BY run_number`.execute(db);
    expect(endings.rows.filter((r) => r.finished + r.failed !== 1), context).toEqual([]);
    expect(endings.rows).toHaveLength(RUNS);

    // The maintained counters agree with the rows.
    const counters = await sql<{ status: string; n: number }>`
      SELECT status::text, sum(n)::int AS n FROM production_status_counts WHERE production_id = ${production.id}
       GROUP BY status HAVING sum(n) <> 0 ORDER BY status`.execute(db);
    const actual = await sql<{ status: string; n: number }>`
      SELECT status::text, count(*)::int AS n FROM production_runs WHERE production_id = ${production.id} GROUP BY status ORDER BY status`.execute(db);
    expect(counters.rows, context).toEqual(actual.rows);

    // --- files: one whole tree per finished run, nothing partial, nothing left in staging -------
    const finishedRuns = final.filter((r) => r.status === 'finished');
    const trees = (await filesUnder(join(fixture.dir, 'data', 'tree'))).sort();
    expect(trees, context).toEqual(finishedRuns.map((r) => (r.outputs as Record<string, string>).tree).sort());
    for (const row of finishedRuns) {
      const outputs = row.outputs as Record<string, string>;
      const size = (await stat(outputs.tree!)).size;
      expect(await rootFileProblem(outputs.tree!, size), `${context} run ${row.run_number}`).toBeNull();
      // The job log is appended to by every job of this attempt: two jobs writing this run's outputs would leave two lines.
      const log = await readFile(outputs.olog!, 'utf8');
      expect(log.match(/^run \d+ attempt \d+/gm), `${context} run ${row.run_number} olog:\n${log}`).toHaveLength(1);
    }
    const staged = await filesUnder(join(fixture.dir, 'staging'));
    const stagedRuns = staged.map((f) => Number(/run0*(\d+)\.mid/.exec(f)?.[1])).filter((n) => n > 0);
    expect(staged, `${context}\n${await history(stagedRuns)}`).toEqual([]);
    const leftovers = (await filesUnder(join(fixture.dir, 'data'))).filter((f) => /\.part-|\.tmp\.\d+$/.test(f));
    expect(leftovers, context).toEqual([]);

    // --- no job outlived its session's abort, reap or the end ------------------------------------
    expect(abortProblems, context).toEqual([]);
    const stray = (await processesMentioning(fixture.dir)).map((p) => `${p.pid}: ${p.cmdline}`);
    expect(stray, context).toEqual([]);

    // --- the event log tells one consistent story per run ------------------------------------------
    const allowed = new Set(
      (await db.selectFrom('run_status_transitions').select(['from_status', 'to_status']).execute()).map((t) => `${t.from_status}>${t.to_status}`),
    );
    const ended = new Map(
      (await db.selectFrom('sessions').select(['id', 'ended_at', 'end_reason']).execute()).map((s) => [s.id, s]),
    );
    const events = await sql<TransitionEvent>`
      SELECT id, at, run_number, session_id, kind, from_status::text, to_status::text, message
        FROM events WHERE production_id = ${production.id} AND kind IN ('transition', 'adopt')
       ORDER BY run_number, id`.execute(db);
    const problems: string[] = [];
    const byRun = new Map<number, TransitionEvent[]>();
    for (const e of events.rows) (byRun.get(e.run_number) ?? byRun.set(e.run_number, []).get(e.run_number)!).push(e);
    for (const [run, list] of byRun) {
      let status = 'new';
      let holder: string | null = null;
      for (const e of list) {
        const where = `run ${run} event ${e.id} (${e.kind} ${e.from_status}→${e.to_status} by ${e.session_id?.slice(0, 8)})`;
        if (e.from_status !== status) problems.push(`${where}: from ${e.from_status}, but the run was ${status}`);
        if (e.kind === 'adopt') {
          // A hand-over: only from a holder whose lease expired, and the status stays.
          const previous = holder ? ended.get(holder) : undefined;
          if (e.to_status !== e.from_status) problems.push(`${where}: an adoption changed the status`);
          if (!previous?.end_reason?.startsWith('lease expired')) problems.push(`${where}: adopted from ${holder?.slice(0, 8)}, which was not reaped`);
          holder = e.session_id;
          continue;
        }
        if (!allowed.has(`${e.from_status}>${e.to_status}`)) problems.push(`${where}: not in run_status_transitions`);
        if (e.to_status === 'claimed') {
          if (holder !== null) problems.push(`${where}: claimed while ${holder.slice(0, 8)} held it`);
          holder = e.session_id;
        } else if (e.session_id !== holder) {
          // Only a reaper may move another session's run, only back to new, and only once that session was reaped.
          const previous = holder ? ended.get(holder) : undefined;
          const reaped = previous?.end_reason?.startsWith('lease expired') && previous.ended_at !== null && previous.ended_at <= e.at;
          if (!(e.to_status === 'new' && reaped)) problems.push(`${where}: moved by a session that does not hold it (holder ${holder?.slice(0, 8)})`);
        }
        status = e.to_status;
        if (['new', 'finished', 'failed'].includes(status)) holder = null;
      }
      if (status !== 'finished' && status !== 'failed') problems.push(`run ${run}: the log ends in ${status}`);
    }
    expect(byRun.size).toBe(RUNS);
    expect(problems, context).toEqual([]);
  });
});
