import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

/**
 * Catalogue and productions made straight in SQL (a million rows in seconds),
 * with run numbers from a range of their own per production so productions of
 * several sizes live side by side in one bench database.
 */

let nextType = 0;

/**
 * What of a frozen config the loop's functions read when the bench drives them: judging a job
 * deletes its staged input if it lies in stagingDir, and the bench's staged paths (/bench/runN,
 * src/bench/tick.ts) lie outside this one, which does not exist, so that no file is touched.
 */
const BENCH_CONFIG = { stagingDir: '/nonexistent/run-production-bench/staging', dataDir: '/nonexistent/run-production-bench/data' };

export async function seedRuns(db: Kysely<Database>, first: number, count: number): Promise<void> {
  await sql`
    INSERT INTO runs (run_number, dataset, quality, size_bytes)
    SELECT g, (ARRAY['SiR2', 'Al50b', 'Al100'])[1 + g % 3], 'gold', 1024
      FROM generate_series(${first}::int, ${first + count - 1}::int) AS g
    ON CONFLICT (run_number) DO NOTHING`.execute(db);
}

/** A production of `count` new runs numbered from `first`. */
export async function seedProduction(db: Kysely<Database>, first: number, count: number): Promise<number> {
  await seedRuns(db, first, count);
  const production = await db
    .insertInto('productions')
    .values({ type: `bench${nextType++}`, version: 1, tag: 'bench', config: JSON.stringify(BENCH_CONFIG), max_attempts: 3, created_by: 'bench' })
    .returning('id')
    .executeTakeFirstOrThrow();
  await sql`
    INSERT INTO production_runs (production_id, run_number, dataset)
    SELECT ${production.id}, run_number, dataset FROM runs WHERE run_number BETWEEN ${first} AND ${first + count - 1}`.execute(db);
  // As autovacuum would have done by the time shifters start on a production: otherwise the first
  // claim of each row also pays for setting its hint bits, and the figures vary by a third.
  await sql`VACUUM (ANALYZE) production_runs`.execute(db);
  return production.id;
}

/**
 * A production in mid-flight, as `status` and the display meet it: 70% finished
 * (their finished_at spread over the last day, so the 15-minute rate window
 * holds about 1% of them), 2% failed, 8 live sessions holding 5 runs each in
 * every held status, the rest new.
 */
export async function seedProductionInFlight(db: Kysely<Database>, first: number, count: number): Promise<{ productionId: number; sessions: string[] }> {
  const productionId = await seedProduction(db, first, count);
  const sessions: string[] = [];
  for (let i = 0; i < 8; i++) {
    const row = await db
      .insertInto('sessions')
      .values({ user_name: `shifter${i}`, host: 'bench', pid: 1000 + i, production_id: productionId, lease_seconds: 3600 })
      .returning('id')
      .executeTakeFirstOrThrow();
    sessions.push(row.id);
  }
  const finished = Math.floor(count * 0.7);
  const failed = Math.floor(count * 0.02);
  await sql`
    UPDATE production_runs SET status = 'finished', finished_at = now() - (random() * interval '1 day'), attempts = 1
     WHERE production_id = ${productionId} AND run_number < ${first + finished}`.execute(db);
  await sql`
    UPDATE production_runs SET status = 'failed', finished_at = now() - (random() * interval '1 day'), attempts = 3
     WHERE production_id = ${productionId} AND run_number >= ${first + finished} AND run_number < ${first + finished + failed}`.execute(db);
  const heldFrom = first + finished + failed;
  await sql`
    UPDATE production_runs AS r SET
      session_id = (${sessions}::uuid[])[1 + (r.run_number - ${heldFrom}) / 5],
      status = (ARRAY['claimed', 'downloading', 'staged', 'submitted', 'running']::run_status[])[1 + (r.run_number - ${heldFrom}) % 5],
      claimed_by = 'shifter', claimed_at = now()
     WHERE production_id = ${productionId} AND run_number >= ${heldFrom} AND run_number < ${heldFrom + 40}`.execute(db);
  await sql`VACUUM ANALYZE production_runs`.execute(db);
  return { productionId, sessions };
}
