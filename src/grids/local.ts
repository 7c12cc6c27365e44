import { spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { jobEnvironment } from './batch-script.js';
import type { Grid, JobRef, JobSpec, JobState } from './grid.js';
import { readWrapperStatus, wrapperCommand } from './wrapper.js';

/**
 * Jobs as local processes. Each job is the wrapper in its own session and
 * process group (setsid through `detached`), so Ctrl-C on the shifter's
 * terminal does not reach it and a cancel can kill the whole group. Its id
 * names host and pid (`local:HOST:PID`): any session on the same host can
 * judge or kill it from the wrapper's status file and the process table.
 * Its environment is built as for every backend (jobEnvironment): none of ours.
 */

export interface LocalGridOptions {
  /** Called when a job this process started exits, so the loop can look at once. */
  onJobExit?: () => void;
  /** Seconds between SIGTERM and SIGKILL when cancelling. */
  killGraceSeconds?: number;
  /** The production's `job.environment`: variables passed on from this process's environment (see batch-script.ts). */
  environment?: readonly string[];
}

const HOST = hostname();

export function parseLocalJobId(jobId: string): { host: string; pid: number } | null {
  const match = /^local:(.+):(\d+)$/.exec(jobId);
  return match ? { host: match[1]!, pid: Number(match[2]) } : null;
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid is alive and still our wrapper for that status file (not a recycled pid). */
async function isOurWrapper(pid: number, statusPath: string): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // A zombie (state Z) has exited; it is only waiting to be reaped.
    if (/\) Z /.test(stat)) return false;
    return cmdline.includes(statusPath);
  } catch {
    return false;
  }
}

export function createLocalGrid(options: LocalGridOptions = {}): Grid {
  const grace = (options.killGraceSeconds ?? 5) * 1000;
  return {
    backend: 'local',
    submit: (job) => submitLocalJob(job, options),
    async poll(jobs: readonly JobRef[]): Promise<Map<string, JobState>> {
      const states = new Map<string, JobState>();
      for (const { jobId, statusPath } of jobs) states.set(jobId, await localJobState(jobId, statusPath));
      return states;
    },
    cancel: (jobIds) => cancelLocalJobs(jobIds, grace),
    canReach(jobId: string): boolean {
      return parseLocalJobId(jobId)?.host === HOST;
    },
  };
}

/** Starts the wrapper detached, in its own session; its id is `local:HOST:PID`. */
async function submitLocalJob(job: JobSpec, options: LocalGridOptions): Promise<string> {
  await mkdir(job.workDir, { recursive: true });
  await mkdir(dirname(job.statusPath), { recursive: true });
  // The job runs on this host: a gated job whose submitter (this process) is gone need not wait.
  const [command, ...args] = wrapperCommand(job, { submitterPid: process.pid });
  const child = spawn(command!, args, {
    cwd: job.workDir,
    detached: true,
    stdio: 'ignore',
    // Never this process's environment as it is: it holds the shifter's secrets.
    env: jobEnvironment(job, options.environment),
  });
  const pid = await new Promise<number>((resolve, reject) => {
    child.once('spawn', () => resolve(child.pid!));
    child.once('error', reject);
  });
  child.once('exit', () => options.onJobExit?.());
  child.unref();
  return `local:${HOST}:${pid}`;
}

/** What the status file and, on this host, the process table say about one job. */
async function localJobState(jobId: string, statusPath: string): Promise<JobState> {
  const status = await readWrapperStatus(statusPath);
  if (status?.exit !== undefined) return { state: 'done', exitCode: status.exit, host: status.host };
  const id = parseLocalJobId(jobId);
  if (!id) return { state: 'lost', reason: `${jobId} is not a local job id` };
  if (id.host !== HOST) {
    // Another host's process: only its status file can tell, and it says it has not ended.
    return status ? { state: 'running', host: id.host } : { state: 'queued' };
  }
  if (await isOurWrapper(id.pid, statusPath)) return status ? { state: 'running', host: HOST } : { state: 'queued' };
  // Re-read: the job may have ended between the two looks.
  const again = await readWrapperStatus(statusPath);
  return again?.exit !== undefined
    ? { state: 'done', exitCode: again.exit, host: again.host }
    : { state: 'lost', reason: `process ${id.pid} on ${HOST} is gone without recording an exit code (killed with SIGKILL?)` };
}

/** SIGTERM to each job's process group on this host, SIGKILL to those still alive after the grace. */
async function cancelLocalJobs(jobIds: readonly string[], grace: number): Promise<void> {
  const groups = jobIds
    .map(parseLocalJobId)
    .filter((id): id is { host: string; pid: number } => id !== null && id.host === HOST && groupAlive(id.pid));
  for (const { pid } of groups) {
    try {
      process.kill(-pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
  const deadline = Date.now() + grace;
  while (groups.some(({ pid }) => groupAlive(pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const { pid } of groups) {
    if (!groupAlive(pid)) continue;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
