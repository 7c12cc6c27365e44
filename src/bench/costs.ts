import type { Kysely } from 'kysely';
import { readCounts } from '../state/counts.js';
import { readSnapshotBase } from '../state/snapshot-queries.js';
import type { Database } from '../db/schema.js';
import { medianMs } from './stats.js';

/** What `status` costs (readCounts) and what one display snapshot costs (its three queries), median of several. */
export async function measureReadCosts(db: Kysely<Database>, productionId: number, sessionId: string): Promise<{ statusMs: number; snapshotMs: number }> {
  const statusMs = await medianMs(() => readCounts(db, productionId));
  const snapshotMs = await medianMs(() => readSnapshotBase(db, productionId, sessionId));
  return { statusMs, snapshotMs };
}
