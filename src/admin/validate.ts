import { sql, type Kysely } from 'kysely';
import type { Production } from '../state/productions.js';
import { recordEvent, transitionRuns, type Actor } from '../state/transition.js';
import type { Database } from '../db/schema.js';
import { validateOutputs } from '../outputs/validate.js';

/**
 * Checks finished runs against the disk: every recorded output present and
 * intact (validateOutputs: not empty, ROOT files as long as their header says)
 * and the total size equal to what was recorded when the run finished. Disks
 * get cleaned up by hand, restored from tape, or filled up mid-copy; this is
 * how a coordinator finds out before a physicist does.
 */

export interface Mismatch {
  run: number;
  dataset: string;
  problems: string[];
}

export interface ValidationReport {
  checked: number;
  mismatches: Mismatch[];
}

/** How many runs are stat'ed at once: output areas are network file systems, where latency dominates. */
const PARALLEL = 16;

export async function checkFinishedRuns(db: Kysely<Database>, production: Production): Promise<ValidationReport> {
  const rows = await sql<{ run_number: number; dataset: string; outputs: Record<string, string> | null; output_bytes: number | null }>`
    SELECT run_number, dataset, outputs, output_bytes FROM production_runs
     WHERE production_id = ${production.id} AND status = 'finished'
     ORDER BY run_number`.execute(db);
  const mismatches: Mismatch[] = [];
  let next = 0;
  const worker = async () => {
    while (next < rows.rows.length) {
      const row = rows.rows[next++]!;
      const problems = await checkRun(row.outputs, row.output_bytes);
      if (problems.length) mismatches.push({ run: row.run_number, dataset: row.dataset, problems });
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, rows.rows.length) }, worker));
  mismatches.sort((a, b) => a.run - b.run);
  return { checked: rows.rows.length, mismatches };
}

async function checkRun(outputs: Record<string, string> | null, recordedBytes: number | null): Promise<string[]> {
  if (!outputs || Object.keys(outputs).length === 0) return ['no outputs recorded for a finished run'];
  const validation = await validateOutputs(outputs);
  if (!validation.ok) return validation.problems;
  if (recordedBytes !== null && validation.bytes !== recordedBytes) {
    return [`outputs hold ${validation.bytes} bytes on disk, ${recordedBytes} were recorded when the run finished`];
  }
  return [];
}

/**
 * Returns the damaged runs to `new` (finished -> new, nobody holds them) so
 * that sessions redo them, each with the problems in its event. Runs that
 * changed status since the check (someone else fixed them) are left alone.
 */
export async function returnDamagedRuns(db: Kysely<Database>, production: Production, mismatches: readonly Mismatch[], actor: Actor): Promise<number[]> {
  if (mismatches.length === 0) return [];
  return db.transaction().execute(async (tx) => {
    const moved = await transitionRuns(tx, {
      productionId: production.id,
      runs: mismatches.map((m) => ({
        run: m.run,
        lastError: `validate: ${m.problems.join('; ')}`.slice(0, 4000),
        message: `validate --fix by ${actor.user}: ${m.problems.join('; ')}`.slice(0, 1000),
      })),
      from: 'finished',
      to: 'new',
      owner: null,
      actor,
      reason: 'validated_bad',
    });
    if (moved.length) {
      await recordEvent(tx, {
        productionId: production.id,
        actor,
        kind: 'validate-fix',
        reason: 'validated_bad',
        message: `validate --fix by ${actor.user} returned ${moved.length} damaged run(s) to new: ${moved.join(', ')}`,
      });
    }
    return moved;
  });
}
