import type { Snapshot } from '../../session/snapshot.js';
import { formatCount, textBar } from '../format.js';
import { Lines, packSegs, type Seg, type SegLine, type Tone } from './theme.js';

/** Yellow at the cap (the loop is waiting on it), plain below. */
function capTone(value: number, cap: number | null): Tone | undefined {
  return cap !== null && value >= cap ? 'yellow' : undefined;
}

function ratio(label: string, value: number, cap: number | null): SegLine {
  return [
    { text: `${label} `, dim: true },
    { text: `${formatCount(value)}/${cap === null ? 'no cap' : formatCount(cap)}`, tone: capTone(value, cap) },
  ];
}

/**
 * The caps that decide what the loop does next: this session's jobs on the
 * grid against nproc, staged runs against nprep, the production's jobs against
 * maxRunning, staging disk against spacelim, and why downloads wait. The disk
 * bar is full at spacelim, because that is where downloads stop.
 */
export function limitsLines(snapshot: Snapshot, width: number): SegLine[] {
  const { limits, session } = snapshot;
  const { disk } = limits;
  const diskItem: Seg[] = [{ text: 'disk ', dim: true }];
  if (disk.usedPercent === null) {
    diskItem.push({ text: `not measured yet, limit ${disk.spacelim}%` });
  } else {
    const tone: Tone = disk.usedPercent >= disk.spacelim ? 'red' : disk.usedPercent >= disk.spacelim * 0.9 ? 'yellow' : 'green';
    const fraction = disk.spacelim > 0 ? disk.usedPercent / disk.spacelim : 1;
    diskItem.push(
      { text: textBar(fraction, 10), tone },
      { text: ` ${Math.round(disk.usedPercent)}% of ${disk.spacelim}% limit`, tone: disk.usedPercent >= disk.spacelim ? 'red' : undefined },
      { text: ` (${disk.source})`, dim: true },
    );
  }
  const items: SegLine[] = [
    [{ text: 'Limits', bold: true }],
    ratio('jobs', limits.running, limits.nproc),
    ratio('staged', limits.staged, limits.nprep),
    ratio('production', limits.productionRunning, limits.maxRunning),
    diskItem,
  ];
  if (session.claimsLeft !== null) {
    items.push([{ text: 'claims left ', dim: true }, { text: formatCount(session.claimsLeft) }]);
  }
  const lines = packSegs(items, width);
  if (limits.downloadsPausedReason !== null) {
    lines.push([
      { text: 'downloads paused: ', bold: true, tone: 'yellow' },
      { text: limits.downloadsPausedReason, tone: 'yellow' },
    ]);
  }
  return lines;
}

export function Limits(props: { snapshot: Snapshot; width: number; maxLines?: number }) {
  return <Lines lines={limitsLines(props.snapshot, props.width).slice(0, props.maxLines)} width={props.width} />;
}
