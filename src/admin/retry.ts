import { sql, type Kysely } from 'kysely';
import { ExpectedError } from '../core/errors.js';
import type { Production } from '../state/productions.js';
import { recordEvent, transitionRuns, type Actor } from '../state/transition.js';
import type { Database } from '../db/schema.js';

/**
 * An operator's retry of failed runs: they go back to `new` through the state
 * machine. By default each run's attempt count is reset (it gets
 * max_attempts fresh attempts); with maxAttempts the production's limit is
 * raised instead and the counts are kept, so the history of attempts stays
 * readable and each run gets only (new limit - attempts used) more.
 */

export interface RetrySelection {
  runs?: readonly number[];
  exitCode?: number;
  dataset?: string;
}

export interface RetryOutcome {
  retried: number[];
  /** Asked for with --runs but not in status failed (with their status), or not in the production (status null). */
  skipped: { run: number; status: string | null }[];
  mode: { kind: 'reset' } | { kind: 'raise'; from: number; to: number };
}

export async function retryFailedRuns(
  db: Kysely<Database>,
  production: Production,
  selection: RetrySelection,
  actor: Actor,
  maxAttempts?: number,
): Promise<RetryOutcome> {
  if (production.status === 'closed') {
    throw new ExpectedError(
      `${production.type} v${production.version} is closed; retried runs would never be claimed. Reopen it first: run-production resume --production ${production.type} --version ${production.version}`,
      1,
    );
  }
  return db.transaction().execute(async (tx) => {
    const row = await tx.selectFrom('productions').select('max_attempts').where('id', '=', production.id).forUpdate().executeTakeFirstOrThrow();
    if (maxAttempts !== undefined && maxAttempts <= row.max_attempts) {
      throw new ExpectedError(
        `--max-attempts ${maxAttempts} does not raise the limit: ${production.type} v${production.version} already allows ${row.max_attempts}. ` +
          `Give a larger number, or leave --max-attempts out to reset the failed runs' attempt counts.`,
        64,
      );
    }
    const asked = selection.runs?.length ? [...new Set(selection.runs)] : null;
    const candidates = await sql<{ run_number: number; status: string; attempts: number; exit_code: number | null }>`
      SELECT run_number, status::text AS status, attempts, exit_code FROM production_runs
       WHERE production_id = ${production.id}
         AND (${asked}::int[] IS NULL OR run_number = ANY(${asked}::int[]))
         AND (${selection.dataset ?? null}::text IS NULL OR dataset = ${selection.dataset ?? null}::text)
         AND (${selection.exitCode ?? null}::int IS NULL OR exit_code = ${selection.exitCode ?? null}::int)
       ORDER BY run_number
       FOR UPDATE`.execute(tx);
    const failed = candidates.rows.filter((r) => r.status === 'failed');
    const found = new Map(candidates.rows.map((r) => [r.run_number, r.status]));
    const skipped = (asked ?? []).filter((run) => found.get(run) !== 'failed').map((run) => ({ run, status: found.get(run) ?? null }));
    const unknown = skipped.filter((s) => s.status === null && !selection.dataset && selection.exitCode === undefined);
    if (unknown.length) {
      throw new ExpectedError(
        `--runs: run(s) ${unknown.map((s) => s.run).join(', ')} are not part of ${production.type} v${production.version}; nothing was retried.`,
        64,
      );
    }
    const mode: RetryOutcome['mode'] = maxAttempts === undefined ? { kind: 'reset' } : { kind: 'raise', from: row.max_attempts, to: maxAttempts };
    if (failed.length === 0) return { retried: [], skipped, mode };

    if (mode.kind === 'raise') {
      await tx.updateTable('productions').set({ max_attempts: mode.to }).where('id', '=', production.id).execute();
    }
    const how = mode.kind === 'reset' ? 'attempts reset to 0' : `max_attempts raised ${mode.from} -> ${mode.to}, attempts kept`;
    const retried = await transitionRuns(tx, {
      productionId: production.id,
      runs: failed.map((r) => ({
        run: r.run_number,
        message: `retry by ${actor.user}: ${mode.kind === 'reset' ? `attempts reset (had ${r.attempts})` : `${r.attempts} of ${mode.to} attempts used`}${r.exit_code !== null ? `; last exit code ${r.exit_code}` : ''}`,
      })),
      from: 'failed',
      to: 'new',
      owner: null,
      actor,
      reason: 'retried_by_operator',
      resetAttempts: mode.kind === 'reset',
    });
    const filters = [
      asked ? `runs ${asked.join(',')}` : null,
      selection.exitCode !== undefined ? `exit code ${selection.exitCode}` : null,
      selection.dataset ? `dataset ${selection.dataset}` : null,
    ].filter(Boolean);
    await recordEvent(tx, {
      productionId: production.id,
      actor,
      kind: 'retry',
      reason: 'retried_by_operator',
      message: `retry by ${actor.user} of ${retried.length} failed run(s)${filters.length ? ` (${filters.join(', ')})` : ''}: ${how}; runs ${retried.join(', ')}`,
    });
    return { retried, skipped, mode };
  });
}
