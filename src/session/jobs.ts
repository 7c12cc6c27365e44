import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Kysely } from 'kysely';
import { preparedSql } from '../db/prepared.js';
import type { Database } from '../db/schema.js';
import type { JobSpec, JobState } from '../grids/grid.js';
import { readWrapperStatus, RELEASE_WAIT_SECONDS, releasePathFor, type JobRelease } from '../grids/wrapper.js';
import {
  attemptLogPath,
  LOG_OUTPUTS,
  logPaths,
  modulesFilePath,
  outputPaths,
  runJobDir,
  statusFilePath,
  type RunIdentity,
} from '../outputs/paths.js';
import { validateOutputs } from '../outputs/validate.js';
import type { Production } from '../state/productions.js';
import type { HeldStatus } from '../core/statuses.js';
import type { HeldRun } from '../state/sessions.js';
import { transitionRuns, type Actor, type RunUpdate } from '../state/transition.js';

/** What the loop knows of a run it holds: the held run plus its catalogue entry. */
export interface HeldRunDetail extends HeldRun {
  stagedBytes: number | null;
  statusChangedAt: Date;
  sizeBytes: number | null;
  checksum: string | null;
  source: string | null;
}

/** The runs a session holds, with their catalogue entries, in run order: what every loop pass starts from (prepared: it runs every pass). */
export async function readHeldRuns(db: Kysely<Database>, sessionId: string): Promise<HeldRunDetail[]> {
  const rows = await preparedSql<{
    run_number: number;
    dataset: string;
    status: HeldStatus;
    attempts: number;
    job_id: string | null;
    job_token: string | null;
    staged_path: string | null;
    staged_bytes: number | null;
    status_changed_at: Date;
    size_bytes: number | null;
    checksum: string | null;
    source: string | null;
  }>`
    SELECT pr.run_number, pr.dataset, pr.status, pr.attempts, pr.job_id, pr.job_token, pr.staged_path, pr.staged_bytes, pr.status_changed_at,
           r.size_bytes, r.checksum, r.source
      FROM production_runs AS pr JOIN runs AS r USING (run_number)
     WHERE pr.session_id = ${sessionId}::uuid
     ORDER BY pr.run_number`.execute(db);
  return rows.rows.map((r) => ({
    run: r.run_number,
    dataset: r.dataset,
    status: r.status,
    attempts: r.attempts,
    jobId: r.job_id,
    jobToken: r.job_token,
    stagedPath: r.staged_path,
    stagedBytes: r.staged_bytes,
    statusChangedAt: r.status_changed_at,
    sizeBytes: r.size_bytes,
    checksum: r.checksum,
    source: r.source,
  }));
}

export interface JobContext {
  db: Kysely<Database>;
  production: Production;
  actor: Actor & { sessionId: string };
}

export function identity(context: JobContext, run: { run: number; dataset: string }): RunIdentity {
  const { production } = context;
  return { type: production.type, version: production.version, tag: production.tag, run: run.run, dataset: run.dataset, user: context.actor.user };
}

/** The frozen modules text, written once per production for jobs to read. */
export async function ensureModulesFile(production: Production): Promise<string> {
  const path = modulesFilePath(production.config, production);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, production.modules ?? '');
  return path;
}

/**
 * The job for a staged run's next attempt; output directories are created, stale files of the
 * attempt removed. Always gated, with a token of its own: submit it, record it with its token,
 * then releaseJob(job.release).
 */
export async function prepareJob(context: JobContext, run: HeldRunDetail, modulesFile: string): Promise<JobSpec & { release: JobRelease }> {
  const { production } = context;
  const config = production.config;
  const id = identity(context, run);
  const attempt = run.attempts + 1;
  const outputs = outputPaths(config, id);
  const logs = logPaths(config, outputs, id);
  const statusPath = statusFilePath(config, id, attempt);
  const workDir = runJobDir(config, id);
  await mkdir(workDir, { recursive: true });
  for (const path of new Set([...Object.values(outputs), logs.stdout, logs.stderr])) {
    await mkdir(dirname(path), { recursive: true });
    await rm(path, { force: true });
  }
  await rm(statusPath, { force: true });
  await removeStatusTemps(statusPath);
  const release: JobRelease = { path: releasePathFor(statusPath), token: randomBytes(16).toString('hex'), waitSeconds: RELEASE_WAIT_SECONDS };
  // An earlier submission's release: its job, if any is still waiting, must not take it for ours.
  await rm(release.path, { force: true });
  const env: Record<string, string> = {
    RUN: String(run.run),
    DATASET: run.dataset,
    INPUT: run.stagedPath ?? '',
    PRODUCTION_TYPE: production.type,
    PRODUCTION_VERSION: String(production.version),
    SOFTWARE_TAG: production.tag,
    ATTEMPT: String(attempt),
    MODULES_FILE: modulesFile,
  };
  for (const [name, path] of Object.entries(outputs)) env[`OUTPUT_${name.toUpperCase()}`] = path;
  return {
    name: `rp-${production.type}-v${production.version}-r${run.run}`,
    script: config.job.script,
    env,
    workDir,
    stdoutPath: logs.stdout,
    stderrPath: logs.stderr,
    statusPath,
    release,
  };
}

