import { readFile } from 'node:fs/promises';
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

/** The command line that runs a job script through the wrapper. */
export function wrapperCommand(job: { statusPath: string; stdoutPath: string; stderrPath: string; script: string }): string[] {
  return [WRAPPER_PATH, job.statusPath, job.stdoutPath, job.stderrPath, job.script];
}
