import type { Snapshot } from '../../session/snapshot.js';
import { formatAge, formatDuration, shortId } from '../format.js';
import { Lines, packSegs, type SegLine } from './theme.js';

/**
 * Who and what this console is: production, database, user@host, session,
 * uptime and the next loop tick. Packed into as few rows as the width allows,
 * so a wide terminal spends one row and an 80-column one two.
 */
export function headerLines(snapshot: Snapshot, now: number, width: number): SegLine[] {
  const { production: p, session: s } = snapshot;
  const untilTick = (s.nextTickAt - now) / 1000;
  const items: SegLine[] = [
    [{ text: 'run-production', bold: true }],
    [
      { text: `${p.type} v${p.version}`, bold: true, tone: 'cyan' },
      ...(p.tag ? [{ text: ` [${p.tag}]`, tone: 'cyan' as const }] : []),
      ...(p.status === 'closed' ? [{ text: ' CLOSED', bold: true, tone: 'red' as const }] : []),
    ],
    [{ text: 'db ', dim: true }, { text: snapshot.database }],
    [{ text: `${s.user}@${s.host}` }],
    [{ text: 'session ', dim: true }, { text: shortId(s.id) }],
    [{ text: 'up ', dim: true }, { text: formatAge(s.startedAt, now) }],
    [{ text: 'next tick ', dim: true }, { text: untilTick > 0 ? formatDuration(untilTick) : 'now' }],
  ];
  return packSegs(items, width, 3);
}

export function Header(props: { snapshot: Snapshot; now: number; width: number; maxLines?: number }) {
  const lines = headerLines(props.snapshot, props.now, props.width).slice(0, props.maxLines);
  return <Lines lines={lines} width={props.width} />;
}
