import { sql, type Kysely } from 'kysely';
import { ExpectedError } from '../core/errors.js';
import type { Database } from '../db/schema.js';

/** A session as the bookkeeping commands see it, with its lease measured on the database clock. */
export interface SessionRow {
  id: string;
  user: string;
  host: string;
  pid: number;
  productionId: number | null;
  startedAt: Date;
  endedAt: Date | null;
  endReason: string | null;
  leaseSeconds: number;
  /** Seconds until the lease expires (negative: expired that long ago). */
  leaseLeftSeconds: number;
  leaseExpiresAt: Date;
}

/** Shifters copy the 8-character id the display shows; shorter prefixes are too likely to be ambiguous. */
export const MIN_SESSION_PREFIX = 8;

/** The session whose id is `idOrPrefix` or starts with it (8+ characters); errors say what to type instead. */
export async function findSession(db: Kysely<Database>, idOrPrefix: string, flag = '--session'): Promise<SessionRow> {
  const prefix = idOrPrefix.trim().toLowerCase();
  if (prefix.length < MIN_SESSION_PREFIX || !/^[0-9a-f-]+$/.test(prefix)) {
    throw new ExpectedError(
      `${flag} ${idOrPrefix}: give the session id or its first ${MIN_SESSION_PREFIX} characters or more (as shown by \`run-production sessions\`).`,
      64,
    );
  }
  const rows = await sql<{
    id: string;
    user_name: string;
    host: string;
    pid: number;
    production_id: number | null;
    started_at: Date;
    ended_at: Date | null;
    end_reason: string | null;
    lease_seconds: number;
    lease_left: number;
    lease_expires_at: Date;
  }>`
    SELECT id, user_name, host, pid, production_id, started_at, ended_at, end_reason, lease_seconds,
           extract(epoch FROM heartbeat_at + lease_seconds * interval '1 second' - now())::float8 AS lease_left,
           heartbeat_at + lease_seconds * interval '1 second' AS lease_expires_at
      FROM sessions
     WHERE id::text LIKE ${prefix.replace(/[%_\\]/g, '') + '%'}
     ORDER BY started_at
     LIMIT 5`.execute(db);
  if (rows.rows.length === 0) throw new ExpectedError(`${flag} ${idOrPrefix}: no session has that id. List them with: run-production sessions --all`, 64);
  if (rows.rows.length > 1) {
    throw new ExpectedError(
      `${flag} ${idOrPrefix} is ambiguous: it matches sessions ${rows.rows.map((r) => r.id).join(', ')}. Give more characters.`,
      64,
    );
  }
  const r = rows.rows[0]!;
  return {
    id: r.id,
    user: r.user_name,
    host: r.host,
    pid: r.pid,
    productionId: r.production_id,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    endReason: r.end_reason,
    leaseSeconds: r.lease_seconds,
    leaseLeftSeconds: r.lease_left,
    leaseExpiresAt: r.lease_expires_at,
  };
}
