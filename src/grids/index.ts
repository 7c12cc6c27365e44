import type { FrozenType } from '../config/config.js';
import type { Grid } from './grid.js';
import { createHtcondorGrid, htcondorOptionsFrom } from './htcondor.js';
import { createLocalGrid, type LocalGridOptions } from './local.js';
import { createSgeGrid, sgeOptionsFrom } from './sge.js';
import { createSlurmGrid, slurmOptionsFrom } from './slurm.js';

/**
 * Checks a backend's `job.options` (throws with the option's path on a typo);
 * called when the config is validated, so a mistake surfaces at `new`, not at submit.
 */
export function checkJobOptions(backend: FrozenType['job']['backend'], options: Record<string, unknown>, where: string): void {
  switch (backend) {
    case 'slurm':
      slurmOptionsFrom(options, where);
      break;
    case 'sge':
      sgeOptionsFrom(options, where);
      break;
    case 'htcondor':
      htcondorOptionsFrom(options, where);
      break;
    case 'local':
      break;
  }
}

/** The grid a production's frozen config names. */
export async function createGrid(job: FrozenType['job'], local: LocalGridOptions = {}): Promise<Grid> {
  switch (job.backend) {
    case 'local':
      return createLocalGrid(local);
    case 'slurm':
      return createSlurmGrid(slurmOptionsFrom(job.options));
    case 'sge':
      return createSgeGrid(sgeOptionsFrom(job.options));
    case 'htcondor':
      return createHtcondorGrid(htcondorOptionsFrom(job.options));
  }
}
