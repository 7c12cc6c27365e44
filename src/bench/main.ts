import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sql } from 'kysely';
import { startSession } from '../state/sessions.js';
import { openDatabase, type DatabaseHandle } from '../db/connection.js';
import { migrate } from '../db/migrate.js';
import { measureReadCosts } from './costs.js';
import { countQueries } from './counting.js';
import { openBenchDatabase } from './environment.js';
import { describeMachine } from './machine.js';
import { measureCommitRate } from './physical.js';
import { seedProductionInFlight } from './seed.js';
import { round } from './stats.js';
import { measureThroughput, STATEMENTS_PER_BATCH, type ThroughputResult } from './throughput.js';
import { tick } from './tick.js';

/**
 * `npm run bench`: coordination throughput, claim latency, read costs at three
 * production sizes, one session's memory and statements per loop pass, and the
 * server's single-row commit rate as the physical limit, all on one fresh
 * database. Prints a table and writes bench-results.json. A few minutes on two
 * cores; never part of `npm test`.
 *
 *   node dist/bench/main.js [--database URL] [--out FILE] [--quick] [--batch N[,N...]]
 */

interface Args {
  database?: string;
  out: string;
  quick: boolean;
  /**
   * Runs a session claims and moves per statement, one throughput table for
   * each: the loop claims up to --nproc + --nprep runs at once, so 10 is a
   * session with the default options and 100 one with --nproc 90.
   */
  batches: number[];
}

