import { execFile } from 'node:child_process';
import { claimRuns } from '../state/claim.js';
import type { HeldRunDetail } from '../state/held-runs.js';
import { toNewForMissingParent, toStagedFromParent } from '../state/moves.js';
import { fenceOf } from './context.js';
import { inputUrl } from './download.js';
import { claimedLine } from './messages.js';
import type { Stage } from './stage.js';

/** Claims up to `want` new runs of the session's datasets; resolves to the runs claimed. */
export async function claimNewRuns(stage: Stage, want: number): Promise<number[]> {
  if (want <= 0) return [];
  const { production, actor } = stage.job;
  const claimed = await claimRuns(stage.job.db, {
    productionId: production.id,
    parentId: production.parentId,
    session: { id: actor.sessionId, user: actor.user },
    limit: want,
    datasets: stage.options.datasets,
  });
  for (const run of claimed) {
    const line = claimedLine(run);
    stage.journal.emit(line.kind, line.run, line.text);
  }
  return claimed;
}

/**
 * What follows a claim: a child production's runs take their parent run's output as input (true:
 * it moved runs), and a tape-backed archive is told which files are coming (prestage).
 */
export async function afterClaim(stage: Stage, held: readonly HeldRunDetail[], claimed: readonly number[]): Promise<boolean> {
  const { config } = stage.job.production;
  if (config.input.kind === 'parent') return stageFromParent(stage, held, config.input.output);
  if (config.archive.prestage) prestage(stage, config.archive.prestage, held.filter((r) => claimed.includes(r.run)));
  return false;
}

/**
 * Tape-backed archives: tell the archive which files are coming (AlCap sent an
 * FTP STAGE per claimed run). Runs beside the loop; a failure is only a warning,
 * since the download itself will still ask for the file.
 */
function prestage(stage: Stage, command: string, runs: readonly HeldRunDetail[]): void {
  const files = runs.map((r) => {
    const url = inputUrl(stage.job, r);
    return url.protocol === 'file:' ? decodeURIComponent(url.pathname) : url.href;
  });
  execFile('/bin/sh', ['-c', `${command} "$@"`, 'prestage', ...files], { timeout: 300_000 }, (error, _stdout, stderr) => {
    if (error) stage.journal.emit('warning', null, `WARNING: prestage command failed (${stderr.trim().split('\n')[0] || error.message}); downloads go on`);
    else stage.journal.emit('info', null, `INFO: prestaged ${files.length} file(s)`);
  });
}

/** A child production's input is the parent run's recorded output, used in place; true when it moved runs. */
async function stageFromParent(stage: Stage, held: readonly HeldRunDetail[], outputName: string): Promise<boolean> {
  const { db, production } = stage.job;
  const claimed = held.filter((r) => r.status === 'claimed');
  if (!claimed.length || production.parentId === null) return false;
  const parents = await db
    .selectFrom('production_runs')
    .select(['run_number', 'outputs'])
    .where('production_id', '=', production.parentId)
    .where('run_number', 'in', claimed.map((r) => r.run))
    .where('status', '=', 'finished')
    .execute();
  const inputs = new Map(parents.map((p) => [p.run_number, p.outputs?.[outputName]]));
  const fence = fenceOf(stage.job);
  const ready = claimed.filter((r) => inputs.get(r.run));
  await toStagedFromParent(db, fence, ready.map((r) => ({ run: r.run, stagedPath: inputs.get(r.run)! })), `input is the parent production's ${outputName} output`);
  const why = `parent run has no recorded ${outputName} output`;
  const missing = claimed.filter((r) => !inputs.get(r.run));
  await toNewForMissingParent(db, fence, missing.map((r) => ({ run: r.run, lastError: why })), why);
  return true;
}
