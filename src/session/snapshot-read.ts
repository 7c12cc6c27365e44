import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Production } from '../state/productions.js';
import { readSnapshotBase, throughputOf } from '../state/snapshot-queries.js';
import type { Snapshot, SnapshotParts } from './snapshot.js';

/** What each pass reads for the snapshot: the counters, the rate and ETA, the other sessions, the runs waiting on a parent. */
export async function readSnapshotPart(db: Kysely<Database>, production: Production, sessionId: string): Promise<SnapshotParts['base']> {
  const base = await readSnapshotBase(db, production.id, sessionId, production.parentId);
  const { runsPerHour, etaSeconds } = throughputOf(base);
  return {
    counts: base.counts,
    runsPerHour,
    etaSeconds,
    waitingOnParent: base.waitingOnParent,
    sessions: base.sessions.map((s) => ({
      id: s.id,
      user: s.user_name,
      host: s.host,
      startedAt: s.started_at.getTime(),
      heartbeatAgeSeconds: Math.round(s.age),
      stale: s.age > s.lease_seconds,
      runsHeld: s.held,
    })),
  };
}

/** The production as the snapshot shows it. */
export function productionPart(production: Production): Snapshot['production'] {
  return {
    id: production.id,
    type: production.type,
    version: production.version,
    tag: production.tag,
    status: production.status,
    statusReason: production.statusReason,
    statusSince: production.statusChangedAt.getTime(),
    maxRunning: production.maxRunning,
  };
}
