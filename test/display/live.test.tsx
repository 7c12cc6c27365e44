import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, test, vi, afterAll } from 'vitest';
import { cleanup, render } from 'ink-testing-library';
import type { OperatorControls, Snapshot, SnapshotSource } from '../../src/session/snapshot.js';
import { FLUSH_MS, LiveApp, startLiveDisplay } from '../../src/display/ink/live.js';
import { busySnapshot, emptySnapshot } from './snapshots.js';

// Ink renders only the last frame when it believes it runs in CI (is-in-ci reads CI at import);
// these tests are about the live, interactive display, so this file's Ink must not see CI.
const ciBefore = vi.hoisted(() => {
  const value = process.env.CI;
  process.env.CI = 'false';
  return value;
});
afterAll(() => {
  if (ciBefore === undefined) delete process.env.CI;
  else process.env.CI = ciBefore;
});

afterEach(() => {
  cleanup();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Poll on real time until `check` passes. Not vi.waitFor: with fake timers it
 * advances them on every poll, which would add flushes the test counts.
 */
async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const start = performance.now();
  while (!check()) {
    if (performance.now() - start > timeoutMs) throw new Error('condition not met in time');
    await sleep(5);
  }
}

/** A source like the operator loop's: publish() swaps the snapshot and tells the listeners. */
function fakeSource(initial: Snapshot): SnapshotSource & { publish(next: Snapshot): void; listeners: number } {
  let current = initial;
  const listeners = new Set<() => void>();
  return {
    getSnapshot: () => current,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    publish(next) {
      current = next;
      for (const l of listeners) l();
    },
    get listeners() {
      return listeners.size;
    },
  };
}

function fakeControls() {
  return { drain: vi.fn(), togglePauseClaiming: vi.fn(), abort: vi.fn() } satisfies OperatorControls;
}

/** Waits for the effects to subscribe and the first flush to land. */
async function settle() {
  await sleep(FLUSH_MS + 50);
}

describe('live display', () => {
  test('many snapshot changes within 100 ms cause at most two redraws, showing the latest', async () => {
    // The flush timer and the clock are faked so the test measures the throttle,
    // not how busy the machine is; React and Ink still run on real time.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    try {
      const source = fakeSource(emptySnapshot());
      const { frames, lastFrame } = render(<LiveApp source={source} controls={fakeControls()} color={false} />);
      await until(() => source.listeners === 1);
      vi.advanceTimersByTime(FLUSH_MS);
      await sleep(20);
      const before = frames.length;
      const base = emptySnapshot();
      for (let i = 1; i <= 50; i++) {
        source.publish({ ...base, total: 4200 + i, counts: { ...base.counts, new: 4200 + i } });
        vi.advanceTimersByTime(2);
      }
      await sleep(20);
      vi.advanceTimersByTime(FLUSH_MS);
      await until(() => lastFrame()!.includes('0/4,250'));
      const redraws = frames.length - before;
      expect(redraws).toBeGreaterThanOrEqual(1);
      expect(redraws).toBeLessThanOrEqual(2);
      // Quiet source, same second: no redraw at all.
      const after = frames.length;
      vi.advanceTimersByTime(FLUSH_MS / 2);
      await sleep(20);
      expect(frames.length).toBe(after);
    } finally {
      vi.useRealTimers();
    }
  });

  test('keys map to the operator controls', async () => {
    const controls = fakeControls();
    const source = fakeSource(busySnapshot());
    const { stdin } = render(<LiveApp source={source} controls={controls} color={false} />);
    // Effects (the input listener among them) have run once the source is subscribed.
    await vi.waitFor(() => expect(source.listeners).toBe(1));
    stdin.write('d');
    expect(controls.drain).toHaveBeenCalledTimes(1);
    stdin.write('q');
    expect(controls.drain).toHaveBeenCalledTimes(2);
    stdin.write('p');
    expect(controls.togglePauseClaiming).toHaveBeenCalledTimes(1);
    expect(controls.abort).not.toHaveBeenCalled();
    stdin.write('\u0003');
    expect(controls.abort).toHaveBeenCalledTimes(1);
    // Other keys (and Ctrl with other letters) do nothing.
    stdin.write('x');
    stdin.write('\u0004');
    expect(controls.drain).toHaveBeenCalledTimes(2);
    expect(controls.togglePauseClaiming).toHaveBeenCalledTimes(1);
    expect(controls.abort).toHaveBeenCalledTimes(1);
  });

  test('follows a terminal resize', async () => {
    const { stdout, lastFrame } = render(<LiveApp source={fakeSource(busySnapshot())} controls={fakeControls()} color={false} />);
    await settle();
    // ink-testing-library has no rows, so the display assumed 24.
    expect(lastFrame()!.split('\n').length).toBeLessThan(24);
    Object.defineProperty(stdout, 'rows', { value: 50, configurable: true });
    stdout.emit('resize');
    await vi.waitFor(() => expect(lastFrame()!.split('\n').length).toBeGreaterThan(30));
    expect(lastFrame()!.split('\n').length).toBeLessThan(50);
  });
});

/** A terminal-less stream pair for startLiveDisplay: what Ink writes is kept in order. */
function fakeStreams(stdinIsTTY: boolean | undefined) {
  const writes: string[] = [];
  const stdout = Object.assign(new EventEmitter(), {
    columns: 80,
    rows: 24,
    isTTY: false,
    write(data: string, callback?: () => void) {
      writes.push(data);
      callback?.();
      return true;
    },
  });
  const stdin = Object.assign(new EventEmitter(), {
    // A pipe or /dev/null has no isTTY at all, not isTTY: false.
    ...(stdinIsTTY === undefined ? {} : { isTTY: stdinIsTTY }),
    setEncoding() {},
    setRawMode() {},
    resume() {},
    pause() {},
    ref() {},
    unref() {},
    read: () => null,
  });
  return {
    writes,
    stdout: stdout as unknown as NodeJS.WriteStream,
    stdin: stdin as unknown as NodeJS.ReadStream,
  };
}

describe('startLiveDisplay', () => {
  test('stop() unsubscribes and leaves the summary as the last output', async () => {
    const source = fakeSource(busySnapshot());
    const { writes, stdout, stdin } = fakeStreams(true);
    const display = startLiveDisplay(source, fakeControls(), { stdout, stdin });
    await vi.waitFor(() => expect(source.listeners).toBe(1));
    expect(writes.join('')).toContain('R running');
    await display.stop('run-production: drained; 54 runs returned, 0 failed');
    expect(source.listeners).toBe(0);
    expect(writes[writes.length - 1]).toBe('run-production: drained; 54 runs returned, 0 failed\n');
    // A second stop is harmless and prints nothing more.
    const count = writes.length;
    await display.stop('again');
    expect(writes.length).toBe(count);
  });

  test.each([false, undefined])('without a terminal on stdin (isTTY %s), keys are off and the footer says so', async (isTTY) => {
    const { writes, stdout, stdin } = fakeStreams(isTTY);
    const source = fakeSource(busySnapshot());
    const display = startLiveDisplay(source, fakeControls(), { stdout, stdin });
    // Ink's raw-mode error would come from an effect: wait until the effects have run.
    await vi.waitFor(() => expect(source.listeners).toBe(1));
    await sleep(20);
    const out = writes.join('');
    expect(out).toContain('keys disabled: stdin is not a terminal');
    // Ink shows its error overview when raw mode is requested on a non-TTY.
    expect(out).not.toContain('Raw mode is not supported');
    await display.stop();
  });
});
