import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { Grid } from '../grids/grid.js';
import { createGrid } from '../grids/index.js';
import { statusFilePath } from '../outputs/paths.js';
import { getProduction } from './productions.js';
import type { AdoptionDecider } from './sessions.js';

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
    const states = await grid.poll(
      onGrid.map((r) => ({
        jobId: r.jobId!,
        statusPath: statusFilePath(production.config, { type: production.type, version: production.version, run: r.run }, r.attempts + 1),
      })),
    );
    const alive = onGrid.filter((r) => {
      const state = states.get(r.jobId!)?.state;
      return state === 'queued' || state === 'running';
    });
    if (sameProduction && policy.orphans === 'adopt') return onGrid.map((r) => r.run);
    await grid.cancel(alive.map((r) => r.jobId!));
    return [];
  };
}
