import { readFile, rename, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/**
 * The job wrapper (bin/rp-job-wrapper) writes one small JSON status file:
 * first `{"host","pid","started"}` when the job starts, then the same with
 * `"exit"` and `"finished"` added when it ends (written to a temporary name and
 * renamed, so a reader never sees half a file).
 */
export interface WrapperStatus {
  host: string;
  pid: number;
  started: string;
  exit?: number;
  finished?: string;
}

export const WRAPPER_PATH = fileURLToPath(new URL('../../bin/rp-job-wrapper', import.meta.url));

/** Reads the status file; undefined when the job has not started (no file yet). */
export async function readWrapperStatus(statusPath: string): Promise<WrapperStatus | undefined> {
  let text: string;
  try {
    text = await readFile(statusPath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as WrapperStatus;
  } catch {
    return undefined;
  }
}

/**
 * The gate of a job (see bin/rp-job-wrapper): the wrapper runs the script only
 * once `path` holds `token`, written by releaseJob after the job is recorded in
 * the database, so that a job whose submitter died before recording it never
 * runs. The token is new for every submission: an unrecorded job of an earlier
 * submission of the same attempt sees another token there and leaves.
 */
export interface JobRelease {
  path: string;
  token: string;
  /** How long an unreleased job waits before it leaves without running. */
  waitSeconds: number;
}

/**
 * Half an hour: long enough for an expired session's recorded but unreleased
 * jobs to be adopted and released by another session (the lease is a minute by
 * default); short enough that a job nobody will ever release gives its grid
 * slot back the same night.
 */
export const RELEASE_WAIT_SECONDS = 1800;

/** Where the release of an attempt's job is written: next to its status file. */
export function releasePathFor(statusPath: string): string {
  return `${statusPath}.release`;
}

/** Releases a gated job: writes its token, atomically, so the wrapper never reads half of it. */
export async function releaseJob(release: Pick<JobRelease, 'path' | 'token'>): Promise<void> {
  const temporary = `${release.path}.tmp.${process.pid}`;
  await writeFile(temporary, release.token);
  await rename(temporary, release.path);
}

/**
 * The command line that runs a job script through the wrapper; gated when the
 * job carries a release. `submitterPid` is for a grid whose jobs run on the
 * submitter's own host (local): a gated job whose submitter is gone leaves at once.
 */
export function wrapperCommand(
  job: { statusPath: string; stdoutPath: string; stderrPath: string; script: string; release?: JobRelease },
  options: { submitterPid?: number } = {},
): string[] {
  const command = [WRAPPER_PATH, job.statusPath, job.stdoutPath, job.stderrPath, job.script];
  if (!job.release) return command;
  command.push(job.release.path, job.release.token, String(job.release.waitSeconds));
  if (options.submitterPid !== undefined) command.push(String(options.submitterPid));
  return command;
}
