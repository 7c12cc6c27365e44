import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
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
  /**
   * The wrapper ended the script itself because the job's release was revoked while it ran (see
   * revokeJob): the job was taken from it, it did not fail; its run is redone without counting
   * an attempt.
   */
  revoked?: boolean;
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

let temporaries = 0;
/** `NAME.tmp.PID.N`: the prefix a session cleans up after a kill (jobs.ts), unique within this process. */
const temporaryName = (path: string) => `${path}.tmp.${process.pid}.${++temporaries}`;

/** What a revoked release file holds: anything but a token stops the job (see revokeJob). */
export const REVOKED = 'revoked';

/**
 * Releases a gated job: writes its token, atomically, so the wrapper never reads half of it, and
 * never over a release file someone else wrote: a revocation (revokeJob) must stay, or a session
 * that was only slow, releasing its job after a reaper revoked it, would start a job the reaper
 * has already given up on. The file is made with link(2), which fails when the name exists (also
 * on NFS). True when the file holds the token now (written here, or already: releasing twice is
 * harmless); false when it holds anything else.
 */
export async function releaseJob(release: Pick<JobRelease, 'path' | 'token'>): Promise<boolean> {
  const temporary = temporaryName(release.path);
  await writeFile(temporary, release.token);
  try {
    await link(temporary, release.path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return (await readFile(release.path, 'utf8').catch(() => '')) === release.token;
  } finally {
    await rm(temporary, { force: true });
  }
}

/**
 * Revokes a gated job's release, whoever wrote it: the wrapper, at its gate, leaves without running
 * the script; just past the gate, it removes the start record it wrote and leaves; while the
 * script runs, it ends the script within about a second and records the exit with
 * `"revoked":true`. Used for a job the reaper cannot reach (another host's local job): what the
 * status file says after this is then final (see adoption.ts). Atomic, like releaseJob.
 */
export async function revokeJob(release: Pick<JobRelease, 'path'>): Promise<void> {
  const temporary = temporaryName(release.path);
  await writeFile(temporary, REVOKED);
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
