import type { Kysely } from 'kysely';
import { heldRunFromRow, type HeldRun, type HeldRunRow } from '../core/held-run.js';
import { preparedSql } from '../db/prepared.js';
import type { Database } from '../db/schema.js';

/** What a session's loop knows of a run it holds: the held run plus its catalogue entry and reservation. */
export type HeldRunDetail = HeldRun & {
  stagedBytes: number | null;
  statusChangedAt: Date;
  sizeBytes: number | null;
  checksum: string | null;
  source: string | null;
};

type HeldRunDetailRow = HeldRunRow & {
  staged_bytes: number | null;
  status_changed_at: Date;
  size_bytes: number | null;
  checksum: string | null;
  source: string | null;
};

/** The runs a session holds, with their catalogue entries, in run order: what every loop pass starts from (prepared: it runs every pass). */
export async function readHeldRuns(db: Kysely<Database>, sessionId: string): Promise<HeldRunDetail[]> {
  const rows = await preparedSql<HeldRunDetailRow>`
    SELECT pr.run_number, pr.dataset, pr.status, pr.attempts, pr.job_id, pr.job_token, pr.staged_path, pr.staged_bytes, pr.status_changed_at,
           r.size_bytes, r.checksum, r.source
      FROM production_runs AS pr JOIN runs AS r USING (run_number)
     WHERE pr.session_id = ${sessionId}::uuid
     ORDER BY pr.run_number`.execute(db);
  return rows.rows.map((r) => ({
    ...heldRunFromRow(r),
    stagedBytes: r.staged_bytes,
    statusChangedAt: r.status_changed_at,
    sizeBytes: r.size_bytes,
    checksum: r.checksum,
    source: r.source,
  }));
}
