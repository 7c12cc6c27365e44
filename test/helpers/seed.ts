import { sql, type Kysely } from 'kysely';
import type { Database } from '../../src/db/schema.js';

/**
 * Fills a catalogue and one production straight in SQL, for tests of the
 * coordinator's SQL itself. Tests of the commands use the real import and
 * `new` commands instead.
 */
export async function seedProduction(
  db: Kysely<Database>,
  options: { runs: number; firstRun?: number; datasets?: string[]; maxRunning?: number | null; type?: string; maxAttempts?: number; config?: Record<string, unknown> },
): Promise<{ productionId: number; runs: number[] }> {
  const first = options.firstRun ?? 1000;
  const datasets = options.datasets ?? ['SiR2', 'Al50b', 'Al100'];
  await sql`
    INSERT INTO runs (run_number, dataset, quality, size_bytes)
    SELECT g, (${datasets}::text[])[1 + (g % ${datasets.length})], 'gold', 1024
      FROM generate_series(${first}::int, ${first + options.runs - 1}::int) AS g
    ON CONFLICT (run_number) DO NOTHING
  `.execute(db);
  const type = options.type ?? 'alcapana';
  const version = await db
    .selectFrom('productions')
    .select(sql<number>`coalesce(max(version), 0) + 1`.as('v'))
    .where('type', '=', type)
    .executeTakeFirstOrThrow();
  const production = await db
    .insertInto('productions')
    .values({
      type,
      version: version.v,
      tag: 'test-tag',
      // Frozen at creation, as `new` does: a frozen config cannot be changed afterwards.
      config: JSON.stringify(options.config ?? {}),
      max_attempts: options.maxAttempts ?? 3,
      max_running: options.maxRunning ?? null,
      created_by: 'tester',
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await sql`
    INSERT INTO production_runs (production_id, run_number, dataset)
    SELECT ${production.id}, run_number, dataset FROM runs
     WHERE run_number BETWEEN ${first} AND ${first + options.runs - 1}
  `.execute(db);
  const runs = Array.from({ length: options.runs }, (_, i) => first + i);
  return { productionId: production.id, runs };
}