export function jobStatusPath(context: JobContext, run: { run: number; dataset: string; attempts: number }): string {
  return statusFilePath(context.production.config, identity(context, run), run.attempts + 1);
}

/**
 * The wrapper writes its status file to `NAME.tmp.PID` and renames it, and a
 * session its release file likewise (`NAME.release.tmp.PID`); one killed with
 * SIGKILL in between leaves the temporary name behind.
 */
async function removeStatusTemps(statusPath: string): Promise<void> {
  const prefixes = [`${basename(statusPath)}.tmp.`, `${basename(releasePathFor(statusPath))}.tmp.`];
  const names = await readdir(dirname(statusPath)).catch(() => [] as string[]);
  for (const name of names) if (prefixes.some((p) => name.startsWith(p))) await rm(join(dirname(statusPath), name), { force: true });
}

async function tail(path: string, lines: number): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

export type JobOutcome =
  | { kind: 'finished'; run: number; host?: string }
  | { kind: 'retry' | 'failed'; run: number; exitCode: number | null; error: string; attempt: number }
  /** The job was revoked (see revokeJob) and its wrapper ended it: the run is redone, no attempt counted. */
  | { kind: 'revoked'; run: number; error: string }
  | { kind: 'lost-ownership'; run: number };

/** What judging an ended job decided, its files already dealt with; recordJudgements writes it down. */
export interface Judgement {
  run: HeldRunDetail;
  to: 'finished' | 'new' | 'failed';
  update: RunUpdate;
  outcome: Exclude<JobOutcome, { kind: 'lost-ownership' }>;
  /** Whether the move counts as a used attempt; absent: it does (every job that ran its course). */
  countsAsAttempt?: boolean;
}

/**
 * Judges an ended job: exit 0 and valid outputs → finished. Otherwise the
 * attempt's logs are kept under names with the attempt number, its other
 * outputs (partial) are removed, and the run is to go back to `new` with the
 * attempt counted, or to `failed` once attempts are used up. A job whose
 * wrapper recorded `revoked` was ended because a reaper gave it up, not because
 * it failed: its run goes back to `new` without an attempt counted, and its
 * files go like an aborted attempt's (the next attempt has the same number).
 * Only files are touched here: recordJudgements moves the runs, many in one statement.
 */
