import { sql, type Kysely, type RawBuilder } from 'kysely';
import { preparedSql } from '../db/prepared.js';
import type { Database } from '../db/schema.js';
import { HELD_STATUSES, type RunStatus } from './statuses.js';

/**
 * The one function that changes a run's status. In a single SQL statement it
 *  - refuses a move that is not in `run_status_transitions`,
 *  - moves only the runs that are in the status the caller expects AND are held
 *    by the session the caller names (so a session whose lease expired can
 *    never overwrite a run that another session now holds),
 *  - writes one event row per moved run,
 * and the status counters follow through the table's statement trigger, all in
 * the same transaction. Many runs move in one statement (the batch form); each
 * run may carry its own values (job id, exit code, outputs ...).
 */

export interface Actor {
  user: string;
  /** Session acting, or null for an operator command run outside a session. */
  sessionId: string | null;
}

/** Per-run values written along with the move. Omitted fields keep (or reset, see below) their value. */
export interface RunUpdate {
  run: number;
  jobId?: string;
  exitCode?: number;
  lastError?: string;
  stagedPath?: string;
  stagedBytes?: number;
  outputs?: Record<string, string>;
  outputBytes?: number;
  /** Event message for this run; defaults to the request's message. */
  message?: string;
}

export interface TransitionRequest {
  productionId: number;
  /**
   * The runs to move: a list, or a query selecting `run_number`s (a claim's
   * `… FOR UPDATE SKIP LOCKED LIMIT k`), which then runs inside this same
   * statement: one round trip for a claim, under the same rules.
   */
  runs: readonly (number | RunUpdate)[] | RawBuilder<{ run_number: number }>;
  from: RunStatus;
  to: RunStatus;
  /**
   * The fence: the session that must hold the runs now. null for runs at rest
   * (new, finished, failed), which nobody holds.
   */
  owner: string | null;
  /** Who does it; for a claim (to = 'claimed') the actor's session becomes the owner. */
  actor: Actor;
  message?: string;
  /** Count this move as a used job attempt (a job ended: failed or finished). */
  countAttempt?: boolean;
  /** Reset the attempt count (an operator's retry of failed runs). */
  resetAttempts?: boolean;
}

export class ForbiddenTransitionError extends Error {
  override readonly name = 'ForbiddenTransitionError';
  constructor(
    readonly from: RunStatus,
    readonly to: RunStatus,
  ) {
    super(`A run cannot go from ${from} to ${to}: that change is not in run_status_transitions.`);
  }
}

type Executor = Kysely<Database>;

