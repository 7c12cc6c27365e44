import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobSpec, JobState } from './grid.js';
import { wrapperCommand, type WrapperStatus } from './wrapper.js';

/**
 * The batch script every scheduler backend submits. It only sets the job's
 * environment, moves to its working directory and hands over to the job
 * wrapper (exec, so signals from the scheduler reach the wrapper directly and
 * it can record the cancellation). The scheduler's own stdout/stderr therefore
 * stay nearly empty; the user's script output goes where JobSpec says.
 */

/** Quotes a value for bash so that nothing in it is expanded: `'` becomes `'\''`. */
export function singleQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Environment names the shell accepts; anything else would make `export` fail at run time. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/*
 * The job's environment. A job never inherits the coordinator's environment, which holds the
 * shifter's secrets (DATABASE_URL with its password, the SFTP password, everything read from
 * .env, the ssh-agent socket). It gets, on every backend:
 *   1. the base set below, from the coordinator's environment where set there;
 *   2. the names in the production's `job.environment` (the allow-list), likewise;
 *   3. the job's own variables (RUN, DATASET, INPUT, OUTPUT_<NAME>, ...: JobSpec.env), which win.
 * Never, not even when allow-listed: the names isSecretVariable() matches and every name
 * defined in the .env file the CLI read (registerDotenvNames).
 */

/** What any script needs to run: where programs are, who and where it is, language and time zone (and every LC_*). */
export const BASE_JOB_VARIABLES: readonly string[] = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LANGUAGE', 'TZ', 'TMPDIR'];

function isBaseVariable(name: string): boolean {
  return BASE_JOB_VARIABLES.includes(name) || name.startsWith('LC_');
}

/**
 * Names that never reach a job: the database URL and libpq's PG* settings (PGPASSWORD, ...),
 * run-production's own RUN_PRODUCTION_* (the SFTP password, passphrase, key), and the ssh-agent
 * socket, with which a job could log in wherever the shifter can.
 */
export function isSecretVariable(name: string): boolean {
  return name === 'DATABASE_URL' || name.startsWith('PG') || name.startsWith('RUN_PRODUCTION_') || name === 'SSH_AUTH_SOCK';
}

const dotenvNames = new Set<string>();

/** The names defined in the .env file the CLI loaded: secrets by definition, never passed to a job. */
export function registerDotenvNames(names: Iterable<string>): void {
  for (const name of names) dotenvNames.add(name);
}

/** Why `job.environment` cannot be used, or null: a list of variable names, none of them a secret. */
export function jobEnvironmentProblem(value: unknown): string | null {
  if (!Array.isArray(value) || !value.every((name) => typeof name === 'string')) return 'expected a list of environment variable names';
  for (const name of value as string[]) {
    if (!ENV_NAME.test(name)) return `${JSON.stringify(name)} is not an environment variable name (letters, digits and _)`;
    if (isSecretVariable(name)) {
      return (
        `${name} never reaches a job (DATABASE_URL, PG*, RUN_PRODUCTION_* and SSH_AUTH_SOCK are the coordinator's secrets); ` +
        'a job that needs a credential of its own should read it from a file only its user can read'
      );
    }
  }
  return null;
}

/**
 * The environment a job gets (see above): from `source` (the coordinator's environment) only the
 * base set and the allow-list, minus secrets and .env names; then the job's own variables.
 */
export function jobEnvironment(job: Pick<JobSpec, 'env'>, allow: readonly string[] = [], source: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined || !(isBaseVariable(name) || allow.includes(name))) continue;
    if (isSecretVariable(name) || dotenvNames.has(name)) continue;
    env[name] = value;
  }
  return { ...env, ...job.env };
}

/**
 * The environment for a scheduler's submit command (sbatch, qsub, condor_submit): the
 * coordinator's, minus its secrets, so that a scheduler set to copy the submitter's environment
 * into the job (a site's or user's default -V, getenv) still finds none there. SSH_AUTH_SOCK
 * stays: ssh to a submit host needs the agent. `drop` names further variables to leave out.
 */
export function submitEnvironment(drop: readonly string[] = [], source: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined || drop.includes(name) || dotenvNames.has(name)) continue;
    if (isSecretVariable(name) && name !== 'SSH_AUTH_SOCK') continue;
    env[name] = value;
  }
  return env;
}

