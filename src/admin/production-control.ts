import { sql, type Kysely } from 'kysely';
import { ExpectedError } from '../core/errors.js';
import type { Production } from '../state/productions.js';
import { recordEvent, type Actor } from '../state/transition.js';
import type { Database } from '../db/schema.js';

/**
 * Operator switches on a production: pause, resume, close, and its cap on runs
 * in flight. Each change and its event are written in one transaction, on the
 * production row locked FOR UPDATE, so two coordinators acting at once see
 * each other's change instead of overwriting it. Sessions read the production
 * row at every loop pass and claimRuns refuses a production that is not active.
 */

export interface ControlOutcome {
  /** False when the production already was in the asked state (nothing written). */
  changed: boolean;
  message: string;
}

type Tx = Kysely<Database>;

async function lockProduction(tx: Tx, id: number) {
  return tx.selectFrom('productions').selectAll().where('id', '=', id).forUpdate().executeTakeFirstOrThrow();
}

const label = (p: Pick<Production, 'type' | 'version'>) => `${p.type} v${p.version}`;

export async function pauseProduction(db: Kysely<Database>, production: Production, reason: string, actor: Actor): Promise<ControlOutcome> {
  return db.transaction().execute(async (tx) => {
    const row = await lockProduction(tx, production.id);
    if (row.status === 'closed') {
      throw new ExpectedError(`${label(production)} is closed; there is nothing to pause. (resume reopens a closed production.)`, 1);
    }
    if (row.status === 'paused') {
      return { changed: false, message: `${label(production)} is already paused since ${row.status_changed_at.toISOString()}: ${row.status_reason ?? '(no reason)'}` };
    }
    await tx
      .updateTable('productions')
      .set({ status: 'paused', status_reason: reason, status_changed_at: sql`now()` })
      .where('id', '=', production.id)
      .execute();
    await recordEvent(tx, { productionId: production.id, actor, kind: 'pause', reason: 'paused', message: `paused by ${actor.user}: ${reason}` });
    return { changed: true, message: `${label(production)} paused: ${reason}. Running jobs go on; nobody claims or submits until \`run-production resume --production ${production.type} --version ${production.version}\`.` };
  });
}

export async function resumeProduction(db: Kysely<Database>, production: Production, actor: Actor): Promise<ControlOutcome> {
  return db.transaction().execute(async (tx) => {
    const row = await lockProduction(tx, production.id);
    if (row.status === 'active') return { changed: false, message: `${label(production)} is already active.` };
    const was = row.status === 'closed' ? 'reopened (was closed)' : `resumed (was paused: ${row.status_reason ?? 'no reason'})`;
    await tx
      .updateTable('productions')
      .set({ status: 'active', status_reason: null, status_changed_at: sql`now()`, stopped_at: null })
      .where('id', '=', production.id)
      .execute();
    // The auto-pause counts consecutive failures since the last resume event: this one starts a fresh count.
    await recordEvent(tx, { productionId: production.id, actor, kind: 'resume', reason: row.status === 'closed' ? 'reopened' : 'resumed', message: `${was} by ${actor.user}` });
    return { changed: true, message: `${label(production)} ${was}; sessions claim and submit again.` };
  });
}

export async function closeProduction(db: Kysely<Database>, production: Production, reason: string | null, actor: Actor): Promise<ControlOutcome> {
  return db.transaction().execute(async (tx) => {
    const row = await lockProduction(tx, production.id);
    if (row.status === 'closed') return { changed: false, message: `${label(production)} is already closed since ${row.stopped_at?.toISOString() ?? '?'}.` };
    // Exact count from the runs (not the sharded counters): this decides whether we may close.
    const counts = await sql<{ in_flight: number; left: number; failed: number; finished: number; total: number }>`
      SELECT count(*) FILTER (WHERE status IN ('claimed', 'downloading', 'staged', 'submitted', 'running'))::int AS in_flight,
             count(*) FILTER (WHERE status = 'new')::int AS left,
             count(*) FILTER (WHERE status = 'failed')::int AS failed,
             count(*) FILTER (WHERE status = 'finished')::int AS finished,
             count(*)::int AS total
        FROM production_runs WHERE production_id = ${production.id}`.execute(tx);
    const c = counts.rows[0]!;
    if (c.in_flight > 0) {
      throw new ExpectedError(
        `${label(production)} has ${c.in_flight} run(s) in flight (claimed to running); close refused. ` +
          `Pause it (run-production pause --production ${production.type} --reason ...), let the sessions finish or drain, then close.`,
        1,
      );
    }
    const summary = `${c.finished}/${c.total} finished, ${c.failed} failed, ${c.left} never processed`;
    const why = reason ?? summary;
    await tx
      .updateTable('productions')
      .set({ status: 'closed', status_reason: why, status_changed_at: sql`now()`, stopped_at: sql`now()` })
      .where('id', '=', production.id)
      .execute();
    await recordEvent(tx, { productionId: production.id, actor, kind: 'close', reason: 'closed', message: `closed by ${actor.user}: ${why}${reason ? ` (${summary})` : ''}` });
    return { changed: true, message: `${label(production)} closed: ${summary}.` };
  });
}

export async function setMaxRunning(db: Kysely<Database>, production: Production, maxRunning: number | null, actor: Actor): Promise<ControlOutcome> {
  return db.transaction().execute(async (tx) => {
    const row = await lockProduction(tx, production.id);
    const show = (n: number | null) => (n === null ? 'none' : String(n));
    if (row.max_running === maxRunning) return { changed: false, message: `${label(production)} max-running is already ${show(maxRunning)}.` };
    await tx.updateTable('productions').set({ max_running: maxRunning }).where('id', '=', production.id).execute();
    await recordEvent(tx, {
      productionId: production.id,
      actor,
      kind: 'limits',
      reason: 'limits_changed',
      message: `max-running ${show(row.max_running)} -> ${show(maxRunning)} by ${actor.user}`,
    });
    return {
      changed: true,
      message: `${label(production)} max-running ${show(row.max_running)} -> ${show(maxRunning)}; sessions apply it at their next pass (jobs already running are not stopped).`,
    };
  });
}
