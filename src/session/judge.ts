import { readFile, rename, rm } from 'node:fs/promises';
import { isOnGrid, type OnGridStatus } from '../core/held-run.js';
import type { JobState } from '../grids/grid.js';
import { readWrapperStatus } from '../grids/wrapper.js';
import { attemptLogPath, LOG_OUTPUTS } from '../outputs/paths.js';
import { validateOutputs } from '../outputs/validate.js';
import type { HeldRunDetail } from '../state/held-runs.js';
import { toAttemptEnd, type AttemptEnd } from '../state/moves.js';
import type { RunUpdate } from '../state/transition.js';
import { attemptFiles, removeAttemptFiles, removeStagedInput, removeStatusTemps } from './attempt-files.js';
import { fenceOf, type JobContext } from './context.js';

/**
 * Judging ended jobs: what their files say (assessEndedJob, files only), then the moves that
 * record it (recordJudgements, many runs in one statement per kind of move). Also the attempt that
 * ends before its job exists (failAttemptBeforeSubmit).
 */

/** What became of a job, as recorded; lost-ownership: the run was no longer this session's to move. */
export type JobOutcome = RecordedOutcome | { kind: 'lost-ownership'; run: number };

export type RecordedOutcome =
  | { kind: 'finished'; run: number; host?: string }
  | { kind: 'retry' | 'failed'; run: number; exitCode: number | null; error: string; attempt: number }
  /** The job was revoked (see revokeJob) and its wrapper ended it: the run is redone, no attempt counted. */
  | { kind: 'revoked'; run: number; error: string };

/** A run on the grid with its detail: the only runs whose jobs end. */
export type OnGridRunDetail = Extract<HeldRunDetail, { status: OnGridStatus }>;

/** What judging an ended job decided, its files already dealt with; recordJudgements writes it down. */
export interface Judgement {
  run: OnGridRunDetail;
  update: RunUpdate;
  outcome: RecordedOutcome;
}

/** The move an outcome makes. Derived, never stored beside it, so that the two cannot disagree. */
export function moveFor(outcome: RecordedOutcome): AttemptEnd {
  switch (outcome.kind) {
    case 'finished':
      return { to: 'finished', countAttempt: true, reason: 'finished' };
    case 'retry':
      return { to: 'new', countAttempt: true, reason: 'retry' };
    case 'failed':
      return { to: 'failed', countAttempt: true, reason: 'failed' };
    case 'revoked':
      return { to: 'new', countAttempt: false, reason: 'revoked' };
  }
}

async function tail(path: string, lines: number): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Judges an ended job: exit 0 and valid outputs → finished. Otherwise the
 * attempt's logs are kept under names with the attempt number, its other
 * outputs (partial) are removed, and the run is to go back to `new` with the
 * attempt counted, or to `failed` once attempts are used up. A job whose
 * wrapper recorded `revoked` was ended because a reaper gave it up, not because
 * it failed: its run goes back to `new` without an attempt counted, and its
 * files go like an aborted attempt's (the next attempt has the same number).
 * Only files are touched here: recordJudgements moves the runs.
 */
export async function assessEndedJob(
  context: JobContext,
  run: OnGridRunDetail,
  state: Extract<JobState, { state: 'done' } | { state: 'lost' }>,
): Promise<Judgement> {
  const { production } = context;
  const files = attemptFiles(production, context.actor.user, run);
  const { attempt, outputs, logs } = files;
  const wrapper = await readWrapperStatus(files.statusPath);
  if (wrapper?.revoked) {
    await removeAttemptFiles(files);
    const error = `job ${run.jobId} was revoked and ended by its wrapper${wrapper.host ? ` on ${wrapper.host}` : ''} (exit ${wrapper.exit ?? 'unknown'}): its session was reaped where the job could not be reached`;
    return {
      run,
      update: { run: run.run, lastError: error, message: `${error}; not counted as an attempt, the run is redone` },
      outcome: { kind: 'revoked', run: run.run, error },
    };
  }
  await removeStatusTemps(files);
  await rm(files.releasePath, { force: true });
  let exitCode: number | null = state.state === 'done' ? state.exitCode : null;
  let error: string;
  if (state.state === 'done' && state.exitCode === 0) {
    const validation = await validateOutputs(outputs);
    if (validation.ok) {
      return {
        run,
        update: {
          run: run.run,
          outputs,
          outputBytes: validation.bytes,
          exitCode: 0,
          message: `finished${state.host ? ` on ${state.host}` : ''}, attempt ${attempt}, ${validation.bytes} bytes of output`,
        },
        outcome: { kind: 'finished', run: run.run, host: state.host },
      };
    }
    error = `exit 0 but outputs not valid: ${validation.problems.join('; ')}`;
  } else if (state.state === 'lost') {
    error = `job ${run.jobId} lost: ${state.reason}`;
    exitCode = null;
  } else {
    const lastLines = await tail(logs.stderr, 5);
    error = `exit code ${state.exitCode}${state.reason ? ` (${state.reason})` : ''}${lastLines ? `: ${lastLines}` : ''}`;
  }
  // Keep the evidence of this attempt: logs and wrapper status under attempt-numbered names.
  for (const path of new Set([logs.stdout, logs.stderr])) await rename(path, attemptLogPath(path, attempt)).catch(() => undefined);
  for (const [name, path] of Object.entries(outputs)) {
    if (!(LOG_OUTPUTS as readonly string[]).includes(name)) await rm(path, { force: true });
  }
  const host = state.state === 'done' && state.host ? ` on ${state.host}` : '';
  return {
    run,
    update: { run: run.run, exitCode: exitCode ?? undefined, ...failedAttempt(production.maxAttempts, attempt, error, host) },
    outcome: { kind: attempt >= production.maxAttempts ? 'failed' : 'retry', run: run.run, exitCode, error, attempt },
  };
}