/**
 * Lines that remove, from whatever environment the scheduler started the batch script with,
 * every coordinator secret: a second fence behind the submission's own (--export=NONE, no -V,
 * getenv = false), for a scheduler configured to copy the submitter's environment anyway.
 */
function scrubLines(): string[] {
  const lines = [
    'for rp_name in $(compgen -e); do case $rp_name in DATABASE_URL|PG*|RUN_PRODUCTION_*|SSH_AUTH_SOCK) unset "$rp_name" ;; esac; done; unset rp_name',
  ];
  const names = [...dotenvNames].filter((name) => ENV_NAME.test(name)).sort();
  if (names.length > 0) lines.push(`unset ${names.join(' ')}`);
  return lines;
}

export interface BatchEnvironment {
  /** The production's `job.environment`. */
  allow?: readonly string[];
  /** The coordinator's environment; default process.env. */
  source?: NodeJS.ProcessEnv;
}

export function renderBatchScript(job: JobSpec, directives: readonly string[] = [], environment: BatchEnvironment = {}): string {
  const lines = ['#!/bin/bash', ...directives, `# Generated by run-production for job ${job.name}.`];
  lines.push('# Environment: the base set, the job.environment allow-list and the job variables; no secret of the coordinator.');
  lines.push(...scrubLines());
  for (const [name, value] of Object.entries(jobEnvironment(job, environment.allow, environment.source))) {
    if (!ENV_NAME.test(name)) throw new Error(`job ${job.name}: invalid environment variable name ${JSON.stringify(name)}`);
    // A scratch directory the scheduler made for the job on its node beats the submit host's.
    if (name === 'TMPDIR' && !(name in job.env)) lines.push(`[ -n "\${TMPDIR:-}" ] || export TMPDIR=${singleQuote(value)}`);
    else lines.push(`export ${name}=${singleQuote(value)}`);
  }
  lines.push(`cd ${singleQuote(job.workDir)} || exit 1`);
  lines.push(`exec ${wrapperCommand(job).map(singleQuote).join(' ')}`);
  return lines.join('\n') + '\n';
}

/** Where the batch script of a job lives: in its working directory, seen by the nodes through the shared filesystem. */
export function batchScriptPath(job: Pick<JobSpec, 'workDir' | 'name'>): string {
  return join(job.workDir, `${job.name}.rp-batch.sh`);
}

/**
 * Writes the batch script into job.workDir and returns its path. Executable by its owner only:
 * it holds the job's environment, allow-listed values included, and nobody else runs it.
 */
export async function writeBatchScript(job: JobSpec, directives: readonly string[] = [], environment: BatchEnvironment = {}): Promise<string> {
  const path = batchScriptPath(job);
  await mkdir(job.workDir, { recursive: true });
  await writeFile(path, renderBatchScript(job, directives, environment), { mode: 0o700 });
  // The mode above only applies when the file is created; a resubmission reuses it.
  await chmod(path, 0o700);
  return path;
}

/**
 * What the wrapper's status file alone says about a job the scheduler no longer
 * knows: finished with its exit code, or vanished (never started, or killed so
 * hard that the wrapper could not write its exit).
 */
export function stateFromWrapper(status: WrapperStatus | undefined, scheduler: string): JobState {
  if (status?.exit !== undefined) return { state: 'done', exitCode: status.exit, host: status.host };
  if (status !== undefined) {
    return { state: 'lost', reason: `${scheduler} no longer knows the job and its wrapper started on ${status.host} at ${status.started} but recorded no exit` };
  }
  return { state: 'lost', reason: `${scheduler} no longer knows the job and its wrapper never started` };
}

/**
 * The exit code of a job the scheduler says failed. The wrapper's own record
 * wins, but a failure must never read as success: if neither the wrapper nor
 * the scheduler has a non-zero code (a job cancelled while pending, a node that
 * died after the script ended), 1 stands in.
 */
export function failureExitCode(wrapperExit: number | undefined, schedulerExit: number | undefined): number {
  if (wrapperExit !== undefined && wrapperExit !== 0) return wrapperExit;
  if (schedulerExit !== undefined && schedulerExit !== 0) return schedulerExit;
  return 1;
}
