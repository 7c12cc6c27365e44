import { sql, type Kysely, type RawBuilder } from 'kysely';
import { preparedSql } from '../db/prepared.js';
import type { Database } from '../db/schema.js';
import { reasonForMove, type EventReason } from '../core/event-reasons.js';
import { HELD_STATUSES, ON_GRID_STATUSES, type RunStatus } from '../core/statuses.js';

/**
 * The one function that changes a run's status. In a single SQL statement it
 *  - refuses a move that is not in `run_status_transitions`,
 *  - moves only the runs that are in the status the caller expects AND are held
 *    by the session the caller names (so a session whose lease expired can
 *    never overwrite a run that another session now holds),
 *  - moves nothing when the acting session has ended (released or reaped), even
 *    runs it still holds: see session_may_act in sql/008_faults.sql, and
 *    lock_session_for_ending, which whoever ends a session takes first,
 *  - writes one event row per moved run, saying why (a reason code, see
 *    src/core/event-reasons.ts) and the attempt, job, exit code, host and error
 *    line it concerns, each in a column of its own (sql/010_structured_events.sql),
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
  /** Release token of the job's submission (see JobRelease). */
  jobToken?: string;
  exitCode?: number;
  lastError?: string;
  stagedPath?: string;
  stagedBytes?: number;
  outputs?: Record<string, string>;
  outputBytes?: number;
  /** Event message for this run; defaults to the request's message. */
  message?: string;
  /** Event reason for this run; defaults to the request's reason, else to the one its move implies (reasonForMove). */
  reason?: EventReason;
  /** Host the job ran on, for the event of a job's end (the wrapper's status file says it). */
  host?: string;
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
  /**
   * Why, for every run's event (a run's own RunUpdate.reason wins). Absent: derived per run from the
   * move (from, to, countAttempt, and whether the run carries a lastError; see reasonForMove).
   */
  reason?: EventReason;
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
  // Only the per-run values some run carries travel, and the SET list names only the columns this
  // move writes: the server initialises every expression of a statement on each execution.
  const carried = PER_RUN_VALUES.filter((v) => updates.some((u) => u[v.field] !== undefined));
  const event = eventValues(request, updates, carried);
  const inputColumns = [...carried.map((v) => v.column), ...event.carried.map((v) => v.column)];
  const input = selected
    ? sql`SELECT c.run_number FROM (${selected}) AS c`
    : // Each array behind a scalar subquery, so that the planner cannot count its elements: then a
      // plan for one run costs what a plan for many does, and the server keeps one generic plan for
      // every batch size. Seeing a one-run array, it would plan every small move anew (see preparedSql).
      sql`SELECT * FROM unnest(${sql.join([
        sql`(SELECT ${updates.map((u) => u.run)}::int[])`,
        ...carried.map((v) => sql`(SELECT ${updates.map((u) => parameter(v, u))}::${sql.raw(v.type)}[])`),
        ...event.carried.map((v) => sql`(SELECT ${updates.map(v.value)}::text[])`),
      ])}) AS i (${sql.raw(['run_number', ...inputColumns].join(', '))})`;

  const result = await preparedSql<{ allowed: boolean; moved: number[] }>`
    WITH allowed AS (
      SELECT EXISTS (
        SELECT 1 FROM run_status_transitions WHERE from_status = ${from}::run_status AND to_status = ${to}::run_status
      ) AS ok,
      -- The acting session must be live (an operator, NULL, always may): one that was ended moves
      -- nothing, not even runs it still holds. A CTE calling a volatile function is evaluated once.
      session_may_act(${actor.sessionId}::uuid) AS live
    ),
    input AS (${input}),
    moved AS (
      UPDATE production_runs AS r SET ${sql.join(assignments(request, carried))}
      FROM input AS i, allowed
      WHERE allowed.ok AND allowed.live
        AND r.production_id = ${productionId}
        AND r.run_number = i.run_number
        AND r.status = ${from}::run_status
        AND r.session_id IS NOT DISTINCT FROM ${owner}::uuid
      RETURNING ${sql.join(event.returning)}
    ),
    logged AS (
      INSERT INTO events (production_id, run_number, session_id, user_name, from_status, to_status, kind, message,
                          reason, attempt, job_id, exit_code, host, error)
      SELECT ${productionId}, m.run_number, ${actor.sessionId}::uuid, ${actor.user}, ${from}::run_status, ${to}::run_status,
             'transition', ${sql.join(event.columns)}
        FROM moved AS m
    )
    SELECT (SELECT ok FROM allowed) AS allowed,
           coalesce((SELECT array_agg(run_number ORDER BY run_number) FROM moved), '{}') AS moved
  `.execute(db);
  const row = result.rows[0]!;
  if (!row.allowed) throw new ForbiddenTransitionError(from, to);
  return row.moved;
}