/** The last error and event message of a failed attempt. */
function failedAttempt(maxAttempts: number, attempt: number, error: string, host = ''): { lastError: string; message: string } {
  return { lastError: error.slice(0, 4000), message: `attempt ${attempt}/${maxAttempts} failed${host}: ${error.split('\n')[0]!.slice(0, 300)}` };
}

/**
 * Records judged jobs: one move per (from, outcome's move) for all of them, each
 * run with its own values and event message. A run this session no longer holds
 * is left alone and reported as lost-ownership.
 *
 * The staged inputs are deleted inside the transaction, after the runs are
 * locked and seen to be still ours, and before the moves commit: a session
 * killed in between leaves runs it still holds (whoever reaps or adopts them
 * judges the job again, without needing the input), never a finished run
 * whose input nobody will delete.
 */
export async function recordJudgements(context: JobContext, judgements: readonly Judgement[]): Promise<JobOutcome[]> {
  const groups = new Map<string, Judgement[]>();
  for (const j of judgements) {
    const key = `${j.run.status}>${moveFor(j.outcome).reason}`;
    groups.set(key, [...(groups.get(key) ?? []), j]);
  }
  const moved = await context.db.transaction().execute(async (tx) => {
    const held = await lockOwnRuns(tx, context, judgements.map((j) => j.run.run));
    for (const j of judgements) if (held.has(j.run.run)) await removeStagedInput(context.production, j.run.stagedPath);
    const moved = new Set<number>();
    for (const group of groups.values()) {
      const runs = await toAttemptEnd(tx, fenceOf(context), group[0]!.run.status, moveFor(group[0]!.outcome), group.map((j) => j.update));
      for (const run of runs) moved.add(run);
    }
    return moved;
  });
  return judgements.map((j) => (moved.has(j.run.run) ? j.outcome : { kind: 'lost-ownership', run: j.run.run }));
}

/** Locks the runs (of this production) this session still holds, among `runs`, for the transaction. */
async function lockOwnRuns(tx: JobContext['db'], context: JobContext, runs: readonly number[], status?: 'staged'): Promise<Set<number>> {
  const rows = await tx
    .selectFrom('production_runs')
    .select('run_number')
    .where('production_id', '=', context.production.id)
    .where('run_number', 'in', runs.length ? [...runs] : [-1])
    .where('session_id', '=', context.actor.sessionId)
    .$if(status !== undefined, (q) => q.where('status', '=', status!))
    .forUpdate()
    .execute();
  return new Set(rows.map((r) => r.run_number));
}

/**
 * A staged run whose job could not be prepared (prepareJob threw: an output directory that cannot
 * be created, a full disk): that attempt fails, and only that one. The run goes back to `new` with
 * the attempt counted, or to `failed` once attempts are used up, with the error as last_error and
 * an event saying the job could not be prepared. Its staged input is deleted like a judged job's,
 * after the run is locked and seen to be still ours (`new` forgets where it was staged).
 */
export async function failAttemptBeforeSubmit(
  context: JobContext,
  run: Pick<HeldRunDetail, 'run' | 'attempts' | 'stagedPath'>,
  error: string,
): Promise<JobOutcome> {
  const { production } = context;
  const attempt = run.attempts + 1;
  const to = attempt >= production.maxAttempts ? 'failed' : 'new';
  const why = `the job could not be prepared: ${error}`;
  const moved = await context.db.transaction().execute(async (tx) => {
    if (!(await lockOwnRuns(tx, context, [run.run], 'staged')).has(run.run)) return [];
    const end: AttemptEnd = to === 'failed' ? { to, countAttempt: true, reason: 'prepare_failed' } : { to, countAttempt: true, reason: 'prepare_failed' };
    const moved = await toAttemptEnd(tx, fenceOf(context), 'staged', end, [{ run: run.run, ...failedAttempt(production.maxAttempts, attempt, why) }]);
    // Only once the move is sure (an ended session moves nothing, see transitionRuns).
    if (moved.length) await removeStagedInput(production, run.stagedPath);
    return moved;
  });
  if (moved.length === 0) return { kind: 'lost-ownership', run: run.run };
  return { kind: to === 'failed' ? 'failed' : 'retry', run: run.run, exitCode: null, error: why, attempt };
}

/** The held runs whose jobs are on the grid. */
export const onGridRuns = (held: readonly HeldRunDetail[]): OnGridRunDetail[] => held.filter(isOnGrid);
