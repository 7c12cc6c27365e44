import type { SnapshotAbort } from '../../session/snapshot.js';
import { formatCount } from '../format.js';
import { Lines, packSegs, type Seg, type SegLine } from './theme.js';

/**
 * A labelled list packed into at most `maxLines` rows. When it does not fit,
 * it keeps the longest prefix that leaves room for a "+K more" item, found by
 * bisection because a session can hold hundreds of runs.
 */
export function listLines(label: SegLine, items: readonly string[], width: number, maxLines: number): SegLine[] {
  if (maxLines <= 0) return [];
  const build = (k: number): SegLine[] => {
    const parts: SegLine[] = [label, ...items.slice(0, k).map((t): SegLine => [{ text: t }])];
    if (k < items.length) parts.push([{ text: `+${formatCount(items.length - k)} more`, dim: true }]);
    return packSegs(parts, width, 1);
  };
  const all = build(items.length);
  if (all.length <= maxLines) return all;
  let lo = 0;
  let hi = items.length - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (build(mid).length <= maxLines) lo = mid;
    else hi = mid - 1;
  }
  return build(lo).slice(0, maxLines);
}

/**
 * What an abort has done so far: it replaces the run table, because during an
 * abort the shifter's question is "which jobs are gone and which runs are back
 * to new", and whether the database saw the rollback at all.
 */
export function abortLines(abort: SnapshotAbort, width: number, maxLines: number): SegLine[] {
  if (maxLines <= 0) return [];
  const title: SegLine = [
    { text: ' ABORT ', bold: true, tone: 'red', inverse: true },
    { text: ` ${abort.reason}  ` },
    abort.done ? { text: 'done', bold: true, tone: 'green' } : { text: 'in progress…', bold: true, tone: 'yellow' },
  ];
  // The note outranks the lists: "the database was unreachable" changes what the
  // shifter must do next, and it may name a file, so it wraps instead of being cut.
  const note: SegLine[] =
    abort.note === null
      ? []
      : packSegs(
          [[{ text: 'note:', bold: true, tone: 'red' }], ...abort.note.split(/\s+/).filter(Boolean).map((w): SegLine => [{ text: w, tone: 'red' }])],
          width,
          1,
        ).slice(0, Math.max(1, Math.min(3, maxLines - 1)));
  const fixed = 1 + note.length;
  const room = Math.max(0, maxLines - fixed);
  const label = (text: string): Seg[] => [{ text, bold: true }];
  const jobsLabel = label(`Cancelled jobs (${formatCount(abort.cancelledJobs.length)}):`);
  const runsLabel = label(`Rolled back runs (${formatCount(abort.rolledBackRuns.length)}):`);
  const runIds = abort.rolledBackRuns.map(String);
  const jobsWanted = listLines(jobsLabel, abort.cancelledJobs, width, room).length;
  const runsWanted = listLines(runsLabel, runIds, width, room).length;
  // Half each, unless one list needs less than its half and the other can use the rest.
  const jobsRoom = jobsWanted + runsWanted <= room ? jobsWanted : Math.min(jobsWanted, Math.max(Math.ceil(room / 2), room - runsWanted));
  const jobs = listLines(jobsLabel, abort.cancelledJobs, width, jobsRoom);
  const runs = listLines(runsLabel, runIds, width, room - jobs.length);
  return [title, ...note, ...jobs, ...runs].slice(0, maxLines);
}

export function abortWanted(abort: SnapshotAbort, width: number): number {
  // Every item on its own row is an upper bound on what the lists can need.
  return abortLines(abort, width, 4 + abort.cancelledJobs.length + abort.rolledBackRuns.length).length;
}

export function AbortView({ abort, width, maxLines }: { abort: SnapshotAbort; width: number; maxLines: number }) {
  return <Lines lines={abortLines(abort, width, maxLines)} width={width} />;
}
