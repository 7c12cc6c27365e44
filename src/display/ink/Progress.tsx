import type { Snapshot } from '../../session/snapshot.js';
import { emptyCounts, RUN_STATUSES, STATUS_LETTERS } from '../../core/statuses.js';
import { formatCount, formatEta, formatPercent, textBar, truncate } from '../format.js';
import { Lines, packSegs, STATUS_TONES, type SegLine } from './theme.js';

/**
 * How far the whole production is (all sessions): a bar of finished/total,
 * the per-status counts with the letters shifters know from run_production.py,
 * throughput and ETA, and for a child production the runs still waiting on
 * their parent. With `datasets` it adds one breakdown row (finished/total per
 * dataset) when the layout has room for it.
 */
export function progressLines(snapshot: Snapshot, width: number, datasets = false): SegLine[] {
  const { counts, total, throughput } = snapshot;
  const done = counts.finished;
  const fraction = total > 0 ? done / total : 0;
  const tail = ` ${formatCount(done)}/${formatCount(total)} ${formatPercent(fraction)}`;
  const rate = `  ${throughput.runsPerHour.toFixed(1)} runs/h (15 min)  ETA ${formatEta(throughput.etaSeconds)}`;
  const label = 'Progress ';
  // The bar takes what the numbers leave, but stays readable and never dominates.
  const barWidth = Math.max(10, Math.min(40, width - label.length - tail.length - rate.length));
  const first: SegLine = [
    { text: label, bold: true },
    { text: textBar(fraction, barWidth), tone: 'green' },
    { text: tail, bold: true },
    { text: rate },
  ];

  const items: SegLine[] = RUN_STATUSES.map((status) => {
    const n = counts[status];
    return [
      { text: STATUS_LETTERS[status], bold: true, tone: STATUS_TONES[status], dim: n === 0 },
      { text: ` ${status} ${formatCount(n)}`, tone: n === 0 ? undefined : STATUS_TONES[status], dim: n === 0 },
    ];
  });
  if (snapshot.waitingOnParent !== null) {
    items.push([{ text: `waiting on parent ${formatCount(snapshot.waitingOnParent)}`, tone: 'yellow' }]);
  }

  const lines: SegLine[] = [first, ...packSegs(items, width)];
  if (datasets) {
    const names = Object.keys(snapshot.datasets).sort();
    if (names.length > 1) {
      const parts = names.map((name) => {
        const c = snapshot.datasets[name] ?? emptyCounts();
        const sum = RUN_STATUSES.reduce((n, s) => n + c[s], 0);
        return `${name} ${formatCount(c.finished)}/${formatCount(sum)}`;
      });
      lines.push([{ text: 'datasets ', dim: true }, { text: truncate(parts.join('  '), width - 9) }]);
    }
  }
  return lines;
}

export function Progress(props: { snapshot: Snapshot; width: number; datasets?: boolean; maxLines?: number }) {
  const lines = progressLines(props.snapshot, props.width, props.datasets).slice(0, props.maxLines);
  return <Lines lines={lines} width={props.width} />;
}
