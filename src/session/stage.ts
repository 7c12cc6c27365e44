import type { Grid } from '../grids/grid.js';
import type { JobContext } from './context.js';
import type { SessionHeartbeat } from './heartbeat.js';
import type { Journal } from './journal.js';
import type { LoopOptions } from './options.js';

/** What every stage of a pass works with; the operator loop hands it out, fresh each time (the production changes between passes). */
export interface Stage {
  readonly job: JobContext;
  readonly grid: Grid;
  readonly options: LoopOptions;
  readonly journal: Journal;
  readonly heartbeat: SessionHeartbeat;
  /** The production paused itself (K failures in a row): the loop re-reads it and raises the banner. */
  autoPaused(reason: string): Promise<void>;
}