export async function assessEndedJob(
  context: JobContext,
  run: HeldRunDetail,
  state: Extract<JobState, { state: 'done' } | { state: 'lost' }>,
): Promise<Judgement> {
  const { production } = context;
  const config = production.config;
  const id = identity(context, run);
  const outputs = outputPaths(config, id);
  const logs = logPaths(config, outputs, id);
  const attempt = run.attempts + 1;
  const statusPath = statusFilePath(config, id, attempt);
  const wrapper = await readWrapperStatus(statusPath);
  if (wrapper?.revoked) {
    await removeAttemptFiles(context, run);
    const error = `job ${run.jobId} was revoked and ended by its wrapper${wrapper.host ? ` on ${wrapper.host}` : ''} (exit ${wrapper.exit ?? 'unknown'}): its session was reaped where the job could not be reached`;
    return {
      run,
      to: 'new',
      update: { run: run.run, lastError: error, message: `${error}; not counted as an attempt, the run is redone` },
      outcome: { kind: 'revoked', run: run.run, error },
      countsAsAttempt: false,
    };
  }
  await removeStatusTemps(statusPath);
  await rm(releasePathFor(statusPath), { force: true });
  let exitCode: number | null = state.state === 'done' ? state.exitCode : null;
  let error: string;
  if (state.state === 'done' && state.exitCode === 0) {
    const validation = await validateOutputs(outputs);
    if (validation.ok) {
      return {
        run,
        to: 'finished',
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
  const to = attempt >= production.maxAttempts ? 'failed' : 'new';
  return {
    run,
    to,
    update: {
      run: run.run,
      exitCode: exitCode ?? undefined,
      lastError: error.slice(0, 4000),
      message: `attempt ${attempt}/${production.maxAttempts} failed${state.state === 'done' && state.host ? ` on ${state.host}` : ''}: ${error.split('\n')[0]!.slice(0, 300)}`,
    },
    outcome: { kind: to === 'failed' ? 'failed' : 'retry', run: run.run, exitCode, error, attempt },
  };
}

/**
 * Records judged jobs: one transition per (from, to, counted or not) for all of
 * them, each run with its own values and event message. A run
 * this session no longer holds is left alone and reported as lost-ownership.
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
    const key = `${j.run.status}>${j.to}${j.countsAsAttempt === false ? '' : '+attempt'}`;
    const group = groups.get(key);
    if (group) group.push(j);
    else groups.set(key, [j]);
  }
  const moved = await context.db.transaction().execute(async (tx) => {
    const ours = await tx
      .selectFrom('production_runs')
      .select('run_number')
      .where('production_id', '=', context.production.id)
      .where('run_number', 'in', judgements.map((j) => j.run.run))
      .where('session_id', '=', context.actor.sessionId)
      .forUpdate()
      .execute();
    const held = new Set(ours.map((r) => r.run_number));
    for (const j of judgements) if (held.has(j.run.run)) await removeStagedInput(context.production, j.run.stagedPath);
    const moved = new Set<number>();
    for (const group of groups.values()) {
      const runs = await transitionRuns(tx, {
        productionId: context.production.id,
        runs: group.map((j) => j.update),
        from: group[0]!.run.status,
        to: group[0]!.to,
        owner: context.actor.sessionId,
        actor: context.actor,
        countAttempt: group[0]!.countsAsAttempt !== false,
      });
      for (const run of runs) moved.add(run);
    }
    return moved;
  });
  return judgements.map((j) => (moved.has(j.run.run) ? j.outcome : { kind: 'lost-ownership', run: j.run.run }));
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
    const ours = await tx
      .selectFrom('production_runs')
      .select('run_number')
      .where('production_id', '=', production.id)
      .where('run_number', '=', run.run)
      .where('session_id', '=', context.actor.sessionId)
      .where('status', '=', 'staged')
      .forUpdate()
      .executeTakeFirst();
    if (!ours) return [];
    const moved = await transitionRuns(tx, {
      productionId: production.id,
      runs: [{ run: run.run, lastError: why.slice(0, 4000), message: `attempt ${attempt}/${production.maxAttempts} failed: ${why.split('\n')[0]!.slice(0, 300)}` }],
      from: 'staged',
      to,
      owner: context.actor.sessionId,
      actor: context.actor,
      countAttempt: true,
    });
    // Only once the move is sure (an ended session moves nothing, see transitionRuns).
    if (moved.length) await removeStagedInput(production, run.stagedPath);
    return moved;
  });
  if (moved.length === 0) return { kind: 'lost-ownership', run: run.run };
  return { kind: to === 'failed' ? 'failed' : 'retry', run: run.run, exitCode: null, error: why, attempt };
}

/** Deletes a staged input, but never a parent production's output read in place. */
export async function removeStagedInput(production: Production, stagedPath: string | null): Promise<void> {
  if (!stagedPath || !isInStaging(production, stagedPath)) return;
  await rm(stagedPath, { force: true });
}

export function isInStaging(production: Production, path: string): boolean {
  const staging = production.config.stagingDir.replace(/\/+$/, '') + '/';
  return path.startsWith(staging);
}

/** Files an aborted attempt leaves: all its outputs (logs included: it was not an attempt), its status file and its release. */
export async function removeAttemptFiles(context: JobContext, run: { run: number; dataset: string; attempts: number }): Promise<void> {
  const config = context.production.config;
  const id = identity(context, run);
  const outputs = outputPaths(config, id);
  const logs = logPaths(config, outputs, id);
  const statusPath = statusFilePath(config, id, run.attempts + 1);
  for (const path of new Set([...Object.values(outputs), logs.stdout, logs.stderr, statusPath, releasePathFor(statusPath)])) {
    await rm(path, { force: true });
  }
  await removeStatusTemps(statusPath);
}
