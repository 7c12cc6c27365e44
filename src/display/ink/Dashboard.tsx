import { Box } from 'ink';
import type { Snapshot } from '../../session/snapshot.js';
import { AbortView, abortWanted } from './AbortView.js';
import { Banner, bannerWanted } from './Banner.js';
import { Events, eventsWanted } from './Events.js';
import { Footer } from './Footer.js';
import { Header, headerLines } from './Header.js';
import { Limits, limitsLines } from './Limits.js';
import { Progress, progressLines } from './Progress.js';
import { RunTable, runTableWanted } from './RunTable.js';
import { Sessions, sessionsWanted } from './Sessions.js';
import { printableSnapshot } from './safe-snapshot.js';
import { ColorContext, colorAllowed } from './theme.js';

/** From this width the run table gets its own column beside sessions and events. */
export const WIDE_COLUMNS = 140;
/** Columns between the two halves of the wide layout. */
const GUTTER = 2;

export interface DashboardProps {
  snapshot: Snapshot;
  /** Terminal size; the frame is at most `columns` wide and `rows - 1` high. */
  columns: number;
  rows: number;
  /** Clock for ages and countdowns; the live display ticks it, tests fix it. Defaults to `snapshot.at`. */
  now?: number;
  /** Whether keys work; defaults to `snapshot.keysEnabled` (the live display also knows about raw mode). */
  keysEnabled?: boolean;
  /** Colour on or off; defaults to the NO_COLOR convention. */
  color?: boolean;
}

interface Claim {
  /** Rows the section could use. */
  want: number;
  /** Rows it gets before anyone gets more (if there are that many). */
  min: number;
  /** Share of the rows beyond the minimums. */
  weight: number;
}

/**
 * Share `rows` among sections: minimums first in the order given (that order
 * is the priority when rows are short), then one row at a time to the section
 * furthest below its weighted share, never beyond what it wants.
 */
export function allocateRows(rows: number, claims: readonly Claim[]): number[] {
  let left = Math.max(0, rows);
  const given = claims.map((c) => {
    const take = Math.min(c.min, c.want, left);
    left -= take;
    return take;
  });
  while (left > 0) {
    let best = -1;
    for (let i = 0; i < claims.length; i++) {
      const c = claims[i]!;
      if (given[i]! >= c.want) continue;
      if (best < 0 || given[i]! / c.weight < given[best]! / claims[best]!.weight) best = i;
    }
    if (best < 0) break;
    given[best]! += 1;
    left -= 1;
  }
  return given;
}

/** Every height the dashboard renders with, decided before rendering so the frame fits. */
export interface DashboardLayout {
  wide: boolean;
  width: number;
  leftWidth: number;
  rightWidth: number;
  header: number;
  banner: number;
  progress: number;
  datasets: boolean;
  limits: number;
  main: number;
  sessions: number;
  events: number;
  footer: number;
}

/**
 * The row budget. Ink appends a newline to the frame, and a frame as tall as
 * the terminal makes it clear the whole screen (and the shifter's scrollback),
 * so the frame gets `rows - 1` lines at most. Fixed sections shrink before the
 * frame may grow: limits go first, then the second rows of progress, header
 * and banner.
 */
