import type { SnapshotEvent } from '../../session/snapshot.js';
import { fit, formatClock } from '../format.js';
import { EVENT_TONES, Lines, type SegLine } from './theme.js';

/**
 * The latest events, newest on top, as many as the rows given. The kind is a
 * word as well as a colour so a failure stands out without colour too.
 */
export function eventsLines(events: readonly SnapshotEvent[], width: number, maxLines: number): SegLine[] {
  if (maxLines <= 0) return [];
  if (events.length === 0) return [[{ text: 'No events yet.', dim: true }]];
  const newestFirst = [...events].sort((a, b) => b.at - a.at);
  // With a single row the newest event says more than a title would.
  if (maxLines === 1) return newestFirst.slice(0, 1).map(eventLine);
  return [[{ text: 'Events', bold: true }], ...newestFirst.slice(0, maxLines - 1).map(eventLine)];
}

function eventLine(e: SnapshotEvent): SegLine {
  const tone = EVENT_TONES[e.kind];
  const loud = e.kind === 'fail' || e.kind === 'error';
  return [
    { text: formatClock(e.at) + ' ', dim: true },
    { text: fit(e.run === null ? '' : String(e.run), 7, 'right') + ' ' },
    { text: fit(e.kind, 8) + ' ', tone, bold: loud },
    { text: e.text, tone: loud ? tone : undefined },
  ];
}

export function eventsWanted(events: readonly SnapshotEvent[]): number {
  return events.length === 0 ? 1 : events.length + 1;
}

export function Events(props: { events: readonly SnapshotEvent[]; width: number; maxLines: number }) {
  return <Lines lines={eventsLines(props.events, props.width, props.maxLines)} width={props.width} />;
}
