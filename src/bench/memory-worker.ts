import { openDatabase } from '../db/connection.js';
import { startSession } from '../state/sessions.js';
import { tick } from './tick.js';

/**
 * A separate process, so its resident memory is one session's alone: it opens
 * a pool as the CLI's `run` does (6 connections), starts a session on the given
 * production and runs the loop's per-tick database work (src/bench/tick.ts)
 * every `pauseMs` for `seconds`, then prints its RSS as JSON.
 * Usage: DATABASE_URL=URL node dist/bench/memory-worker.js PRODUCTION_ID SECONDS
 */
const url = process.env.DATABASE_URL;
if (!url) throw new Error('memory-worker: DATABASE_URL is not set');
const [productionText, secondsText] = process.argv.slice(2);
const productionId = Number(productionText);
const handle = openDatabase(url, { applicationName: 'bench memory', max: 6 });
const sessionId = await startSession(handle.db, { user: 'memory', host: 'bench', pid: process.pid, productionId, options: {}, leaseSeconds: 600 });
const session = { db: handle.db, productionId, actor: { user: 'memory', sessionId }, nproc: 10, nprep: 5 };
const deadline = Date.now() + Number(secondsText) * 1000;
let ticks = 0;
let finished = 0;
let peakRss = 0;
while (Date.now() < deadline) {
  finished += await tick(session);
  ticks++;
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  await new Promise((resolve) => setTimeout(resolve, 100));
}
const usage = process.memoryUsage();
await handle.close();
process.stdout.write(JSON.stringify({ ticks, finished, rssBytes: usage.rss, peakRssBytes: peakRss, heapUsedBytes: usage.heapUsed }));