/**
 * Per-run values a move may carry, and the moves that clear each column when
 * a run carries no value for it (a claim starts a clean attempt; a run back
 * at `new` forgets where it was staged and what it produced).
 */
interface PerRunValue {
  field: Exclude<keyof RunUpdate, 'run' | 'message' | 'reason' | 'host'>;
  column: string;
  type: 'text' | 'int' | 'bigint' | 'jsonb';
  clearedBy: readonly RunStatus[];
}

const PER_RUN_VALUES: readonly PerRunValue[] = [
  { field: 'jobId', column: 'job_id', type: 'text', clearedBy: ['claimed'] },
  { field: 'jobToken', column: 'job_token', type: 'text', clearedBy: ['claimed'] },
  { field: 'exitCode', column: 'exit_code', type: 'int', clearedBy: ['claimed'] },
  { field: 'lastError', column: 'last_error', type: 'text', clearedBy: ['finished'] },
  { field: 'stagedPath', column: 'staged_path', type: 'text', clearedBy: ['new', 'finished', 'failed'] },
  { field: 'stagedBytes', column: 'staged_bytes', type: 'bigint', clearedBy: ['new'] },
  { field: 'outputs', column: 'outputs', type: 'jsonb', clearedBy: ['new'] },
  { field: 'outputBytes', column: 'output_bytes', type: 'bigint', clearedBy: ['new'] },
];

function parameter(value: PerRunValue, update: RunUpdate): unknown {
  const given = update[value.field];
  if (given === undefined) return null;
  return value.type === 'jsonb' ? JSON.stringify(given) : given;
}

/** Per-run values that only the event carries (not columns of production_runs). */
interface EventValue {
  column: 'message' | 'reason' | 'host';
  value: (update: RunUpdate) => string | null;
}

/**
 * What the events of a move say, as SQL over the `moved` rows (m): the RETURNING list that brings
 * the values there, and the expressions for message, reason, attempt, job_id, exit_code, host and
 * error, in that order. The attempt and the job come from the run's row, so that they are right
 * whoever calls: a move that counts an attempt belongs to the attempt it used (attempts after the
 * move), any other move of a held run to the attempt under way (attempts + 1); only the submission
 * and the moves of a job on the grid name a job.
 */
function eventValues(request: TransitionRequest, updates: readonly RunUpdate[], carried: readonly PerRunValue[]) {
  const { from, to } = request;
  const countAttempt = request.countAttempt === true;
  const reasonOf = (u: RunUpdate): EventReason =>
    u.reason ?? request.reason ?? reasonForMove({ from, to, countAttempt, carriesError: u.lastError !== undefined });
  // One reason for all (a parameter), unless the runs of this move differ (then a per-run array).
  const reasons = updates.map(reasonOf);
  const first = reasons[0] ?? request.reason ?? reasonForMove({ from, to, countAttempt, carriesError: false });
  const uniformReason = reasons.every((r) => r === first) ? first : null;
  const perRun: EventValue[] = [];
  if (updates.some((u) => u.message !== undefined)) perRun.push({ column: 'message', value: (u) => u.message ?? null });
  if (uniformReason === null) perRun.push({ column: 'reason', value: reasonOf });
  if (updates.some((u) => u.host !== undefined)) perRun.push({ column: 'host', value: (u) => u.host ?? null });
  const has = (column: string) => perRun.some((v) => v.column === column) || carried.some((v) => v.column === column);

  const returning = [sql`r.run_number`, sql`r.attempts`, sql`r.job_id`, ...perRun.map((v) => sql.raw(`i.${v.column}`))];
  if (has('exit_code')) returning.push(sql`i.exit_code AS given_exit_code`);
  if (has('last_error')) returning.push(sql`i.last_error AS given_last_error`);
  const atRest = from === 'finished' || from === 'failed' || request.resetAttempts === true;
  const jobMove = to === 'submitted' || (ON_GRID_STATUSES as readonly RunStatus[]).includes(from);
  const columns = [
    has('message') ? sql`coalesce(m.message, ${request.message ?? null}::text)` : sql`${request.message ?? null}::text`,
    uniformReason === null ? sql`m.reason` : sql`${uniformReason}::text`,
    atRest ? sql`NULL::int` : countAttempt ? sql`m.attempts` : sql`m.attempts + 1`,
    jobMove ? sql`m.job_id` : sql`NULL::text`,
    has('exit_code') ? sql`m.given_exit_code` : sql`NULL::int`,
    has('host') ? sql`m.host` : sql`NULL::text`,
    has('last_error') ? sql`left(split_part(m.given_last_error, chr(10), 1), 300)` : sql`NULL::text`,
  ];
  return { carried: perRun, returning, columns };
}