export function planDashboard(snapshot: Snapshot, columns: number, rows: number, now: number): DashboardLayout {
  const width = Math.max(20, Math.floor(columns));
  const maxLines = Math.max(1, Math.floor(rows) - 1);
  const wide = width >= WIDE_COLUMNS;
  const leftWidth = wide ? Math.floor((width - GUTTER) * 0.55) : width;
  const rightWidth = wide ? width - GUTTER - leftWidth : width;

  let header = headerLines(snapshot, now, width).length;
  // Banners are the most urgent thing on screen, but a storm of them must not hide the runs.
  let banner = Math.min(bannerWanted(snapshot, now, width), Math.max(2, Math.floor(rows / 5)));
  let progress = progressLines(snapshot, width).length;
  let limits = limitsLines(snapshot, width).length;
  const footer = 1;
  const fixed = () => header + banner + progress + limits + footer;
  // A very short terminal: give up detail in this order until some room is left for the runs.
  const enough = Math.min(4, maxLines);
  if (maxLines - fixed() < enough) limits = 0;
  if (maxLines - fixed() < enough) progress = Math.min(progress, 1);
  if (maxLines - fixed() < enough) header = Math.min(header, 1);
  if (maxLines - fixed() < enough) banner = Math.min(banner, 1);
  const overflow = Math.max(0, fixed() - maxLines);
  // Still too tall (a handful of rows): keep the banner and footer, drop from the top sections.
  if (overflow > 0) {
    let cut = overflow;
    const take = (n: number) => {
      const t = Math.min(n, cut);
      cut -= t;
      return n - t;
    };
    progress = take(progress);
    header = take(header);
    banner = take(banner);
  }
  const rest = Math.max(0, maxLines - fixed());

  const mainWant = snapshot.abort !== null ? abortWanted(snapshot.abort, leftWidth) : runTableWanted(snapshot.runs);
  const sessWant = sessionsWanted(snapshot.sessions);
  const evWant = eventsWanted(snapshot.events);
  let main: number;
  let sessions: number;
  let events: number;
  let spare: number;
  if (wide) {
    main = Math.min(mainWant, rest);
    [events, sessions] = allocateRows(rest, [
      { want: evWant, min: 3, weight: 2 },
      { want: sessWant, min: 2, weight: 1 },
    ]) as [number, number];
    spare = Math.min(rest - main, rest - events - sessions);
  } else {
    [main, events, sessions] = allocateRows(rest, [
      { want: mainWant, min: 4, weight: 3 },
      { want: evWant, min: 3, weight: 2 },
      { want: sessWant, min: 2, weight: 1 },
    ]) as [number, number, number];
    spare = rest - main - events - sessions;
  }
  // The per-dataset row is a luxury: only when every list already has all it wants.
  const datasets = spare > 0 && progress === progressLines(snapshot, width).length && progressLines(snapshot, width, true).length > progress;
  if (datasets) progress += 1;
  return { wide, width, leftWidth, rightWidth, header, banner, progress, datasets, limits, main, sessions, events, footer };
}

/**
 * The whole live display as a pure function of the snapshot and the terminal
 * size. Narrow terminals get one column; from WIDE_COLUMNS the run table (or
 * the abort report) sits on the left and sessions and events on the right.
 */
export function Dashboard({ snapshot: raw, columns, rows, now = raw.at, keysEnabled = raw.keysEnabled, color }: DashboardProps) {
  // Texts from others (job stderr, pause reasons, tags, host names) lose their control sequences
  // before the layout measures them: see src/core/sanitize.ts.
  const snapshot = printableSnapshot(raw);
  const l = planDashboard(snapshot, columns, rows, now);
  const main =
    snapshot.abort !== null ? (
      <AbortView abort={snapshot.abort} width={l.leftWidth} maxLines={l.main} />
    ) : (
      <RunTable runs={snapshot.runs} now={now} width={l.leftWidth} maxLines={l.main} />
    );
  const side = (
    <>
      <Sessions sessions={snapshot.sessions} now={now} width={l.rightWidth} maxLines={l.sessions} />
      <Events events={snapshot.events} width={l.rightWidth} maxLines={l.events} />
    </>
  );
  return (
    <ColorContext.Provider value={color ?? colorAllowed(process.env)}>
      <Box flexDirection="column" width={l.width} flexShrink={0}>
        <Header snapshot={snapshot} now={now} width={l.width} maxLines={l.header} />
        <Banner snapshot={snapshot} now={now} width={l.width} maxLines={l.banner} />
        <Progress snapshot={snapshot} width={l.width} datasets={l.datasets} maxLines={l.progress} />
        <Limits snapshot={snapshot} width={l.width} maxLines={l.limits} />
        {l.wide ? (
          <Box flexDirection="row">
            <Box flexDirection="column" width={l.leftWidth} marginRight={GUTTER} flexShrink={0}>
              {main}
            </Box>
            <Box flexDirection="column" width={l.rightWidth} flexShrink={0}>
              {side}
            </Box>
          </Box>
        ) : (
          <>
            {main}
            {side}
          </>
        )}
        {l.footer > 0 ? <Footer snapshot={snapshot} keysEnabled={keysEnabled} width={l.width} /> : null}
      </Box>
    </ColorContext.Provider>
  );
}
