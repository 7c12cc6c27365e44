import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { JobSpec } from '../grids/grid.js';
import { RELEASE_WAIT_SECONDS, type JobRelease } from '../grids/wrapper.js';
import { modulesFilePath } from '../outputs/paths.js';
import type { HeldRunDetail } from '../state/held-runs.js';
import type { Production } from '../state/productions.js';
import { attemptFiles, removeStatusTemps } from './attempt-files.js';
import type { JobContext } from './context.js';

/** The frozen modules text, written once per production for jobs to read. */
export async function ensureModulesFile(production: Production): Promise<string> {
  const path = modulesFilePath(production.config, production);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, production.modules ?? '');
  return path;
}

/** A job ready to submit: always gated, with a release token of its own. */
export type PreparedJob = JobSpec & { release: JobRelease };

/**
 * The job for a staged run's next attempt; output directories are created, stale files of the
 * attempt removed. Submit it, record it with its token, then releaseJob(job.release).
 */
export async function prepareJob(context: JobContext, run: HeldRunDetail, modulesFile: string): Promise<PreparedJob> {
  const { production } = context;
  const files = attemptFiles(production, context.actor.user, run);
  await mkdir(files.workDir, { recursive: true });
  for (const path of new Set([...Object.values(files.outputs), files.logs.stdout, files.logs.stderr])) {
    await mkdir(dirname(path), { recursive: true });
    await rm(path, { force: true });
  }
  await rm(files.statusPath, { force: true });
  await removeStatusTemps(files);
  const release: JobRelease = { path: files.releasePath, token: randomBytes(16).toString('hex'), waitSeconds: RELEASE_WAIT_SECONDS };
  // An earlier submission's release: its job, if any is still waiting, must not take it for ours.
  await rm(release.path, { force: true });
  const env: Record<string, string> = {
    RUN: String(run.run),
    DATASET: run.dataset,
    INPUT: run.stagedPath ?? '',
    PRODUCTION_TYPE: production.type,
    PRODUCTION_VERSION: String(production.version),
    SOFTWARE_TAG: production.tag,
    ATTEMPT: String(files.attempt),
    MODULES_FILE: modulesFile,
  };
  for (const [name, path] of Object.entries(files.outputs)) env[`OUTPUT_${name.toUpperCase()}`] = path;
  return {
    name: `rp-${production.type}-v${production.version}-r${run.run}`,
    script: production.config.job.script,
    env,
    workDir: files.workDir,
    stdoutPath: files.logs.stdout,
    stderrPath: files.logs.stderr,
    statusPath: files.statusPath,
    release,
  };
}