function parseArgs(argv: string[]): Args {
  const args: Args = { out: 'bench-results.json', quick: false, batches: [10, 100] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--database') args.database = argv[++i];
    else if (arg === '--out') args.out = argv[++i]!;
    else if (arg === '--quick') args.quick = true;
    else if (arg === '--batch') {
      args.batches = (argv[++i] ?? '').split(',').map(Number);
      if (!args.batches.every((b) => Number.isInteger(b) && b > 0)) throw new Error('--batch takes positive whole numbers, comma-separated (--batch 10,100)');
    }
    else if (arg === '--help') {
      console.log('usage: node dist/bench/main.js [--database URL] [--out FILE] [--quick] [--batch N[,N...]]');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}`);
  }
  return args;
}

const log = (text: string) => process.stderr.write(`bench: ${text}\n`);

async function ticksQueries(url: string, productionId: number, ticks: number): Promise<{ perTick: number[]; finished: number }> {
  const handle = openDatabase(url, { applicationName: 'bench ticks', max: 6 });
  const counter = countQueries(handle.pool);
  try {
    const sessionId = await startSession(handle.db, { user: 'ticks', host: 'bench', pid: process.pid, productionId, options: {}, leaseSeconds: 600 });
    const session = { db: handle.db, productionId, actor: { user: 'ticks', sessionId }, nproc: 10, nprep: 5 };
    await tick(session); // the first pass fills the pool and the plans
    const perTick: number[] = [];
    let finished = 0;
    for (let i = 0; i < ticks; i++) {
      counter.reset();
      finished += await tick(session);
      perTick.push(counter.count);
    }
    await sql`UPDATE sessions SET ended_at = now(), end_reason = 'bench' WHERE id = ${sessionId}::uuid`.execute(handle.db);
    return { perTick, finished };
  } finally {
    await handle.close();
  }
}

/** Ends a production: every run finished, nobody holding anything, so a session there is idle. */
async function finishProduction(handle: DatabaseHandle, productionId: number): Promise<void> {
  await sql`UPDATE production_runs SET status = 'finished', session_id = NULL, finished_at = now() - interval '1 day'
             WHERE production_id = ${productionId} AND status <> 'finished'`.execute(handle.db);
  await sql`UPDATE sessions SET ended_at = now(), end_reason = 'bench' WHERE production_id = ${productionId}`.execute(handle.db);
  await sql`VACUUM ANALYZE production_runs`.execute(handle.db);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const began = Date.now();
  const database = await openBenchDatabase(args.database);
  const admin = openDatabase(database.url, { applicationName: 'bench admin', max: 4 });
  try {
    await migrate(admin.pool);
    const machine = await describeMachine(admin.db);
    log(`${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, PostgreSQL ${machine.postgres} (${database.kind})`);

    log('physical limit: single-row UPDATE … RETURNING commits from 16 connections');
    const commitsPerSecond = await measureCommitRate(database.url, admin.db, 16, args.quick ? 3 : 6);

    const throughput: ThroughputResult[] = [];
    const runs = args.quick ? 20_000 : 100_000;
    let next = 0;
    for (const batch of args.batches) {
      for (const sessions of [1, 4, 16, 32]) {
        log(`throughput: ${sessions} session(s) on a ${runs}-run production, batches of ${batch}`);
        throughput.push(
          await measureThroughput(database.url, admin.db, { sessions, runs, firstRun: 10_000_000 + next++ * 1_000_000, batch, maxSeconds: args.quick ? 5 : 12 }),
        );
        await sql`VACUUM ANALYZE`.execute(admin.db);
      }
    }

    const sizes = args.quick ? [10_000, 100_000] : [10_000, 100_000, 1_000_000];
    const reads: { runs: number; statusMs: number; snapshotMs: number }[] = [];
    const productions = new Map<number, { productionId: number; sessions: string[] }>();
    for (const [i, size] of sizes.entries()) {
      log(`read costs at ${size} runs (seeding)`);
      const seeded = await seedProductionInFlight(admin.db, 20_000_000 + i * 2_000_000, size);
      productions.set(size, seeded);
      reads.push({ runs: size, ...(await measureReadCosts(admin.db, seeded.productionId, seeded.sessions[0]!)) });
    }
    const largest = sizes.at(-1)!;
    const big = productions.get(largest)!;

    log(`memory: one session process working on the ${largest}-run production`);
    const worker = fileURLToPath(new URL('./memory-worker.js', import.meta.url));
    // The URL (with its password) goes in the environment: a command line is for anyone's ps to read.
    const { stdout } = await promisify(execFile)(process.execPath, [worker, String(big.productionId), args.quick ? '5' : '15'], {
      env: { ...process.env, DATABASE_URL: database.url },
    });
    const memory = JSON.parse(stdout) as { ticks: number; finished: number; rssBytes: number; peakRssBytes: number; heapUsedBytes: number };

    log('statements per loop pass: busy session');
    const busy = await ticksQueries(database.url, big.productionId, 20);
    log('statements per loop pass: idle sessions at two sizes');
    const idle: { runs: number; perTick: number[] }[] = [];
    for (const size of [sizes[0]!, largest]) {
      const productionId = productions.get(size)!.productionId;
      await finishProduction(admin, productionId);
      idle.push({ runs: size, perTick: (await ticksQueries(database.url, productionId, 5)).perTick });
    }

    const results = {
      at: new Date().toISOString(),
      machine,
      database: database.kind,
      seconds: round((Date.now() - began) / 1000),
      physicalLimit: { connections: 16, commitsPerSecond: round(commitsPerSecond, 0) },
      // If every statement of a batch cost no more than one of the physical limit's bare commits.
      ceiling: args.batches.map((batch) => ({ batch, runsPerSecond: round((commitsPerSecond * batch) / STATEMENTS_PER_BATCH, 0) })),
      throughput: throughput.map((t) => ({ ...t, seconds: round(t.seconds), runsPerSecond: round(t.runsPerSecond, 0), statementsPerSecond: round(t.statementsPerSecond, 0), closedLoopMeanMs: round(t.closedLoopMeanMs, 1), claimP50Ms: round(t.claimP50Ms, 2), claimP99Ms: round(t.claimP99Ms, 2), firstClaimMaxMs: round(t.firstClaimMaxMs, 1) })),
      reads: reads.map((r) => ({ runs: r.runs, statusMs: round(r.statusMs, 2), snapshotMs: round(r.snapshotMs, 2) })),
      memory: { productionRuns: largest, what: 'separate process running the loop per-tick queries (src/bench/tick.ts), pool of 6', ...memory, rssMiB: round(memory.rssBytes / 2 ** 20), peakRssMiB: round(memory.peakRssBytes / 2 ** 20) },
      queriesPerTick: {
        busy: { runs: largest, perTick: busy.perTick, mean: round(busy.perTick.reduce((a, b) => a + b, 0) / busy.perTick.length), max: Math.max(...busy.perTick) },
        idle: idle.map((i) => ({ runs: i.runs, perTick: i.perTick, max: Math.max(...i.perTick) })),
      },
    };
    await writeFile(args.out, JSON.stringify(results, null, 2) + '\n');
    printTable(results);
    log(`wrote ${args.out} in ${results.seconds}s`);
  } finally {
    await admin.close();
    await database.dispose();
  }
}

function printTable(r: {
  machine: Awaited<ReturnType<typeof describeMachine>>;
  physicalLimit: { commitsPerSecond: number };
  ceiling: { batch: number; runsPerSecond: number }[];
  throughput: ThroughputResult[];
  reads: { runs: number; statusMs: number; snapshotMs: number }[];
  memory: { productionRuns: number; rssMiB: number; peakRssMiB: number; ticks: number };
  queriesPerTick: { busy: { mean: number; max: number; runs: number }; idle: { runs: number; max: number; perTick: number[] }[] };
}): void {
  const m = r.machine;
  const rows: [string, string, string][] = [];
  rows.push(['Machine', `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM`, '']);
  rows.push(['Database', `PostgreSQL ${m.postgres}, synchronous_commit=${m.synchronousCommit}, shared_buffers=${m.sharedBuffers}; Node ${m.node}`, '']);
  rows.push(['Physical limit', `${r.physicalLimit.commitsPerSecond} single-row UPDATE … RETURNING commits/s (16 connections)`, '']);
  for (const c of r.ceiling) {
    rows.push([`Ceiling, batches of ${c.batch}`, `${c.runsPerSecond} runs/s if each of a batch's ${STATEMENTS_PER_BATCH} statements cost one bare commit`, '']);
  }
  for (const t of r.throughput) {
    rows.push([
      `Throughput, ${t.sessions} session(s), batches of ${t.batch}`,
      `${t.runsPerSecond} runs/s new→finished (${t.runsFinished} runs in ${t.seconds} s; ${t.statementsPerSecond} statements/s)`,
      t.sessions === 16 ? '≥ 5,000' : '',
    ]);
    rows.push([
      `Claim latency, ${t.sessions} session(s), batches of ${t.batch}`,
      `p50 ${t.claimP50Ms} ms, p99 ${t.claimP99Ms} ms; closed-loop mean ${t.closedLoopMeanMs} ms (${t.claims} claims; first claims up to ${t.firstClaimMaxMs} ms)`,
      t.sessions === 32 ? 'p99 < 20 ms' : '',
    ]);
  }
  for (const c of r.reads) {
    rows.push([`status (readCounts), ${c.runs.toLocaleString('en')} runs`, `${c.statusMs} ms (median)`, c.runs === 1_000_000 ? '< 20 ms' : '']);
    rows.push([`Display snapshot, ${c.runs.toLocaleString('en')} runs`, `${c.snapshotMs} ms (median)`, c.runs === 1_000_000 ? '< 20 ms' : '']);
  }
  rows.push([`Session RSS, ${r.memory.productionRuns.toLocaleString('en')} runs`, `${r.memory.rssMiB} MiB (peak ${r.memory.peakRssMiB} MiB over ${r.memory.ticks} passes)`, '< 200 MB']);
  rows.push([`Statements per pass, busy`, `mean ${r.queriesPerTick.busy.mean}, max ${r.queriesPerTick.busy.max}`, '']);
  for (const i of r.queriesPerTick.idle) rows.push([`Statements per pass, idle, ${i.runs.toLocaleString('en')} runs`, `${i.max} (${i.perTick.join(', ')})`, 'same at every size']);
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(...rows.map((x) => x[1].length));
  console.log(`| ${'Measure'.padEnd(w0)} | ${'Result'.padEnd(w1)} | Target |`);
  console.log(`|${'-'.repeat(w0 + 2)}|${'-'.repeat(w1 + 2)}|--------|`);
  for (const [a, b, c] of rows) console.log(`| ${a.padEnd(w0)} | ${b.padEnd(w1)} | ${c} |`);
}

await main().catch((error: unknown) => {
  console.error('bench failed:', error);
  process.exitCode = 1;
});
