import type { FrozenType } from '../config/config.js';
import type { Grid } from './grid.js';
import { createLocalGrid, type LocalGridOptions } from './local.js';

/** The grid a production's frozen config names. */
export async function createGrid(job: FrozenType['job'], local: LocalGridOptions = {}): Promise<Grid> {
  switch (job.backend) {
    case 'local':
      return createLocalGrid(local);
    default:
      throw new Error(`grid backend ${job.backend} is not available in this build`);
  }
}
