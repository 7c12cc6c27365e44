import { describe, expect, it } from 'vitest';
import type { HeldStatus } from '../../src/core/statuses.js';
import { emptyCounts } from '../../src/core/statuses.js';
import { planClaim, planDownloads, planEnd, planSubmissions, type EndInput, type PlanInput } from '../../src/session/plan.js';

/** The loop's decisions are pure: these are the cases a pass meets, with the numbers worked out by hand. */

const held = (...statuses: HeldStatus[]) => statuses.map((status, i) => ({ run: 100 + i, status }));

const input = (runs: ReturnType<typeof held>, over: Partial<PlanInput<{ run: number; status: HeldStatus }>> = {}): PlanInput<{ run: number; status: HeldStatus }> => ({
  held: runs,
  downloading: new Set(),
  options: { nproc: 2, nprep: 1, limit: null },
  claimsMade: 0,
  mayStartWork: true,
  ...over,
});

describe('the plan of a pass', () => {
  it('claims up to nproc + nprep held, within --limit, and nothing while work may not start or p paused claiming', () => {
    expect(planClaim(input(held()), false)).toBe(3);
    expect(planClaim(input(held('running', 'staged')), false)).toBe(1);
    expect(planClaim(input(held('running', 'running', 'staged', 'claimed')), false)).toBe(0);
    expect(planClaim(input(held(), { options: { nproc: 2, nprep: 1, limit: 5 }, claimsMade: 4 }), false)).toBe(1);
    expect(planClaim(input(held(), { mayStartWork: false }), false)).toBe(0);
    expect(planClaim(input(held()), true)).toBe(0);
  });

  it('downloads for the free job slots plus nprep staged ahead, resumes interrupted downloads first, within the archive limit', () => {
    // Two slots free, one staged ahead wanted: three claimed runs start.
    expect(planDownloads(input(held('claimed', 'claimed', 'claimed', 'claimed')), 10).start.map((r) => r.run)).toEqual([100, 101, 102]);
    // One job on the grid and one staged: one slot free, no prep room left: one starts.
    expect(planDownloads(input(held('running', 'staged', 'claimed', 'claimed')), 10).start.map((r) => r.run)).toEqual([102]);
    // A download left `downloading` (an infrastructure fault) resumes, and counts against the room.
    const plan = planDownloads(input(held('downloading', 'claimed', 'claimed', 'claimed')), 10);
    expect(plan.resume.map((r) => r.run)).toEqual([100]);
    expect(plan.start.map((r) => r.run)).toEqual([101, 102]);
    expect(plan.waiting).toBe(3);
    // A download under way is neither resumed nor started again; the archive allows two at once.
    const busy = planDownloads(input(held('downloading', 'claimed', 'claimed'), { downloading: new Set([100]) }), 2);
    expect(busy.resume).toEqual([]);
    expect(busy.start.map((r) => r.run)).toEqual([101]);
  });

  it('submits staged runs while fewer than nproc jobs are on the grid, and none while work may not start', () => {
    expect(planSubmissions(input(held('staged', 'staged', 'staged'))).map((r) => r.run)).toEqual([100, 101]);
    expect(planSubmissions(input(held('submitted', 'staged', 'staged'))).map((r) => r.run)).toEqual([101]);
    expect(planSubmissions(input(held('running', 'submitted', 'staged')))).toEqual([]);
    expect(planSubmissions(input(held('staged'), { mayStartWork: false }))).toEqual([]);
  });
});

describe('whether the session is done', () => {
  const counts = (over: Partial<Record<HeldStatus | 'new' | 'finished' | 'failed', number>> = {}) => ({ counts: { ...emptyCounts(), ...over }, datasets: {} });
  const end = (over: Partial<EndInput>): EndInput => ({
    holding: 0,
    draining: false,
    options: { limit: null, until: null, datasets: [] },
    claimsMade: 0,
    claimingPaused: false,
    production: { status: 'active', statusReason: null },
    counts: counts(),
    ...over,
  });

  it('goes on while it holds runs, stops once drained or at its limit', () => {
    expect(planEnd(end({ holding: 2, options: { limit: null, until: 'done', datasets: [] } }))).toEqual({ kind: 'go-on' });
    expect(planEnd(end({ holding: 2, draining: true }))).toEqual({ kind: 'go-on' });
    expect(planEnd(end({ draining: true }))).toEqual({ kind: 'stop', reason: 'drained' });
    expect(planEnd(end({ options: { limit: 3, until: null, datasets: [] }, claimsMade: 3 }))).toEqual({ kind: 'stop', reason: 'limit of 3 runs reached' });
    expect(planEnd(end({}))).toEqual({ kind: 'go-on' });
  });

  it('--until-idle asks whether anything is left to claim, unless claiming is paused', () => {
    const idle = { limit: null, until: 'idle' as const, datasets: [] };
    expect(planEnd(end({ options: idle }))).toEqual({ kind: 'stop-if-nothing-left', reason: 'nothing left to claim', notDone: null });
    expect(planEnd(end({ options: idle, claimingPaused: true }))).toEqual({ kind: 'go-on' });
    expect(planEnd(end({ options: idle, production: { status: 'paused', statusReason: 'x' } }))).toEqual({ kind: 'go-on' });
  });

  it('--until-done waits for runs held elsewhere and for a paused production, and says why', () => {
    const done = { limit: null, until: 'done' as const, datasets: [] };
    expect(planEnd(end({ options: done, counts: counts({ running: 2, claimed: 1, new: 5 }) }))).toEqual({
      kind: 'not-done',
      why: '3 run(s) held by other sessions; waiting for them to finish, or to be reaped and adopted',
    });
    expect(planEnd(end({ options: done, production: { status: 'paused', statusReason: 'tape robot down' }, counts: counts({ running: 1 }) }))).toEqual({
      kind: 'not-done',
      why: 'production paused (tape robot down); waiting for resume',
    });
    expect(planEnd(end({ options: done, counts: counts({ finished: 9, failed: 1 }) }))).toEqual({
      kind: 'stop-if-nothing-left',
      reason: 'production done: every run finished or failed',
      notDone: 'runs waiting on their parent runs',
    });
    // Before the first read of the counters nothing is known to be done.
    expect(planEnd(end({ options: done, counts: null })).kind).toBe('not-done');
    // With --dataset, only those datasets' runs count.
    const byDataset = { counts: { ...emptyCounts(), running: 4 }, datasets: { a: { ...emptyCounts(), finished: 3 }, b: { ...emptyCounts(), running: 4 } } };
    expect(planEnd(end({ options: { ...done, datasets: ['a'] }, counts: byDataset })).kind).toBe('stop-if-nothing-left');
  });
});
