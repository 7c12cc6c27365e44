import { useEffect, useRef, useState } from 'react';
import { render, useInput, useStdin, useStdout } from 'ink';
import type { OperatorControls, Snapshot, SnapshotSource } from '../../session/snapshot.js';
import { printable } from '../../core/sanitize.js';
import { Dashboard } from './Dashboard.js';
import { colorAllowed } from './theme.js';

/** Redraws happen on this timer only: at most four a second, however busy the loop is. */
export const FLUSH_MS = 250;

/** When stdout is not a terminal it has no size; draw for the smallest terminal we support. */
const FALLBACK_COLUMNS = 80;
const FALLBACK_ROWS = 24;

function terminalSize(stdout: NodeJS.WriteStream): { columns: number; rows: number } {
  return { columns: stdout.columns || FALLBACK_COLUMNS, rows: stdout.rows || FALLBACK_ROWS };
}

/** Follows the terminal size through the 'resize' event, so the frame is re-planned at once. */
function useTerminalSize(): { columns: number; rows: number } {
  const { stdout } = useStdout();
  const [size, setSize] = useState(() => terminalSize(stdout));
  useEffect(() => {
    const onResize = () => setSize(terminalSize(stdout));
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
  }, [stdout]);
  return size;
}

/**
 * The newest snapshot, handed to React at most once per FLUSH_MS. The source
 * may publish hundreds of times a second (every download chunk); each publish
 * only stores the snapshot in a ref, and the timer re-renders when something
 * changed or when the displayed second turned (uptime and the tick countdown
 * move even when the loop is quiet). One timer, one render per flush: no
 * flicker and no CPU spent on frames nobody can read.
 */
function useThrottledSnapshot(source: SnapshotSource, active: boolean): { snapshot: Snapshot; now: number } {
  const latest = useRef<Snapshot>(source.getSnapshot());
  const dirty = useRef(false);
  const [shown, setShown] = useState(() => ({ snapshot: latest.current, now: Date.now() }));
  useEffect(() => {
    if (!active) return;
    // Catch anything published between the first render and this subscription.
    latest.current = source.getSnapshot();
    dirty.current = true;
    const unsubscribe = source.subscribe(() => {
      latest.current = source.getSnapshot();
      dirty.current = true;
    });
    let second = Math.floor(Date.now() / 1000);
    const timer = setInterval(() => {
      const now = Date.now();
      const nowSecond = Math.floor(now / 1000);
      if (!dirty.current && nowSecond === second) return;
      dirty.current = false;
      second = nowSecond;
      setShown({ snapshot: latest.current, now });
    }, FLUSH_MS);
    return () => {
      unsubscribe();
      clearInterval(timer);
    };
  }, [source, active]);
  return shown;
}

export interface LiveAppProps {
  source: SnapshotSource;
  controls: OperatorControls;
  /** Set by stop(): render nothing, so unmounting leaves an empty live area. */
  stopped?: boolean;
  /** Colour on or off; defaults to the NO_COLOR convention. */
  color?: boolean;
}

/**
 * The live dashboard: throttled snapshot, terminal size, keys. Exported for
 * tests; the coordinator uses startLiveDisplay.
 */
export function LiveApp({ source, controls, stopped = false, color }: LiveAppProps) {
  const { snapshot, now } = useThrottledSnapshot(source, !stopped);
  const { columns, rows } = useTerminalSize();
  // Without a TTY on stdin Ink cannot enter raw mode (and would throw if asked):
  // keys are off and the footer says so. Ink passes stdin.isTTY through, which is
  // undefined (not false) for a pipe or /dev/null, and useInput only stands down
  // on a strict false, hence the explicit comparison.
  const rawMode = useStdin().isRawModeSupported === true;
  const keysEnabled = rawMode && snapshot.keysEnabled;
  useInput(
    (input, key) => {
      // Raw mode delivers Ctrl-C as 'c' with ctrl; Ink's own exit on Ctrl-C is off
      // (exitOnCtrlC: false) so the loop can cancel jobs and roll back first.
      if (key.ctrl && input === 'c') controls.abort();
      else if (key.ctrl || key.meta) return;
      else if (input === 'd' || input === 'q') controls.drain();
      else if (input === 'p') controls.togglePauseClaiming();
    },
    { isActive: rawMode && !stopped },
  );
  if (stopped) return null;
  return <Dashboard snapshot={snapshot} columns={columns} rows={rows} now={now} keysEnabled={keysEnabled} color={color} />;
}

export interface LiveDisplay {
  /**
   * Unmount, clear the live area and print `finalText` (a plain summary) in
   * its place. Safe to call twice; the second call waits for the first.
   */
  stop(finalText?: string): Promise<void>;
}

/**
 * Draw the dashboard for `source` until stop(). Keys map to `controls`:
 * d and q drain, p toggles claiming, Ctrl-C aborts.
 */
export function startLiveDisplay(
  source: SnapshotSource,
  controls: OperatorControls,
  options: { stdout?: NodeJS.WriteStream; stdin?: NodeJS.ReadStream } = {},
): LiveDisplay {
  const stdout = options.stdout ?? process.stdout;
  const stdin = options.stdin ?? process.stdin;
  const color = colorAllowed(process.env);
  const instance = render(<LiveApp source={source} controls={controls} color={color} />, {
    stdout,
    stdin,
    // Ink would unmount and exit on Ctrl-C before the loop could roll back; LiveApp handles it.
    exitOnCtrlC: false,
    // console.* from other modules goes above the live area instead of tearing it;
    // only when we draw on process.stdout, where console writes too.
    patchConsole: stdout === process.stdout,
    // Only rewrite the lines that changed: a download ticking must not repaint the whole screen.
  });
  let stopping: Promise<void> | null = null;
  return {
    stop(finalText?: string): Promise<void> {
      stopping ??= (async () => {
        const exited = instance.waitUntilExit();
        // An empty frame first: the unmount then leaves nothing of the dashboard behind.
        instance.rerender(<LiveApp source={source} controls={controls} color={color} stopped />);
        instance.clear();
        instance.unmount();
        await exited;
        if (finalText !== undefined && finalText !== '') {
          // The summary quotes event texts and the tag: no control sequence from them reaches the terminal.
          const text = printable(finalText);
          stdout.write(text.endsWith('\n') ? text : `${text}\n`);
        }
      })();
      return stopping;
    },
  };
}
