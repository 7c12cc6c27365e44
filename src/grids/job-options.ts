/**
 * The `job` section of a production type, as config validation produces it and productions.config
 * freezes it. It lives with the grids, which run it, so that src/config imports it and the grids
 * never import the config.
 */

export const BACKENDS = ['local', 'slurm', 'sge', 'htcondor'] as const;
export type Backend = (typeof BACKENDS)[number];

export interface JobSection {
  backend: Backend;
  /** The job script, an absolute path. */
  script: string;
  /** The backend's own options, checked by checkJobOptions (src/grids/index.ts). */
  options: Record<string, unknown>;
  /**
   * Names of variables jobs get from the coordinator's environment besides the base set
   * (src/grids/batch-script.ts); absent from configs frozen before it existed, and when not given.
   */
  environment?: string[];
}
