import { jobEnvironmentProblem } from './batch-script.js';
import type { Grid } from './grid.js';
import { createHtcondorGrid, htcondorOptionsFrom } from './htcondor.js';
import type { Backend, JobSection } from './job-options.js';
import { createLocalGrid, type LocalGridOptions } from './local.js';
import { createSgeGrid, sgeOptionsFrom } from './sge.js';
import { createSlurmGrid, slurmOptionsFrom } from './slurm.js';

/**
 * Checks a backend's `job.options` (throws with the option's path on a typo);
 * called when the config is validated, so a mistake surfaces at `new`, not at submit.
 */
export function checkJobOptions(backend: Backend, options: Record<string, unknown>, where: string): void {
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

/**
 * Checks `job.environment`, the names of the variables jobs get from the coordinator's
 * environment besides the base set (see batch-script.ts); throws naming the problem.
 */
export function checkJobEnvironment(value: unknown, where: string): string[] {
  const problem = jobEnvironmentProblem(value);
  if (problem !== null) throw new Error(`${where}: ${problem}`);
  return [...(value as string[])];
}

/** The grid a production's frozen config names. */
export async function createGrid(job: JobSection, local: LocalGridOptions = {}): Promise<Grid> {
  // Configs frozen before job.environment existed have none: the base set only.
  const environment = job.environment ?? [];
  switch (job.backend) {
    case 'local':
      return createLocalGrid({ environment, ...local });
    case 'slurm':
      return createSlurmGrid({ ...slurmOptionsFrom(job.options), environment });
    case 'sge':
      return createSgeGrid({ ...sgeOptionsFrom(job.options), environment });
    case 'htcondor':
      return createHtcondorGrid({ ...htcondorOptionsFrom(job.options), environment });
  }
}
