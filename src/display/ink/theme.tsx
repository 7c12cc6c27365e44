import { createContext, useContext } from 'react';
import { Box, Text } from 'ink';
import type { RunStatus } from '../../core/statuses.js';
import type { SnapshotEvent } from '../../session/snapshot.js';
import { printableLine } from '../../core/sanitize.js';

/**
 * The colours the display uses. Colour only ever repeats what the text already
 * says (status names, STALE, banner labels), so a monochrome terminal or
 * NO_COLOR loses nothing but emphasis.
 */
export type Tone = 'green' | 'red' | 'yellow' | 'blue' | 'cyan' | 'magenta' | 'gray' | 'white';

/** One styled piece of a line. */
export interface Seg {
  text: string;
  tone?: Tone;
  bold?: boolean;
  dim?: boolean;
  inverse?: boolean;
}

/** A line of the display: the layout counts these, so one Seg[] is exactly one terminal row. */
export type SegLine = readonly Seg[];

/**
 * https://no-color.org: any non-empty NO_COLOR turns colour off. Ink's chalk
 * does not look at NO_COLOR itself, so the display has to.
 */
export function colorAllowed(env: NodeJS.ProcessEnv): boolean {
  const value = env['NO_COLOR'];
  return value === undefined || value === '';
}

/** Whether components may colour their text; provided once by the Dashboard. */
export const ColorContext = createContext<boolean>(true);

export const STATUS_TONES: Record<RunStatus, Tone> = {
  new: 'gray',
  claimed: 'cyan',
  downloading: 'blue',
  staged: 'magenta',
  submitted: 'yellow',
  running: 'green',
  finished: 'white',
  failed: 'red',
};

export const EVENT_TONES: Record<SnapshotEvent['kind'], Tone> = {
  claim: 'cyan',
  download: 'blue',
  submit: 'yellow',
  finish: 'green',
  fail: 'red',
  retry: 'yellow',
  rollback: 'magenta',
  reap: 'magenta',
  adopt: 'cyan',
  info: 'white',
  warning: 'yellow',
  error: 'red',
};

/** Adjacent segments that would look the same become one Ink node: fewer nodes, faster layout. */
function mergeSegs(segs: SegLine, color: boolean): Seg[] {
  const out: Seg[] = [];
  for (const s of segs) {
    const seg: Seg = color ? s : { ...s, tone: undefined };
    const last = out[out.length - 1];
    if (last && last.tone === seg.tone && !!last.bold === !!seg.bold && !!last.dim === !!seg.dim && !!last.inverse === !!seg.inverse) {
      out[out.length - 1] = { ...last, text: last.text + seg.text };
    } else {
      out.push(seg);
    }
  }
  return out;
}

/**
 * One terminal row. `truncate-end` is what keeps the frame height equal to the
 * number of lines the layout counted: Ink never wraps a line onto a second row.
 * Every text is made printable here as well (the Dashboard already did so for the
 * snapshot, so this only matters for a section drawn on its own): no control
 * sequence reaches the terminal through the display.
 */
export function Line({ segs }: { segs: SegLine }) {
  const color = useContext(ColorContext);
  const merged = mergeSegs(segs, color);
  return (
    <Text wrap="truncate-end">
      {merged.length === 0
        ? ' '
        : merged.map((s, i) => (
            <Text key={i} color={s.tone} bold={s.bold ?? false} dimColor={s.dim ?? false} inverse={s.inverse ?? false}>
              {printableLine(s.text)}
            </Text>
          ))}
    </Text>
  );
}

/** A block of rows of a fixed width; every section renders through this. */
export function Lines({ lines, width }: { lines: readonly SegLine[]; width: number }) {
  if (lines.length === 0) return null;
  return (
    <Box flexDirection="column" width={width} flexShrink={0}>
      {lines.map((segs, i) => (
        <Line key={i} segs={segs} />
      ))}
    </Box>
  );
}

/** Plain length of a line, for packing segments into a width. */
export function segLength(segs: SegLine): number {
  return segs.reduce((n, s) => n + Array.from(s.text).length, 0);
}

/**
 * Pack groups of segments (each group one item, e.g. `R running 40`) into as
 * few rows of `width` as possible, `gap` spaces apart, keeping their order.
 */
export function packSegs(items: readonly SegLine[], width: number, gap = 2): SegLine[] {
  const lines: Seg[][] = [];
  let current: Seg[] = [];
  let used = 0;
  for (const item of items) {
    const len = segLength(item);
    if (current.length > 0 && used + gap + len > width) {
      lines.push(current);
      current = [];
      used = 0;
    }
    if (current.length > 0) {
      current.push({ text: ' '.repeat(gap) });
      used += gap;
    }
    current.push(...item);
    used += len;
  }
  if (current.length > 0) lines.push(current);
  return lines;
}
