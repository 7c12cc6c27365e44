import { afterEach, describe, expect, test } from 'vitest';
import { renderToString } from 'ink';
import { cleanup, render } from 'ink-testing-library';
import type { Snapshot } from '../../src/session/snapshot.js';
import { Dashboard } from '../../src/display/ink/Dashboard.js';
import {
  abortingSnapshot,
  busySnapshot,
  downloadingSnapshot,
  emptySnapshot,
  NOW,
  pausedSnapshot,
  quotaFullSnapshot,
  run,
  session,
  staleSessionsSnapshot,
} from './snapshots.js';

afterEach(() => {
  cleanup();
});

/** ink-testing-library's terminal is 100 columns wide, so 80 and 100 are drawn with its render. */
function frame(snapshot: Snapshot, columns = 80, rows = 24): string {
  const { lastFrame } = render(<Dashboard snapshot={snapshot} columns={columns} rows={rows} color={false} />);
  return lastFrame() ?? '';
}

const lineCount = (text: string) => text.split('\n').length;

describe('Dashboard', () => {
  test('an empty production shows totals, no runs, and the keys', () => {
    const out = frame(emptySnapshot());
    expect(out).toContain('alcap-mu v3 [pass2]');
    expect(out).toContain('db db01.psi.ch/alcap');
    expect(out).toContain('shifter@merlin-l-01');
    expect(out).toContain('session 3f9c2a71');
    expect(out).toContain('up 3h12m');
    expect(out).toContain('next tick 4s');
    expect(out).toContain('0/4,200 0%');
    expect(out).toContain('N new 4,200');
    expect(out).toContain('No runs held by this session.');
    expect(out).toContain('No other sessions.');
    expect(out).toContain('ETA ?');
    expect(out).toMatch(/d drain .*p pause claiming .*q quit \(= drain\) .*Ctrl-C abort/);
  });

  test('a busy production: busiest first, windowed, with "+N more"', () => {
    const snapshot = busySnapshot();
    const out = frame(snapshot);
    expect(lineCount(out)).toBeLessThan(24);
    for (const letter of ['N new', 'C claimed', 'D downloading', 'S staged', 'Q submitted', 'R running', 'F finished', 'X failed']) {
      expect(out).toContain(letter);
    }
    expect(out).toContain('1,138/4,200 27%');
    expect(out).toContain('41.6 runs/h');
    expect(out).toContain('ETA 3d01h');
    expect(out).toContain('jobs 47/50');
    expect(out).toContain('staged 6/8');
    expect(out).toContain('production 140/200');
    const rows = out.split('\n').filter((l) => /^\s+\d{5} /.test(l));
    expect(rows.length).toBeGreaterThan(2);
    expect(rows.every((l) => l.includes('R running'))).toBe(true);
    const more = /\+(\d+) more: /.exec(out);
    expect(more).not.toBeNull();
    expect(Number(more![1]) + rows.length).toBe(snapshot.runs.length);
  });

  test('the run table gives a taller terminal more rows', () => {
    const short = frame(busySnapshot(), 100, 24).split('\n').filter((l) => /^\s+\d{5} /.test(l)).length;
    const tall = frame(busySnapshot(), 100, 50).split('\n').filter((l) => /^\s+\d{5} /.test(l)).length;
    expect(tall).toBeGreaterThan(short + 10);
  });

  test('downloads show a bar, the bytes and the rate', () => {
    const out = frame(downloadingSnapshot(), 100, 24);
    expect(out).toMatch(/10301 .*D downloading .*█+░+ 35% 1\.2 GiB\/3\.4 GiB 12\.3 MiB\/s/);
    // Size unknown: no bar, but the bytes so far and the rate.
    expect(out).toMatch(/10302 .*512 MiB 800 KiB\/s/);
    // At 80 columns the rate survives and the byte counts give way.
    expect(frame(downloadingSnapshot())).toMatch(/10301 .*█+░+ 35% 12\.3 MiB\/s/);
  });

  test('a full quota says why downloads are paused', () => {
    const out = frame(quotaFullSnapshot());
    expect(out).toContain('downloads paused: staging disk at 93% (spacelim 90%)');
    expect(out).toMatch(/disk █{10} 93% of 90% limit \(quota\)/);
  });

  test('stale sessions are marked in words and listed first', () => {
    const out = frame(staleSessionsSnapshot());
    expect(out).toContain('Other sessions (3)  1 STALE');
    const lines = out.split('\n');
    const first = lines.findIndex((l) => l.startsWith('Other sessions')) + 1;
    expect(lines[first]).toMatch(/^STALE edmonds@merlin-l-07 +started 3h00m ago +heartbeat 21m00s +17 runs held/);
    expect(lines[first + 1]).not.toContain('STALE');
  });

  test('a paused production gets a banner with reason and since when', () => {
    const out = frame(pausedSnapshot());
    expect(out).toContain('PRODUCTION PAUSED');
    expect(out).toContain('(1h05m ago)');
    expect(out).toContain('calibration v12 is wrong, see');
    expect(out).toContain('elog 4411');
    expect(lineCount(out)).toBeLessThan(24);
  });

  test('alerts, draining and claiming paused are banners too', () => {
    const base = busySnapshot();
    const out = frame({
      ...base,
      session: { ...base.session, draining: true },
      alerts: [{ kind: 'backend-failing', message: 'sbatch: error: Batch job submission failed', since: NOW - 20 * 60_000 }],
    });
    expect(out).toContain('BACKEND FAILING');
    expect(out).toContain('(20m00s ago)');
    expect(out).toContain('DRAINING');
    const paused = frame({ ...base, session: { ...base.session, claimingPaused: true } });
    expect(paused).toContain('CLAIMING PAUSED');
    expect(paused).toContain('p resume claiming');
  });

  test('an abort lists cancelled jobs, rolled-back runs and the database note', () => {
    const out = frame(abortingSnapshot());
    expect(out).toContain('ABORT');
    expect(out).toContain('Ctrl-C from shifter');
    expect(out).toContain('Cancelled jobs (3): slurm.8410201 slurm.8410202 slurm.8410203');
    expect(out).toContain('Rolled back runs (5): 10201 10202 10203 10250 10251');
    expect(out).toContain('database unreachable');
    expect(out).toContain('/tmp/run-production-rollback-3f9c2a71.json');
    expect(out).toContain('Aborting: cancelling jobs and rolling back runs');
    expect(out).not.toContain('d drain');
  });

  test('a long abort is cut with "+N more" and stays inside the frame', () => {
    const base = abortingSnapshot();
    const out = frame({
      ...base,
      abort: {
        ...base.abort!,
        cancelledJobs: Array.from({ length: 120 }, (_, i) => `slurm.${8_410_000 + i}`),
        rolledBackRuns: Array.from({ length: 300 }, (_, i) => 10_000 + i),
      },
    });
    expect(lineCount(out)).toBeLessThan(24);
    expect(out).toMatch(/Cancelled jobs \(120\):[\s\S]*\+\d+ more/);
    expect(out).toMatch(/Rolled back runs \(300\):[\s\S]*\+\d+ more/);
  });

  test('without keys the footer says why', () => {
    const out = frame({ ...emptySnapshot(), keysEnabled: false });
    expect(out).toContain('keys disabled: stdin is not a terminal');
    expect(out).not.toContain('d drain');
  });

  test('a child production shows the runs waiting on their parent', () => {
    expect(frame({ ...emptySnapshot(), waitingOnParent: 312 })).toContain('waiting on parent 312');
  });

  test('80x24 frames stay below 24 lines, whatever the state', () => {
    const many = busySnapshot();
    const storm: Snapshot = {
      ...pausedSnapshot(),
      session: { ...many.session, draining: true },
      alerts: (['backend-failing', 'archive-failing', 'archive-auth', 'database-unreachable'] as const).map((kind) => ({
        kind,
        message: `${kind} for a long while now and with a long explanation that wraps onto a second row`,
        since: NOW - 600_000,
      })),
      sessions: Array.from({ length: 30 }, (_, i) => session(i, { stale: i % 4 === 0 })),
      runs: Array.from({ length: 300 }, (_, i) => run(10_000 + i, 'running')),
      waitingOnParent: 5,
    };
    for (const snapshot of [emptySnapshot(), many, downloadingSnapshot(), quotaFullSnapshot(), staleSessionsSnapshot(), pausedSnapshot(), abortingSnapshot(), storm]) {
      expect(lineCount(frame(snapshot))).toBeLessThan(24);
    }
    const out = frame(storm);
    expect(out).toMatch(/\+\d+ more alerts/);
    expect(out).toContain('STALE');
  });

  test('any terminal size: the frame is narrower and shorter than the terminal', () => {
    const snapshots = [busySnapshot(), abortingSnapshot(), pausedSnapshot(), staleSessionsSnapshot()];
    for (const columns of [80, 140, 200]) {
      for (let rows = 8; rows <= 60; rows += 7) {
        for (const snapshot of snapshots) {
          const out = renderToString(<Dashboard snapshot={snapshot} columns={columns} rows={rows} color={false} />, { columns });
          expect(lineCount(out), `${columns}x${rows}`).toBeLessThan(rows);
          expect(Math.max(...out.split('\n').map((l) => Array.from(l).length))).toBeLessThanOrEqual(columns);
        }
      }
    }
  }, 60_000);

  test('a wide terminal puts sessions and events beside the run table', () => {
    // ink-testing-library's terminal is fixed at 100 columns; renderToString draws at any width.
    const out = renderToString(<Dashboard snapshot={busySnapshot()} columns={160} rows={40} color={false} />, { columns: 160 });
    const lines = out.split('\n');
    expect(lineCount(out)).toBeLessThan(40);
    expect(lines.some((l) => l.includes('job / download') && l.includes('Other sessions (2)'))).toBe(true);
    expect(lines.some((l) => /\d{5} .*R running .* \d\d:\d\d:\d\d +\d{5} finish/.test(l))).toBe(true);
    // The narrow layout stacks them instead.
    expect(frame(busySnapshot(), 100, 40).split('\n').some((l) => l.includes('job / download') && l.includes('Other sessions'))).toBe(false);
  });
});
