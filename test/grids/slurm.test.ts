/**
 * The Slurm backend against a real single-node Slurm (test/helpers/slurm.ts).
 * Accounting is off there, so finished jobs are judged by squeue, then
 * scontrol, then the wrapper's status file: the paths clusters without
 * slurmdbd depend on.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand, type CommandRunner } from '../../src/grids/command.js';
import { GridUnavailableError, type Grid, type JobRef, type JobSpec, type JobState } from '../../src/grids/grid.js';
import { createSlurmGrid } from '../../src/grids/slurm.js';
import { slurmAvailable, startSlurm, type TestSlurm } from '../helpers/slurm.js';

// In CI the test must run (and fail loudly if Slurm cannot start), never skip.
describe.skipIf(!slurmAvailable() && !process.env.CI)('Slurm backend on a real Slurm', () => {
  let slurm: TestSlurm;
  let dir: string;
  /** Every command the backend ran, in order. */
  let calls: string[][];
  let grid: Grid;

  beforeAll(async () => {
    slurm = await startSlurm();
    dir = await mkdtemp(join(tmpdir(), 'rp-slurm-jobs-'));
    const run: CommandRunner = (argv, opts) => {
      calls.push(argv);
      return runCommand(argv, { ...opts, env: slurm.env });
    };
    calls = [];
    grid = createSlurmGrid({ partition: 'debug', time: '00:10:00', memory: '64M', commandTimeoutSeconds: 20 }, run);
  });

  afterAll(async () => {
    await slurm?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  async function job(name: string, body: string, env: Record<string, string> = {}): Promise<JobSpec> {
    const workDir = join(dir, name);
    const script = join(dir, `${name}.sh`);
    await writeFile(script, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
    return {
      name,
      script,
      env,
      workDir,
      stdoutPath: join(workDir, 'job.out'),
      stderrPath: join(workDir, 'job.err'),
      statusPath: join(workDir, 'status.json'),
    };
  }

  const ref = (spec: JobSpec, jobId: string): JobRef => ({ jobId, statusPath: spec.statusPath });

  async function pollUntil(refs: JobRef[], settled: (state: JobState) => boolean, timeoutMs = 60_000): Promise<Map<string, JobState>> {
    const deadline = Date.now() + timeoutMs;
    let states = await grid.poll(refs);
    while (![...states.values()].every(settled)) {
      if (Date.now() > deadline) throw new Error(`jobs did not settle: ${JSON.stringify([...states])}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      states = await grid.poll(refs);
    }
    return states;
  }

  function squeueLists(jobId: string, states?: string): boolean {
    const args = ['--noheader', '--format=%i', `--jobs=${jobId}`, ...(states === undefined ? [] : [`--states=${states}`])];
    const result = spawnSync('squeue', args, { env: slurm.env, encoding: 'utf8' });
    return result.status === 0 && result.stdout.split('\n').some((line) => line.trim() === jobId);
  }

  it('runs a job through the wrapper and reports exit 0 and the host', async () => {
    const spec = await job('rp-test-ok', 'echo "run=$RUN" > "$OUTPUT_FILE"; echo to-stdout', {
      RUN: `2091 'quoted' $HOME`,
      OUTPUT_FILE: join(dir, 'rp-test-ok.result'),
    });
    const jobId = await grid.submit(spec);
    expect(jobId).toMatch(/^\d+$/);
    const sbatch = calls.find((argv) => argv[0] === 'sbatch')!;
    expect(sbatch).toEqual([
      'sbatch', '--parsable', '--job-name=rp-test-ok', `--chdir=${spec.workDir}`,
      `--output=${spec.workDir}/rp-test-ok.slurm-%j.out`, `--error=${spec.workDir}/rp-test-ok.slurm-%j.err`,
      '--partition=debug', '--time=00:10:00', '--mem=64M', `${spec.workDir}/rp-test-ok.rp-batch.sh`,
    ]);

    const state = (await pollUntil([ref(spec, jobId)], (s) => s.state === 'done')).get(jobId);
    expect(state).toMatchObject({ state: 'done', exitCode: 0 });
    const status = JSON.parse(await readFile(spec.statusPath, 'utf8')) as { host: string; exit: number };
    expect(status.exit).toBe(0);
    expect(state).toHaveProperty('host', status.host);
    // The environment arrived unexpanded, quotes and all.
    expect(await readFile(join(dir, 'rp-test-ok.result'), 'utf8')).toBe(`run=2091 'quoted' $HOME\n`);
    expect(await readFile(spec.stdoutPath, 'utf8')).toBe('to-stdout\n');
  });

  it('reports a non-zero exit code with the Slurm state', async () => {
    const spec = await job('rp-test-exit3', 'echo failing >&2; exit 3');
    const jobId = await grid.submit(spec);
    const state = (await pollUntil([ref(spec, jobId)], (s) => s.state === 'done')).get(jobId);
    expect(state).toMatchObject({ state: 'done', exitCode: 3, reason: 'Slurm job state FAILED' });
    expect(await readFile(spec.stderrPath, 'utf8')).toBe('failing\n');
  });

  it('cancels a running job', async () => {
    const spec = await job('rp-test-sleep', 'sleep 300');
    const jobId = await grid.submit(spec);
    await pollUntil([ref(spec, jobId)], (s) => s.state === 'running');
    // The wrapper must be up before the cancellation for it to record one.
    const deadline = Date.now() + 30_000;
    while ((await readFile(spec.statusPath, 'utf8').catch(() => '')) === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));

    await grid.cancel([jobId]);
    const gone = Date.now() + 30_000;
    while (squeueLists(jobId) && Date.now() < gone) await new Promise((r) => setTimeout(r, 300));
    expect(squeueLists(jobId)).toBe(false);

    const state = (await pollUntil([ref(spec, jobId)], (s) => s.state === 'done')).get(jobId);
    expect(state?.state).toBe('done');
    if (state?.state !== 'done') return;
    // The wrapper traps SIGTERM and records 128+15.
    expect(state.exitCode).toBe(143);
    expect(state.reason).toBe('Slurm job state CANCELLED');
    // Cancelling again, or an id Slurm never had, is not an error.
    await expect(grid.cancel([jobId, '999999'])).resolves.toBeUndefined();
  });

  it('polls many jobs in one squeue call and falls back on the wrapper once Slurm forgets them', async () => {
    const specs = await Promise.all([0, 1, 2].map((i) => job(`rp-test-many-${i}`, `exit ${i}`)));
    const ids: string[] = [];
    for (const spec of specs) ids.push(await grid.submit(spec));
    const unknown: JobRef = { jobId: '999999', statusPath: join(dir, 'never', 'status.json') };
    const refs = [...specs.map((spec, i) => ref(spec, ids[i]!)), unknown];

    calls = [];
    const first = await grid.poll(refs);
    expect([...first.keys()].sort()).toEqual(refs.map((r) => r.jobId).sort());
    const squeues = calls.filter((argv) => argv[0] === 'squeue');
    expect(squeues).toEqual([['squeue', '--noheader', '--states=all', '--format=%i|%T|%N', `--jobs=${refs.map((r) => r.jobId).join(',')}`]]);
    expect(first.get('999999')).toEqual({ state: 'lost', reason: 'Slurm no longer knows the job and its wrapper never started' });

    const done = await pollUntil(refs.slice(0, 3), (s) => s.state === 'done');
    expect(ids.map((id) => (done.get(id) as { exitCode: number }).exitCode)).toEqual([0, 1, 2]);

    // MinJobAge=5 in the test cluster: wait until squeue and scontrol have forgotten the jobs.
    const forgotten = Date.now() + 60_000;
    while (ids.some((id) => squeueLists(id, 'all')) && Date.now() < forgotten) await new Promise((r) => setTimeout(r, 1000));
    expect(ids.some((id) => squeueLists(id, 'all'))).toBe(false);

    calls = [];
    const later = await grid.poll(refs);
    expect(ids.map((id) => later.get(id))).toEqual(ids.map((_, i) => expect.objectContaining({ state: 'done', exitCode: i })));
    // Accounting is off here: sacct is not asked again once it said so; scontrol is, once per forgotten job.
    expect(calls.filter((argv) => argv[0] === 'sacct')).toEqual([]);
    expect(calls.filter((argv) => argv[0] === 'scontrol').length).toBe(4);
  });

  it('turns a submission refused by Slurm into GridUnavailableError', async () => {
    const bad = createSlurmGrid({ partition: 'no-such-partition' }, (argv, opts) => runCommand(argv, { ...opts, env: slurm.env }));
    const spec = await job('rp-test-badpart', 'true');
    const error = await bad.submit(spec).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toMatch(/^sbatch failed: sbatch: error: .*partition/i);
  });
});
