import { basename, dirname, join } from 'node:path';
import type { FrozenType } from '../config/config.js';
import { fillTemplate, type TemplateValues } from '../config/templates.js';

/**
 * Where a run's files live. Outputs come from the frozen templates; the job's
 * own bookkeeping (wrapper status file, batch scripts, modules file) lives in
 * a jobs directory under dataDir, which outlives the session so that a
 * reaper can judge a job whose session died.
 */

/** Outputs the job wrapper writes itself: they may legitimately be empty. */
export const LOG_OUTPUTS = ['olog', 'elog'] as const;

export interface RunIdentity {
  type: string;
  version: number;
  tag: string;
  run: number;
  dataset: string;
  user: string;
}

export function templateValues(config: FrozenType, id: RunIdentity): TemplateValues {
  return {
    run: id.run,
    version: id.version,
    type: id.type,
    tag: id.tag,
    dataset: id.dataset,
    user: id.user,
    dataDir: config.dataDir,
    stagingDir: config.stagingDir,
  };
}

export function outputPaths(config: FrozenType, id: RunIdentity): Record<string, string> {
  const values = templateValues(config, id);
  return Object.fromEntries(Object.entries(config.outputs).map(([name, template]) => [name, fillTemplate(template, values)]));
}

export function productionJobsDir(config: FrozenType, id: { type: string; version: number }): string {
  return join(config.dataDir, '.run-production', id.type, `v${id.version}`);
}

export function runJobDir(config: FrozenType, id: { type: string; version: number; run: number }): string {
  return join(productionJobsDir(config, id), `run${id.run}`);
}

export function modulesFilePath(config: FrozenType, id: { type: string; version: number }): string {
  return join(productionJobsDir(config, id), 'modules.txt');
}

export function statusFilePath(config: FrozenType, id: { type: string; version: number; run: number }, attempt: number): string {
  return join(runJobDir(config, id), `attempt${attempt}.status.json`);
}

/** Logs of the job: the declared olog/elog outputs, else files in the job directory. */
export function logPaths(config: FrozenType, outputs: Record<string, string>, id: { type: string; version: number; run: number }): { stdout: string; stderr: string } {
  return {
    stdout: outputs.olog ?? join(runJobDir(config, id), 'stdout.log'),
    stderr: outputs.elog ?? join(runJobDir(config, id), 'stderr.log'),
  };
}

/** Where a failed attempt's log is kept: `alcapana.run02091.err` → `alcapana.run02091.attempt1.err`. */
export function attemptLogPath(path: string, attempt: number): string {
  const name = basename(path);
  const dot = name.lastIndexOf('.');
  const renamed = dot > 0 ? `${name.slice(0, dot)}.attempt${attempt}${name.slice(dot)}` : `${name}.attempt${attempt}`;
  return join(dirname(path), renamed);
}

/**
 * Staged input of a downloaded run: named after the run AND its source's file name, since sources
 * laid out as `run02091/raw.mid` share a basename, and two runs must never stage into one file.
 */
export function stagedInputPath(config: FrozenType, id: { type: string; version: number; run: number }, sourceName: string): string {
  return join(config.stagingDir, id.type, `v${id.version}`, `run${id.run}.${basename(sourceName) || 'input'}`);
}

/**
 * The temporary name a download is written to: unique per run (the staged name is), per session and
 * per attempt, so that a download still running for an attempt another session has taken over, or
 * for an earlier attempt of this session, never writes into the file being verified.
 */
export function partialDownloadPath(stagedPath: string, sessionId: string, attempt: number): string {
  return `${stagedPath}.part-${sessionId.slice(0, 8)}-a${attempt}`;
}
