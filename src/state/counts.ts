import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { emptyCounts, HELD_STATUSES, isRunStatus, type StatusCounts } from '../core/statuses.js';

/**
 * Status counts from the maintained counters (production_status_counts): a
 * few dozen rows per production whatever its size, never a GROUP BY over runs.
 */
export interface ProductionCounts {
  total: number;
  counts: StatusCounts;
  datasets: Record<string, StatusCounts>;
}

export async function readCounts(db: Kysely<Database>, productionId: number): Promise<ProductionCounts> {
  const rows = await db
    .selectFrom('production_status_counts')
    .select(['dataset', 'status', sql<number>`sum(n)`.as('n')])
    .where('production_id', '=', productionId)
    .groupBy(['dataset', 'status'])
    .orderBy('dataset')
    .execute();
  const counts = emptyCounts();
  const datasets: Record<string, StatusCounts> = {};
  let total = 0;
  for (const row of rows) {
    if (!isRunStatus(row.status) || row.n === 0) continue;
    counts[row.status] += row.n;
    (datasets[row.dataset] ??= emptyCounts())[row.status] += row.n;
    total += row.n;
  }
  return { total, counts, datasets };
}

/** Runs held by sessions (claimed through running) for a production, from the counters. */
export async function inFlightCount(db: Kysely<Database>, productionId: number): Promise<number> {
  const row = await db
    .selectFrom('production_status_counts')
    .select(sql<number>`coalesce(sum(n), 0)`.as('n'))
    .where('production_id', '=', productionId)
    .where('status', 'in', [...HELD_STATUSES])
    .executeTakeFirstOrThrow();
  return row.n;
}

/** Jobs on the grid (submitted + running) across all sessions of a production. */
export async function onGridCount(db: Kysely<Database>, productionId: number): Promise<number> {
  const row = await db
    .selectFrom('production_status_counts')
    .select(sql<number>`coalesce(sum(n), 0)`.as('n'))
    .where('production_id', '=', productionId)
    .where('status', 'in', ['submitted', 'running'])
    .executeTakeFirstOrThrow();
  return row.n;
}
