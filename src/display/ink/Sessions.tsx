import type { SnapshotSession } from '../../session/snapshot.js';
import { fit, formatAge, formatCount, formatDuration, shortId } from '../format.js';
import { Lines, type SegLine } from './theme.js';

/**
 * The other consoles working on this production. A stale one (heartbeat older
 * than its lease) holds runs nobody is working on until it is reaped, so it is
 * listed first and marked in words, not only in colour.
 */
export function sessionsLines(sessions: readonly SnapshotSession[], now: number, width: number, maxLines: number): SegLine[] {
  if (maxLines <= 0) return [];
  if (sessions.length === 0) return [[{ text: 'No other sessions.', dim: true }]];
  const sorted = [...sessions].sort((a, b) => Number(b.stale) - Number(a.stale) || a.startedAt - b.startedAt);
  const shown = sorted.slice(0, maxLines - 1);
  const staleCount = sessions.filter((s) => s.stale).length;
  // Counts live in the title, so a cut list needs no extra "+N more" row.
  const title: SegLine = [
    { text: `Other sessions (${sessions.length}${shown.length < sorted.length ? `, ${shown.length} shown` : ''})`, bold: true },
    ...(staleCount > 0 ? [{ text: `  ${staleCount} STALE`, bold: true, tone: 'red' as const }] : []),
  ];
  // The session id only where there is room: user@host is what a shifter recognises.
  const withId = width >= 90;
  const who = Math.max(12, Math.min(28, width - (withId ? 64 : 55)));
  const lines: SegLine[] = [title];
  for (const s of shown) {
    lines.push([
      s.stale ? { text: 'STALE', bold: true, tone: 'red', inverse: true } : { text: '     ' },
      { text: ' ' + fit(`${s.user}@${s.host}`, who) + ' ', tone: s.stale ? 'red' : undefined },
      ...(withId ? [{ text: shortId(s.id) + ' ', dim: true }] : []),
      { text: fit(`started ${formatAge(s.startedAt, now)} ago`, 18) + ' ' },
      { text: fit(`heartbeat ${formatDuration(s.heartbeatAgeSeconds)}`, 16) + ' ', tone: s.stale ? 'red' : undefined },
      { text: `${formatCount(s.runsHeld)} runs held` },
    ]);
  }
  return lines;
}

export function sessionsWanted(sessions: readonly SnapshotSession[]): number {
  return sessions.length === 0 ? 1 : sessions.length + 1;
}

export function Sessions(props: { sessions: readonly SnapshotSession[]; now: number; width: number; maxLines: number }) {
  return <Lines lines={sessionsLines(props.sessions, props.now, props.width, props.maxLines)} width={props.width} />;
}