/** Moves runs; resolves to the run numbers actually moved (those not in `from` or not held by `owner` are left alone). */
export async function transitionRuns(db: Executor, request: TransitionRequest): Promise<number[]> {
  const { productionId, from, to, owner, actor } = request;
  if (to === 'claimed' && !actor.sessionId) throw new Error('A claim needs a session to hold the runs.');
  const selected = isRawBuilder(request.runs) ? request.runs : null;
  const list = selected ? [] : (request.runs as readonly (number | RunUpdate)[]);
  if (!selected && list.length === 0) {
    await assertAllowed(db, from, to);
    return [];
  }
  const updates = list.map((r) => (typeof r === 'number' ? { run: r } : r));
  const col = <T>(pick: (u: RunUpdate) => T | undefined): (T | null)[] => updates.map((u) => pick(u) ?? null);
  const runNumbers = updates.map((u) => u.run);
  const input = selected
    ? sql`SELECT c.run_number, NULL::text AS job_id, NULL::int AS exit_code, NULL::text AS last_error, NULL::text AS staged_path,
                 NULL::bigint AS staged_bytes, NULL::jsonb AS outputs, NULL::bigint AS output_bytes, NULL::text AS message
            FROM (${selected}) AS c`
    : // Each array behind a scalar subquery, so that the planner cannot count its elements: then a
      // plan for one run costs what a plan for many does, and the server keeps one generic plan for
      // every batch size. Seeing a one-run array, it would plan every small move anew (see preparedSql).
      sql`SELECT * FROM unnest(
        (SELECT ${runNumbers}::int[]), (SELECT ${col((u) => u.jobId)}::text[]), (SELECT ${col((u) => u.exitCode)}::int[]),
        (SELECT ${col((u) => u.lastError)}::text[]), (SELECT ${col((u) => u.stagedPath)}::text[]), (SELECT ${col((u) => u.stagedBytes)}::bigint[]),
        (SELECT ${col((u) => (u.outputs ? JSON.stringify(u.outputs) : undefined))}::jsonb[]), (SELECT ${col((u) => u.outputBytes)}::bigint[]),
        (SELECT ${col((u) => u.message)}::text[])
      ) AS i (run_number, job_id, exit_code, last_error, staged_path, staged_bytes, outputs, output_bytes, message)`;
  const attemptDelta = request.countAttempt ? 1 : 0;
  const resetAttempts = request.resetAttempts === true;
  const newOwner = to === 'claimed' ? actor.sessionId : null;

  const result = await preparedSql<{ allowed: boolean; moved: number[] }>`
    WITH allowed AS (
      SELECT EXISTS (
        SELECT 1 FROM run_status_transitions WHERE from_status = ${from}::run_status AND to_status = ${to}::run_status
      ) AS ok
    ),
    input AS (${input}),
    moved AS (
      UPDATE production_runs AS r SET
        status = ${to}::run_status,
        status_changed_at = now(),
        session_id = CASE
          WHEN ${to}::run_status = 'claimed' THEN ${newOwner}::uuid
          WHEN ${to}::run_status IN ('new', 'finished', 'failed') THEN NULL
          ELSE r.session_id END,
        claimed_by = CASE
          WHEN ${to}::run_status = 'claimed' THEN ${actor.user}::text
          WHEN ${to}::run_status = 'new' THEN NULL
          ELSE r.claimed_by END,
        attempts = CASE WHEN ${resetAttempts} THEN 0 ELSE r.attempts + ${attemptDelta}::int END,
        claimed_at = CASE WHEN ${to}::run_status = 'claimed' THEN now() ELSE r.claimed_at END,
        submitted_at = CASE WHEN ${to}::run_status = 'submitted' THEN now() ELSE r.submitted_at END,
        started_at = CASE WHEN ${to}::run_status = 'running' THEN now()
                          WHEN ${to}::run_status = 'claimed' THEN NULL ELSE r.started_at END,
        finished_at = CASE WHEN ${to}::run_status IN ('finished', 'failed') THEN now()
                           WHEN ${to}::run_status = 'new' THEN NULL ELSE r.finished_at END,
        job_id = coalesce(i.job_id, CASE WHEN ${to}::run_status = 'claimed' THEN NULL ELSE r.job_id END),
        exit_code = coalesce(i.exit_code, CASE WHEN ${to}::run_status = 'claimed' THEN NULL ELSE r.exit_code END),
        last_error = coalesce(i.last_error, CASE WHEN ${to}::run_status = 'finished' THEN NULL ELSE r.last_error END),
        staged_path = coalesce(i.staged_path, CASE WHEN ${to}::run_status IN ('new', 'finished', 'failed') THEN NULL ELSE r.staged_path END),
        staged_bytes = coalesce(i.staged_bytes, CASE WHEN ${to}::run_status = 'new' THEN NULL ELSE r.staged_bytes END),
        outputs = coalesce(i.outputs, CASE WHEN ${to}::run_status = 'new' THEN NULL ELSE r.outputs END),
        output_bytes = coalesce(i.output_bytes, CASE WHEN ${to}::run_status = 'new' THEN NULL ELSE r.output_bytes END)
      FROM input AS i, allowed
      WHERE allowed.ok
        AND r.production_id = ${productionId}
        AND r.run_number = i.run_number
        AND r.status = ${from}::run_status
        AND r.session_id IS NOT DISTINCT FROM ${owner}::uuid
      RETURNING r.run_number, i.message
    ),
    logged AS (
      INSERT INTO events (production_id, run_number, session_id, user_name, from_status, to_status, kind, message)
      SELECT ${productionId}, m.run_number, ${actor.sessionId}::uuid, ${actor.user}, ${from}::run_status, ${to}::run_status,
             'transition', coalesce(m.message, ${request.message ?? null}::text)
        FROM moved AS m
    )
    SELECT (SELECT ok FROM allowed) AS allowed,
           coalesce((SELECT array_agg(run_number ORDER BY run_number) FROM moved), '{}') AS moved
  `.execute(db);
  const row = result.rows[0]!;
  if (!row.allowed) throw new ForbiddenTransitionError(from, to);
  return row.moved;
}

