/**
 * The Grid Engine backend against outputs written from the documented formats
 * of qsub -terse, qstat -xml, qacct -j and qdel (test/fixtures/grids/sge):
 * Grid Engine cannot run in the test environment, so a recording runner
 * answers for it and the tests check the exact command lines.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderBatchScript } from '../../src/grids/batch-script.js';
import { GridUnavailableError, NOT_LOOKED_AT, type JobRef, type JobSpec, type PollOptions } from '../../src/grids/grid.js';
import { createSgeGrid, parseQacct, parseQstatXml, sgeOptionsFrom } from '../../src/grids/sge.js';
import { fixture, recordingRunner } from '../fixtures/grids/fixture-runner.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rp-sge-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sge = (name: string) => fixture('sge', name);
const QSTAT = ['qstat', '-xml', '-u', '*'];

function spec(name: string): JobSpec {
  const workDir = join(dir, name);
  return {
    name,
    script: '/prod/alcapana/v3/job.sh',
    env: { RUN: '2091', DATASET: 'run8 2024' },
    workDir,
    stdoutPath: join(workDir, 'job.out'),
    stderrPath: join(workDir, 'job.err'),
    statusPath: join(workDir, 'status.json'),
  };
}

async function ref(jobId: string, wrapper?: { host: string; exit?: number }): Promise<JobRef> {
  const statusPath = join(dir, 'status', `${jobId}.json`);
  await rm(statusPath, { force: true });
  if (wrapper !== undefined) {
    await mkdir(join(dir, 'status'), { recursive: true });
    await writeFile(statusPath, JSON.stringify({ host: wrapper.host, pid: 99, started: '2024-03-01T10:00:05Z', ...(wrapper.exit === undefined ? {} : { exit: wrapper.exit, finished: '2024-03-01T10:15:05Z' }) }));
  }
  return { jobId, statusPath };
}

describe('SGE submission', () => {
  it('runs qsub -terse with name, logs, work dir, queue, project, resources and extra arguments', async () => {
    const runner = recordingRunner({ qsub: { stdout: sge('qsub-ok.stdout') } });
    const grid = createSgeGrid(
      { queue: 'long.q', project: 'alcap', time: '02:00:00', memory: '4G', extraArgs: ['-pe', 'smp', '2'], sshHost: 'submit01', commandTimeoutSeconds: 15 },
      runner.run,
    );
    const job = spec('rp-alcapana-v3-r2091');
    await expect(grid.submit(job)).resolves.toBe('4711');
    const script = join(job.workDir, 'rp-alcapana-v3-r2091.rp-batch.sh');
    expect(runner.calls).toEqual([
      {
        argv: [
          'qsub', '-terse', '-N', 'rp-alcapana-v3-r2091',
          '-o', `${job.workDir}/rp-alcapana-v3-r2091.sge-$JOB_ID.out`, '-e', `${job.workDir}/rp-alcapana-v3-r2091.sge-$JOB_ID.err`,
          '-wd', job.workDir, '-q', 'long.q', '-P', 'alcap', '-l', 'h_rt=02:00:00,h_vmem=4G', '-pe', 'smp', '2', script,
        ],
        opts: { timeoutMs: 15_000, sshHost: 'submit01', env: expect.any(Object) },
      },
    ]);
    // Grid Engine would otherwise run the script with the queue's shell.
    expect(await readFile(script, 'utf8')).toBe(renderBatchScript(job, ['#$ -S /bin/bash']));
  });

  it('leaves out options that are not configured and runs locally by default', async () => {
    const runner = recordingRunner({ qsub: { stdout: sge('qsub-ok.stdout') } });
    const job = spec('rp-minimal');
    await createSgeGrid({}, runner.run).submit(job);
    expect(runner.calls[0]!.argv.slice(0, -1)).toEqual([
      'qsub', '-terse', '-N', 'rp-minimal', '-o', `${job.workDir}/rp-minimal.sge-$JOB_ID.out`, '-e', `${job.workDir}/rp-minimal.sge-$JOB_ID.err`, '-wd', job.workDir,
    ]);
    expect(runner.calls[0]!.opts).toEqual({ timeoutMs: 30_000, env: expect.any(Object) });
  });

  it('takes the job id of an array submission', async () => {
    const grid = createSgeGrid({}, recordingRunner({ qsub: { stdout: sge('qsub-array.stdout') } }).run);
    await expect(grid.submit(spec('rp-array'))).resolves.toBe('4720');
  });

  it.each([
    ['qsub-invalid-queue.stderr', 'qsub failed: Unable to run job: Job was rejected because job requests unknown queue "nosuch.q".'],
    ['qsub-down.stderr', 'qsub failed: error: commlib error: got select error (Connection refused)'],
  ])('turns a refused submission (%s) into GridUnavailableError', async (name, message) => {
    const grid = createSgeGrid({}, recordingRunner({ qsub: { stderr: sge(name), code: 1 } }).run);
    const error = await grid.submit(spec('rp-refused')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toBe(message);
  });
});

describe('SGE polling', () => {
  it('parses every job of qstat -xml, running and pending', () => {
    expect(Object.fromEntries(parseQstatXml(sge('qstat-mixed.stdout')))).toEqual({
      '4711': { state: 'r', queueName: 'all.q@node07.cluster' },
      '4712': { state: 't', queueName: 'long.q@node12.cluster' },
      '4716': { state: 'dr', queueName: 'all.q@node03.cluster' },
      '4713': { state: 'qw' },
      '4714': { state: 'hqw' },
      '4715': { state: 'Eqw' },
    });
    expect(parseQstatXml(sge('qstat-empty.stdout')).size).toBe(0);
  });

  it('maps queue states with one qstat call for all jobs', async () => {
    const runner = recordingRunner({ qstat: { stdout: sge('qstat-mixed.stdout') } });
    const grid = createSgeGrid({}, runner.run);
    const states = await grid.poll(await Promise.all(['4711', '4712', '4713', '4714', '4715', '4716'].map((id) => ref(id))));
    expect(Object.fromEntries(states)).toEqual({
      '4711': { state: 'running', host: 'node07.cluster' },
      '4712': { state: 'running', host: 'node12.cluster' },
      '4713': { state: 'queued' },
      '4714': { state: 'queued' },
      // Error state: still in the queue until an operator clears it (qmod -cj) or deletes it.
      '4715': { state: 'queued' },
      // Being deleted while running: still running until it is gone.
      '4716': { state: 'running', host: 'node03.cluster' },
    });
    expect(runner.calls.map((call) => call.argv)).toEqual([QSTAT]);
  });

  it('judges jobs that left the queue by the wrapper first, qacct only without a wrapper exit', async () => {
    const runner = recordingRunner({
      qstat: { stdout: sge('qstat-empty.stdout') },
      qacct: (argv) => {
        const files: Record<string, string> = { '4711': 'qacct-completed.stdout', '4717': 'qacct-exit3.stdout', '4716': 'qacct-deleted.stdout', '4718': 'qacct-rerun-limit.stdout' };
        const file = files[argv[2]!];
        return file === undefined ? { stderr: sge('qacct-unknown.stderr'), code: 1 } : { stdout: sge(file) };
      },
    });
    const grid = createSgeGrid({}, runner.run);
    const refs = [
      await ref('4711'),
      await ref('4717', { host: 'node09.cluster' }),
      await ref('4716'),
      await ref('4718', { host: 'node05.cluster' }),
      await ref('4719', { host: 'node11.cluster', exit: 4 }),
      await ref('4799'),
      await ref('4798', { host: 'node02.cluster' }),
    ];
    const states = await grid.poll(refs);
    expect(Object.fromEntries(states)).toEqual({
      '4711': { state: 'done', exitCode: 0, host: 'node07.cluster' },
      '4717': { state: 'done', exitCode: 3, host: 'node09.cluster' },
      // Deleted while running: SIGKILL.
      '4716': { state: 'done', exitCode: 137, host: 'node03.cluster', reason: 'Grid Engine failed 100 : assumedly after job' },
      // Re-run under the same id: the last record counts.
      '4718': { state: 'done', exitCode: 137, host: 'node05.cluster', reason: 'Grid Engine failed 37  : qmaster enforced h_rt, h_cpu, or h_vmem limit' },
      '4719': { state: 'done', exitCode: 4, host: 'node11.cluster' },
      '4799': { state: 'lost', reason: 'Grid Engine no longer knows the job and its wrapper never started' },
      '4798': { state: 'lost', reason: 'Grid Engine no longer knows the job and its wrapper started on node02.cluster at 2024-03-01T10:00:05Z but recorded no exit' },
    });
    expect(runner.argvOf('qstat')).toEqual([QSTAT]);
    expect(runner.argvOf('qacct')).toEqual(['4711', '4717', '4716', '4718', '4799', '4798'].map((id) => ['qacct', '-j', id]));
  });

  it('past the deadline makes only the qstat call: jobs that needed qacct are not looked at', async () => {
    const runner = recordingRunner({ qstat: { stdout: sge('qstat-mixed.stdout') } });
    const refs = [await ref('4711'), await ref('4713'), await ref('4790'), await ref('4791', { host: 'node11.cluster', exit: 4 }), await ref('4792', { host: 'node02.cluster' })];
    const states = await createSgeGrid({}, runner.run).poll(refs, { deadline: Date.now() - 1 });
    expect(Object.fromEntries(states)).toEqual({
      '4711': { state: 'running', host: 'node07.cluster' },
      '4713': { state: 'queued' },
      '4790': NOT_LOOKED_AT,
      // Judged by the wrapper, which needs no scheduler call.
      '4791': { state: 'done', exitCode: 4, host: 'node11.cluster' },
      '4792': NOT_LOOKED_AT,
    });
    expect(runner.calls.map((call) => call.argv)).toEqual([QSTAT]);
  });

  it('stops asking qacct once the deadline passes during the pass', async () => {
    const options: PollOptions = { deadline: Date.now() + 600_000 };
    const runner = recordingRunner({
      qstat: { stdout: sge('qstat-empty.stdout') },
      qacct: () => {
        // This scan of the accounting file took the rest of the pass's budget.
        options.deadline = Date.now() - 1;
        return { stdout: sge('qacct-completed.stdout') };
      },
    });
    const states = await createSgeGrid({}, runner.run).poll([await ref('4711'), await ref('4717'), await ref('4716')], options);
    expect(runner.argvOf('qacct')).toEqual([['qacct', '-j', '4711']]);
    expect(Object.fromEntries(states)).toEqual({ '4711': { state: 'done', exitCode: 0, host: 'node07.cluster' }, '4717': NOT_LOOKED_AT, '4716': NOT_LOOKED_AT });
  });

  it('reads the fields of a qacct record', () => {
    expect(parseQacct(sge('qacct-completed.stdout'))).toEqual({ hostname: 'node07.cluster', exitStatus: 0, failed: '0' });
    expect(parseQacct(sge('qacct-rerun-limit.stdout'))).toEqual({
      hostname: 'node05.cluster', exitStatus: 137, failed: '37  : qmaster enforced h_rt, h_cpu, or h_vmem limit',
    });
    expect(parseQacct('')).toBeUndefined();
  });

  it('accepts an empty qstat answer', async () => {
    const grid = createSgeGrid({}, recordingRunner({ qstat: { stdout: '' }, qacct: { stderr: sge('qacct-unknown.stderr'), code: 1 } }).run);
    const states = await grid.poll([await ref('4799')]);
    expect(states.get('4799')).toMatchObject({ state: 'lost' });
  });

  it('treats an unreachable qmaster as GridUnavailableError', async () => {
    const grid = createSgeGrid({}, recordingRunner({ qstat: { stderr: sge('qstat-down.stderr'), code: 1 } }).run);
    const error = await grid.poll([await ref('4711')]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toBe('qstat failed: error: commlib error: got select error (Connection refused)');
  });

  it('refuses a qstat answer that is not its XML', async () => {
    const grid = createSgeGrid({}, recordingRunner({ qstat: { stdout: 'job-ID  prior   name       user\n' } }).run);
    await expect(grid.poll([await ref('4711')])).rejects.toThrow(GridUnavailableError);
  });

  it('asks nothing for an empty poll', async () => {
    const runner = recordingRunner({});
    await expect(createSgeGrid({}, runner.run).poll([])).resolves.toEqual(new Map());
    expect(runner.calls).toEqual([]);
  });
});

describe('SGE cancellation', () => {
  it('deletes many jobs with one qdel', async () => {
    const runner = recordingRunner({ qdel: { stdout: sge('qdel-ok.stdout') } });
    await createSgeGrid({}, runner.run).cancel(['4711', '4713']);
    expect(runner.calls.map((call) => call.argv)).toEqual([['qdel', '4711', '4713']]);
  });

  it('does not mind jobs that are already gone', async () => {
    const runner = recordingRunner({ qdel: { stdout: sge('qdel-partly-unknown.stdout'), stderr: sge('qdel-partly-unknown.stderr'), code: 1 } });
    await expect(createSgeGrid({}, runner.run).cancel(['4711', '4799'])).resolves.toBeUndefined();
  });

  it('reports a refused deletion', async () => {
    const runner = recordingRunner({ qdel: { stderr: sge('qdel-denied.stderr'), code: 1 } });
    await expect(createSgeGrid({}, runner.run).cancel(['4714'])).rejects.toThrow(GridUnavailableError);
  });

  it('runs nothing for no ids', async () => {
    const runner = recordingRunner({});
    await createSgeGrid({}, runner.run).cancel([]);
    expect(runner.calls).toEqual([]);
  });
});

describe('SGE options from the config file', () => {
  it('reads every option', () => {
    expect(sgeOptionsFrom({ queue: 'long.q', project: 'alcap', time: 7200, memory: '4G', extraArgs: ['-pe', 'smp', '2'], sshHost: 'submit01', commandTimeoutSeconds: 45 })).toEqual({
      queue: 'long.q', project: 'alcap', time: '7200', memory: '4G', extraArgs: ['-pe', 'smp', '2'], sshHost: 'submit01', commandTimeoutSeconds: 45,
    });
  });

  it('refuses options of other backends', () => {
    expect(() => sgeOptionsFrom({ partition: 'prod' })).toThrow(/^job\.options\.partition: unknown option/);
  });

  it('refuses -V and -v, which copy the environment or put values on the command line', () => {
    expect(() => sgeOptionsFrom({ extraArgs: ['-pe', 'smp', '2', '-V'] })).toThrow(/extraArgs: "-V" is not allowed: .*job\.environment/);
    expect(() => sgeOptionsFrom({ extraArgs: ['-v', 'A=1'] })).toThrow(/extraArgs: "-v" is not allowed/);
  });
});
