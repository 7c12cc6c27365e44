import type { SnapshotRun } from '../../session/snapshot.js';
import { STATUS_LETTERS, type RunStatus } from '../../core/statuses.js';
import { fit, formatAge, formatBytes, formatCount, formatRate, formatPercent, textBar } from '../format.js';
import { Lines, STATUS_TONES, type Seg, type SegLine } from './theme.js';

/**
 * Busiest first: what costs grid time or bandwidth right now is what a
 * shifter looks for, so those rows survive when the table is cut short.
 */
const BUSY_RANK: Record<RunStatus, number> = {
  running: 0,
  submitted: 1,
  downloading: 2,
  staged: 3,
  claimed: 4,
  failed: 5,
  finished: 6,
  new: 7,
};

export function sortBusiestFirst(runs: readonly SnapshotRun[]): SnapshotRun[] {
  // Within a status the oldest first: a run stuck for hours should not scroll away.
  return [...runs].sort((a, b) => BUSY_RANK[a.status] - BUSY_RANK[b.status] || a.since - b.since || a.run - b.run);
}

interface Columns {
  run: number;
  dataset: number;
  status: number;
  attempt: number;
  job: number;
  elapsed: number;
}

function columnsFor(width: number): Columns {
  const fixed = { run: 7, status: 13, attempt: 3, elapsed: 7 };
  const gaps = 5;
  const flexible = Math.max(16, width - fixed.run - fixed.status - fixed.attempt - fixed.elapsed - gaps);
  const dataset = Math.max(7, Math.min(24, Math.floor(flexible * 0.3)));
  return { ...fixed, dataset, job: flexible - dataset };
}

/** The job cell: a grid job id, or for a download its bar, bytes and rate. */
function jobCell(run: SnapshotRun, width: number): Seg[] {
  const d = run.download;
  if (run.status !== 'downloading' || d === null) {
    return [{ text: fit(run.jobId ?? '-', width), dim: run.jobId === null }];
  }
  const rate = formatRate(d.bytesPerSecond);
  if (d.total === null || d.total <= 0) {
    return [{ text: fit(`${formatBytes(d.bytes)} ${rate}`, width), tone: 'blue' }];
  }
  const fraction = d.bytes / d.total;
  const numbers = ` ${formatPercent(fraction)} ${formatBytes(d.bytes)}/${formatBytes(d.total)} ${rate}`;
  const shortNumbers = ` ${formatPercent(fraction)} ${rate}`;
  // Prefer a bar of at least 8 cells; give up the byte counts before the rate.
  const suffix = width - numbers.length >= 8 ? numbers : shortNumbers;
  const barWidth = Math.max(3, width - suffix.length);
  return [
    { text: textBar(fraction, barWidth), tone: 'blue' },
    { text: fit(suffix, width - barWidth) },
  ];
}

function runLine(run: SnapshotRun, c: Columns, now: number): SegLine {
  const tone = STATUS_TONES[run.status];
  return [
    { text: fit(String(run.run), c.run, 'right') + ' ' },
    { text: fit(run.dataset, c.dataset) + ' ' },
    { text: STATUS_LETTERS[run.status], bold: true, tone },
    { text: fit(` ${run.status}`, c.status - 1) + ' ', tone },
    { text: fit(`#${run.attempt}`, c.attempt, 'right') + ' ', tone: run.attempt > 1 ? 'yellow' : undefined },
    ...jobCell(run, c.job),
    { text: ' ' + fit(formatAge(run.since, now), c.elapsed, 'right') },
  ];
}

function headingLine(c: Columns, count: number): SegLine {
  return [
    {
      text:
        fit('run', c.run, 'right') + ' ' +
        fit('dataset', c.dataset) + ' ' +
        fit('status', c.status) + ' ' +
        fit('try', c.attempt, 'right') + ' ' +
        fit(`job / download  (${formatCount(count)} held)`, c.job) + ' ' +
        fit('elapsed', c.elapsed, 'right'),
      bold: true,
    },
  ];
}

/** What the rows that did not fit are, e.g. `+12 more: 8 running, 4 staged`. */
function moreLine(hidden: readonly SnapshotRun[]): SegLine {
  const byStatus = new Map<RunStatus, number>();
  for (const r of hidden) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
  const parts = [...byStatus.entries()].map(([s, n]) => `${formatCount(n)} ${s}`);
  return [{ text: `+${formatCount(hidden.length)} more: ${parts.join(', ')}`, dim: true }];
}

/**
 * This session's runs in at most `maxLines` rows (heading included), busiest
 * first, the rest summarised in a "+N more" row.
 */
export function runTableLines(runs: readonly SnapshotRun[], now: number, width: number, maxLines: number): SegLine[] {
  if (maxLines <= 0) return [];
  if (runs.length === 0) return [[{ text: 'No runs held by this session.', dim: true }]];
  if (maxLines === 1) return [moreLine(runs)];
  const c = columnsFor(width);
  const sorted = sortBusiestFirst(runs);
  const room = maxLines - 1;
  const shown = sorted.length <= room ? sorted : sorted.slice(0, room - 1);
  const lines: SegLine[] = [headingLine(c, runs.length), ...shown.map((r) => runLine(r, c, now))];
  if (shown.length < sorted.length) lines.push(moreLine(sorted.slice(shown.length)));
  return lines;
}

/** Rows the table would like: heading plus one per run (one row when empty). */
export function runTableWanted(runs: readonly SnapshotRun[]): number {
  return runs.length === 0 ? 1 : runs.length + 1;
}

export function RunTable(props: { runs: readonly SnapshotRun[]; now: number; width: number; maxLines: number }) {
  return <Lines lines={runTableLines(props.runs, props.now, props.width, props.maxLines)} width={props.width} />;
}
