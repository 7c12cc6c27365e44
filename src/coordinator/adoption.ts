import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Grid } from '../grids/grid.js';
import { createGrid } from '../grids/index.js';
import { releaseJob, releasePathFor } from '../grids/wrapper.js';
import { statusFilePath } from '../outputs/paths.js';
import { getProduction } from './productions.js';
import type { AdoptionDecider, HeldRun } from './sessions.js';

export interface AdoptionPolicy {
  /** adopt: keep live jobs of dead sessions running under the reaper; cancel: kill them and redo the runs. */
  orphans: 'adopt' | 'cancel';
  /** The reaping session's production and grid; null for `sessions --reap`, which has no session to watch jobs. */
  adopter: { productionId: number; grid: Grid } | null;
}

/**
 * For a dead session's runs on the grid: a reaper of the same production adopts
 * those whose job it can reach (alive, or ended: the next poll judges those from
 * the wrapper's status file like any finished job). Jobs that are not adopted
 * but still alive are cancelled, so a new attempt never races an old job.
 */
export function adoptionDeciderFor(db: Kysely<Database>, policy: AdoptionPolicy): AdoptionDecider {
  return async (session, runs) => {
    if (session.productionId === null) return [];
    const production = await getProduction(db, session.productionId);
    const sameProduction = policy.adopter?.productionId === production.id;
    const grid = sameProduction ? policy.adopter!.grid : await createGrid(production.config.job).catch(() => null);
    if (!grid) return [];
    const onGrid = runs.filter((r) => (r.status === 'submitted' || r.status === 'running') && r.jobId && grid.canReach(r.jobId));
    if (onGrid.length === 0) return [];
    const statusPathOf = (r: HeldRun) => statusFilePath(production.config, { type: production.type, version: production.version, run: r.run }, r.attempts + 1);
    const states = await grid.poll(onGrid.map((r) => ({ jobId: r.jobId!, statusPath: statusPathOf(r) })));
    const alive = onGrid.filter((r) => {
      const state = states.get(r.jobId!)?.state;
      return state === 'queued' || state === 'running';
    });
    if (sameProduction && policy.orphans === 'adopt') {
      // The dead session may have recorded a job and died before releasing it: the database says
      // it is the run's job, so release it (again: writing the same token twice is harmless).
      for (const r of onGrid) if (r.status === 'submitted' && r.jobToken) await releaseJob({ path: releasePathFor(statusPathOf(r)), token: r.jobToken });
      return onGrid.map((r) => r.run);
    }
    await grid.cancel(alive.map((r) => r.jobId!));
    return [];
  };
}