/** The SET list of a move to `to`: what every such move writes, then the per-run values. */
function assignments(request: TransitionRequest, carried: readonly PerRunValue[]) {
  const { to, actor } = request;
  const set = [sql`status = ${to}::run_status`, sql`status_changed_at = now()`];
  if (to === 'claimed') {
    set.push(sql`session_id = ${actor.sessionId}::uuid`, sql`claimed_by = ${actor.user}::text`, sql`claimed_at = now()`, sql`started_at = NULL`);
  }
  if (to === 'new') set.push(sql`session_id = NULL`, sql`claimed_by = NULL`, sql`finished_at = NULL`);
  if (to === 'finished' || to === 'failed') set.push(sql`session_id = NULL`, sql`finished_at = now()`);
  if (to === 'submitted') set.push(sql`submitted_at = now()`);
  if (to === 'running') set.push(sql`started_at = now()`);
  if (request.resetAttempts) set.push(sql`attempts = 0`);
  else if (request.countAttempt) set.push(sql`attempts = r.attempts + 1`);
  for (const v of PER_RUN_VALUES) {
    const cleared = v.clearedBy.includes(to);
    const column = sql.raw(v.column);
    if (carried.includes(v)) set.push(sql`${column} = coalesce(i.${column}, ${cleared ? sql`NULL` : sql`r.${column}`})`);
    else if (cleared) set.push(sql`${column} = NULL`);
  }
  return set;
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
  request: {
    productionId: number;
    runs: readonly { run: number; status: RunStatus }[];
    owner: string;
    actor: Actor;
    message: string;
    /** Who returns them: their own session (rolled_back, the default), a reaper (reaped), an operator (released). */
    reason?: Extract<EventReason, 'rolled_back' | 'reaped' | 'released'>;
  },
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
        reason: request.reason ?? 'rolled_back',
      })),
    );
  }
  return moved.sort((a, b) => a - b);
}

/**
 * Hands runs of a dead session to a live one without changing their status
 * (adoption after a crash: the job keeps running, the adopter watches it).
 * Fenced on the dead owner like a transition, refused when the adopter itself
 * has ended, and logged.
 */
export async function adoptRuns(
  db: Executor,
  request: { productionId: number; runs: readonly number[]; from: string; actor: Actor & { sessionId: string }; message: string },
): Promise<number[]> {
  if (request.runs.length === 0) return [];
  const result = await sql<{ run_number: number }>`
    WITH live AS (
      -- Only a live adopter takes runs over (see transitionRuns).
      SELECT session_may_act(${request.actor.sessionId}::uuid) AS ok
    ),
    moved AS (
      UPDATE production_runs SET session_id = ${request.actor.sessionId}::uuid, claimed_by = ${request.actor.user}
        FROM live
       WHERE live.ok
         AND production_id = ${request.productionId}
         AND run_number = ANY(${[...request.runs]}::int[])
         AND session_id = ${request.from}::uuid
      RETURNING run_number, status, attempts, job_id
    ),
    logged AS (
      -- The adopted run's attempt goes on under its new owner, its job too when it is on the grid.
      INSERT INTO events (production_id, run_number, session_id, user_name, from_status, to_status, kind, message, reason, attempt, job_id)
      SELECT ${request.productionId}, run_number, ${request.actor.sessionId}::uuid, ${request.actor.user}, status, status, 'adopt', ${request.message},
             'adopted', attempts + 1, CASE WHEN status IN ('submitted', 'running') THEN job_id END
        FROM moved
    )
    SELECT run_number FROM moved ORDER BY run_number
  `.execute(db);
  return result.rows.map((r) => r.run_number);
}

/** An event that is not a run transition: operator actions, session starts and ends, warnings. */
export async function recordEvent(
  db: Executor,
  event: { productionId: number | null; run?: number | null; actor: Actor; kind: string; reason: EventReason; message: string },
): Promise<void> {
  await db
    .insertInto('events')
    .values({
      production_id: event.productionId,
      run_number: event.run ?? null,
      session_id: event.actor.sessionId,
      user_name: event.actor.user,
      kind: event.kind,
      reason: event.reason,
      message: event.message,
    })
    .execute();
}