function isRawBuilder(value: unknown): value is RawBuilder<{ run_number: number }> {
  return typeof value === 'object' && value !== null && 'toOperationNode' in value && !Array.isArray(value);
}

async function assertAllowed(db: Executor, from: RunStatus, to: RunStatus): Promise<void> {
  const found = await db
    .selectFrom('run_status_transitions')
    .select('why')
    .where('from_status', '=', from)
    .where('to_status', '=', to)
    .executeTakeFirst();
  if (!found) throw new ForbiddenTransitionError(from, to);
}

/**
 * Returns held runs to `new`, each from the status it is in (not counted as an
 * attempt): abort, drain, reap and release all end this way. Fenced on the owner
 * like every transition; run it inside the caller's transaction.
 */
export async function returnRunsToPool(
  db: Executor,
  request: { productionId: number; runs: readonly { run: number; status: RunStatus }[]; owner: string; actor: Actor; message: string },
): Promise<number[]> {
  const moved: number[] = [];
  for (const status of HELD_STATUSES) {
    const group = request.runs.filter((r) => r.status === status).map((r) => r.run);
    if (group.length === 0) continue;
    moved.push(
      ...(await transitionRuns(db, {
        productionId: request.productionId,
        runs: group,
        from: status,
        to: 'new',
        owner: request.owner,
        actor: request.actor,
        message: request.message,
      })),
    );
  }
  return moved.sort((a, b) => a - b);
}

/**
 * Hands runs of a dead session to a live one without changing their status
 * (adoption after a crash: the job keeps running, the adopter watches it).
 * Fenced on the dead owner like a transition, and logged.
 */
export async function adoptRuns(
  db: Executor,
  request: { productionId: number; runs: readonly number[]; from: string; actor: Actor & { sessionId: string }; message: string },
): Promise<number[]> {
  if (request.runs.length === 0) return [];
  const result = await sql<{ run_number: number }>`
    WITH moved AS (
      UPDATE production_runs SET session_id = ${request.actor.sessionId}::uuid, claimed_by = ${request.actor.user}
       WHERE production_id = ${request.productionId}
         AND run_number = ANY(${[...request.runs]}::int[])
         AND session_id = ${request.from}::uuid
      RETURNING run_number, status
    ),
    logged AS (
      INSERT INTO events (production_id, run_number, session_id, user_name, from_status, to_status, kind, message)
      SELECT ${request.productionId}, run_number, ${request.actor.sessionId}::uuid, ${request.actor.user}, status, status, 'adopt', ${request.message}
        FROM moved
    )
    SELECT run_number FROM moved ORDER BY run_number
  `.execute(db);
  return result.rows.map((r) => r.run_number);
}

/** An event that is not a run transition: operator actions, session starts and ends, warnings. */
export async function recordEvent(
  db: Executor,
  event: { productionId: number | null; run?: number | null; actor: Actor; kind: string; message: string },
): Promise<void> {
  await db
    .insertInto('events')
    .values({
      production_id: event.productionId,
      run_number: event.run ?? null,
      session_id: event.actor.sessionId,
      user_name: event.actor.user,
      kind: event.kind,
      message: event.message,
    })
    .execute();
}
