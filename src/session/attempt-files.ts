import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { releasePathFor } from '../grids/wrapper.js';
import { logPaths, outputPaths, runJobDir, statusFilePath, type RunIdentity } from '../outputs/paths.js';
import type { Production } from '../state/productions.js';

/**
 * The one derivation of where a run's attempt keeps its files: its outputs (from the frozen
 * templates), its logs, the wrapper's status file and the release file beside it, and the job's
 * working directory. Preparing, judging, aborting and the dry run all read them from here.
 */
export interface AttemptFiles {
  identity: RunIdentity;
  attempt: number;
  outputs: Record<string, string>;
  logs: { stdout: string; stderr: string };
  statusPath: string;
  releasePath: string;
  workDir: string;
}

/** Who a run's files belong to: the production, the run, and the account that runs it. */
export function runIdentity(production: Production, user: string, run: { run: number; dataset: string }): RunIdentity {
  return { type: production.type, version: production.version, tag: production.tag, run: run.run, dataset: run.dataset, user };
}

/** The files of a run's next attempt (attempts + 1). */
export function attemptFiles(production: Production, user: string, run: { run: number; dataset: string; attempts: number }): AttemptFiles {
  const config = production.config;
  const identity = runIdentity(production, user, run);
  const attempt = run.attempts + 1;
  const outputs = outputPaths(config, identity);
  const statusPath = statusFilePath(config, identity, attempt);
  return {
    identity,
    attempt,
    outputs,
    logs: logPaths(config, outputs, identity),
    statusPath,
    releasePath: releasePathFor(statusPath),
    workDir: runJobDir(config, identity),
  };
}

/**
 * The wrapper writes its status file to `NAME.tmp.PID` and renames it, and a
 * session its release file likewise (`NAME.release.tmp.PID`); one killed with
 * SIGKILL in between leaves the temporary name behind.
 */
export async function removeStatusTemps(files: Pick<AttemptFiles, 'statusPath' | 'releasePath'>): Promise<void> {
  const prefixes = [`${basename(files.statusPath)}.tmp.`, `${basename(files.releasePath)}.tmp.`];
  const names = await readdir(dirname(files.statusPath)).catch(() => [] as string[]);
  for (const name of names) if (prefixes.some((p) => name.startsWith(p))) await rm(join(dirname(files.statusPath), name), { force: true });
}

/** Files an aborted attempt leaves: all its outputs (logs included: it was not an attempt), its status file and its release. */
export async function removeAttemptFiles(files: AttemptFiles): Promise<void> {
  for (const path of new Set([...Object.values(files.outputs), files.logs.stdout, files.logs.stderr, files.statusPath, files.releasePath])) {
    await rm(path, { force: true });
  }
  await removeStatusTemps(files);
}

/** Whether a path is under the production's staging area (a parent's output read in place is not). */
export function isInStaging(production: Production, path: string): boolean {
  const staging = production.config.stagingDir.replace(/\/+$/, '') + '/';
  return path.startsWith(staging);
}

/** Deletes a staged input, but never a parent production's output read in place. */
export async function removeStagedInput(production: Production, stagedPath: string | null): Promise<void> {
  if (!stagedPath || !isInStaging(production, stagedPath)) return;
  await rm(stagedPath, { force: true });
}
