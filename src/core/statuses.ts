/**
 * The life of one run inside one production. The allowed moves between these
 * are kept in SQL (table `run_status_transitions`); this list only names them.
 */
export const RUN_STATUSES = [
  'new',
  'claimed',
  'downloading',
  'staged',
  'submitted',
  'running',
  'finished',
  'failed',
] as const;

export type RunStatus = (typeof RUN_STATUSES)[number];

/** Statuses in which a run is held by a session (it has an owner). */
export const HELD_STATUSES = ['claimed', 'downloading', 'staged', 'submitted', 'running'] as const satisfies readonly RunStatus[];
export type HeldStatus = (typeof HELD_STATUSES)[number];

/** Statuses in which a run's job is on the grid. */
export const ON_GRID_STATUSES = ['submitted', 'running'] as const satisfies readonly RunStatus[];

/** The letters AlCap's shifters know from run_production.py. */
export const STATUS_LETTERS: Record<RunStatus, string> = {
  new: 'N',
  claimed: 'C',
  downloading: 'D',
  staged: 'S',
  submitted: 'Q',
  running: 'R',
  finished: 'F',
  failed: 'X',
};

export type StatusCounts = Record<RunStatus, number>;

export function emptyCounts(): StatusCounts {
  return Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])) as StatusCounts;
}

export function isRunStatus(value: string): value is RunStatus {
  return (RUN_STATUSES as readonly string[]).includes(value);
}
