import { isOnGrid } from '../core/held-run.js';
import { HELD_STATUSES, type HeldStatus, type StatusCounts } from '../core/statuses.js';
import type { LoopOptions } from './options.js';

/**
 * The loop's decisions, as pure functions of what it holds and the limits it runs under: how many
 * runs to claim, which to download and which to submit, and whether the session is done. The
 * operator loop acts on them; the bench drives the very same functions.
 */

export interface PlanInput<R extends { run: number; status: HeldStatus }> {
  /** The runs this session holds, in run order. */
  held: readonly R[];
  /** Runs with a download under way now. */
  downloading: ReadonlySet<number>;
  options: Pick<LoopOptions, 'nproc' | 'nprep' | 'limit'>;
  /** Runs claimed by this session so far (for --limit). */
  claimsMade: number;
  /** Whether new work may start: the session is running (not draining or aborting), the database answers and the production is active. */
  mayStartWork: boolean;
}

const countOf = <R extends { status: HeldStatus }>(held: readonly R[], status: HeldStatus) => held.filter((r) => r.status === status).length;

/** Runs to claim now: up to nproc + nprep held, within --limit; 0 when no work may start (or `p` paused claiming). */
export function planClaim<R extends { run: number; status: HeldStatus }>(input: PlanInput<R>, claimingPaused: boolean): number {
  if (!input.mayStartWork || claimingPaused) return 0;
  let want = input.options.nproc + input.options.nprep - input.held.length;
  if (input.options.limit !== null) want = Math.min(want, input.options.limit - input.claimsMade);
  return Math.max(want, 0);
}

export interface DownloadPlan<R> {
  /**
   * Runs left `downloading` with no download under way: their download met an infrastructure
   * fault, or ended while the database was down. They keep their reservation and start again
   * first, since they need no new room.
   */
  resume: R[];
  /** Claimed runs to reserve room for and start, in order: inputs for the free job slots plus at most nprep staged ahead. */
  start: R[];
  /** Claimed runs waiting for a download at all (whether or not there is room for them now). */
  waiting: number;
}

/** Which downloads to start, with at most `parallel` under way (the archive's limit). */
export function planDownloads<R extends { run: number; status: HeldStatus }>(input: PlanInput<R>, parallel: number): DownloadPlan<R> {
  const { held, downloading } = input;
  const interrupted = held.filter((r) => r.status === 'downloading' && !downloading.has(r.run));
  const waiting = held.filter((r) => r.status === 'claimed' && !downloading.has(r.run));
  const resume = interrupted.slice(0, Math.max(parallel - downloading.size, 0));
  const inFlight = downloading.size + resume.length;
  const wanted = Math.max(input.options.nproc - held.filter(isOnGrid).length, 0) + input.options.nprep - countOf(held, 'staged') - inFlight;
  const room = Math.min(wanted, parallel - inFlight);
  return { resume, start: waiting.slice(0, Math.max(room, 0)), waiting: waiting.length };
}

/** Staged runs to submit: while fewer than nproc of this session's jobs are on the grid. */
export function planSubmissions<R extends { run: number; status: HeldStatus }>(input: PlanInput<R>): R[] {
  if (!input.mayStartWork) return [];
  const free = Math.max(input.options.nproc - input.held.filter(isOnGrid).length, 0);
  return input.held.filter((r) => r.status === 'staged').slice(0, free);
}

/** Whether the session is done, and if it may be, what must still be asked of the database. */
export type EndDecision =
  | { kind: 'go-on' }
  | { kind: 'stop'; reason: string }
  /** Done only if nothing is left to claim (state/claim.ts nothingLeftToClaim); otherwise, `notDone` says why (once). */
  | { kind: 'stop-if-nothing-left'; reason: string; notDone: string | null }
  | { kind: 'not-done'; why: string };

export interface EndInput {
  /** Runs held plus downloads under way (a download is held too, but may outlive its run's row). */
  holding: number;
  draining: boolean;
  options: Pick<LoopOptions, 'limit' | 'until' | 'datasets'>;
  claimsMade: number;
  claimingPaused: boolean;
  production: { status: string; statusReason: string | null };
  /** The production's counters as the last pass read them (null before the first read). */
  counts: { counts: StatusCounts; datasets: Record<string, StatusCounts> } | null;
}

export function planEnd(input: EndInput): EndDecision {
  if (input.draining && input.holding === 0) return { kind: 'stop', reason: 'drained' };
  if (input.holding > 0) return { kind: 'go-on' };
  const { limit, until } = input.options;
  if (limit !== null && input.claimsMade >= limit) return { kind: 'stop', reason: `limit of ${limit} runs reached` };
  const claimable = !input.claimingPaused && input.production.status === 'active';
  if (until === 'idle') return claimable ? { kind: 'stop-if-nothing-left', reason: 'nothing left to claim', notDone: null } : { kind: 'go-on' };
  if (until !== 'done') return { kind: 'go-on' };
  const open = runsNotDone(input);
  const why = whyNotDone(input, open);
  return open === 0 ? { kind: 'stop-if-nothing-left', reason: 'production done: every run finished or failed', notDone: why } : { kind: 'not-done', why };
}

/**
 * Runs of the selection that are neither finished nor failed, from the counters: held by any
 * session (this one holds none here), or new. New runs of a child production whose parent run
 * failed can never be claimed: nothingLeftToClaim tells those apart.
 */
function runsNotDone(input: EndInput): number {
  const counts = input.counts;
  if (!counts) return Infinity;
  const datasets = input.options.datasets;
  const selected = datasets.length ? datasets.map((d) => counts.datasets[d]).filter((c) => c !== undefined) : [counts.counts];
  return selected.reduce((sum, c) => sum + HELD_STATUSES.reduce((n, status) => n + c[status], 0), 0);
}

/** What --until-done still waits for. */
function whyNotDone(input: EndInput, heldElsewhere: number): string {
  const { production } = input;
  if (production.status !== 'active') return `production ${production.status}${production.statusReason ? ` (${production.statusReason})` : ''}; waiting for resume`;
  if (heldElsewhere > 0) return `${heldElsewhere} run(s) held by other sessions; waiting for them to finish, or to be reaped and adopted`;
  if (input.claimingPaused) return 'claiming paused with p';
  return 'runs waiting on their parent runs';
}
