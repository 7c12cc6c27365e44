/**
 * The Slurm backend against recorded Slurm outputs (test/fixtures/grids/slurm,
 * mostly captured from a real Slurm 22.05), plus the pieces every backend
 * shares: the command runner and the batch script. The end-to-end behaviour
 * against a running Slurm is in slurm.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderBatchScript } from '../../src/grids/batch-script.js';
import { commandLine, runCommand } from '../../src/grids/command.js';
import { GridUnavailableError, NOT_LOOKED_AT, type JobRef, type JobSpec, type PollOptions } from '../../src/grids/grid.js';
import { createSlurmGrid, slurmOptionsFrom } from '../../src/grids/slurm.js';
import { WRAPPER_PATH } from '../../src/grids/wrapper.js';
import { fixture, recordingRunner } from '../fixtures/grids/fixture-runner.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rp-slurm-parsing-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function spec(name: string, env: Record<string, string> = {}): JobSpec {
  const workDir = join(dir, name);
  return {
    name,
    script: '/prod/alcapana/v3/job.sh',
    env,
    workDir,
    stdoutPath: join(workDir, 'job.out'),
    stderrPath: join(workDir, 'job.err'),
    statusPath: join(workDir, 'status.json'),
  };
}

/** A job ref whose wrapper status file exists (exit given) or not (exit undefined, no file). */
async function ref(jobId: string, wrapper?: { host: string; exit?: number }): Promise<JobRef> {
  const statusPath = join(dir, 'status', `${jobId}.json`);
  if (wrapper !== undefined) {
    await mkdir(join(dir, 'status'), { recursive: true });
    await writeFile(statusPath, JSON.stringify({ host: wrapper.host, pid: 4321, started: '2024-03-01T10:00:05Z', ...(wrapper.exit === undefined ? {} : { exit: wrapper.exit, finished: '2024-03-01T10:15:05Z' }) }));
  }
  return { jobId, statusPath };
}

const slurm = (name: string) => fixture('slurm', name);

describe('runCommand', () => {
  it('returns output and exit code and feeds standard input', async () => {
    const result = await runCommand(['sh', '-c', 'cat; echo err >&2; exit 7'], { input: 'hello\n' });
    expect(result).toEqual({ stdout: 'hello\n', stderr: 'err\n', code: 7 });
  });

  it('passes the given environment', async () => {
    const result = await runCommand(['sh', '-c', 'printf %s "$SLURM_CONF"'], { env: { PATH: process.env.PATH, SLURM_CONF: '/x/slurm.conf' } });
    expect(result.stdout).toBe('/x/slurm.conf');
  });

  it('turns a missing command into GridUnavailableError naming it', async () => {
    const error = await runCommand(['rp-no-such-sbatch', '--parsable']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toBe('cannot run rp-no-such-sbatch locally: command not found');
  });

  it('kills a command that does not answer in time', async () => {
    const started = Date.now();
    const error = await runCommand(['sleep', '30'], { timeoutMs: 300, env: { PATH: process.env.PATH, SECRET: 'hunter2' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toMatch(/^sleep locally did not answer within/);
    expect((error as Error).message).not.toContain('hunter2');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('carries the command to a submit host through ssh, quoted for the remote shell', () => {
    expect(commandLine(['squeue', '--format=%i|%T|%N', "it's"], 'shifter@submit.example.org')).toEqual([
      'ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', 'shifter@submit.example.org', '--',
      `squeue '--format=%i|%T|%N' 'it'\\''s'`,
    ]);
    // The quoted line survives a real shell unchanged.
    const line = commandLine(['printf', '%s\\n', "a b", "it's", '$HOME', '*'], 'h').at(-1)!;
    expect(spawnSync('sh', ['-c', line], { encoding: 'utf8' }).stdout).toBe("a b\nit's\n$HOME\n*\n");
  });

  it('refuses an ssh host that ssh would read as an option', async () => {
    await expect(runCommand(['squeue'], { sshHost: '-oProxyCommand=touch /tmp/x' })).rejects.toThrow('invalid ssh host');
  });

  it.skipIf(spawnSync('ssh', ['-V']).error !== undefined)('reports an unreachable submit host (ssh exit 255) as GridUnavailableError', async () => {
    const error = await runCommand(['squeue'], { sshHost: 'rp-test-host.invalid', timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toMatch(/^ssh to rp-test-host\.invalid failed while running squeue: /);
  });
});

describe('batch script', () => {
  it('exports the environment safely quoted, enters the work dir and execs the wrapper', () => {
    const job = spec('rp-alcapana-v3-r2091', { RUN: '2091', DATASET: "it's $HOME `x`", INPUT: '/data/run 2091.mid' });
    expect(renderBatchScript(job, ['#$ -S /bin/bash'], { source: {} })).toBe(
      [
        '#!/bin/bash',
        '#$ -S /bin/bash',
        '# Generated by run-production for job rp-alcapana-v3-r2091.',
        '# Environment: the base set, the job.environment allow-list and the job variables; no secret of the coordinator.',
        'for rp_name in $(compgen -e); do case $rp_name in DATABASE_URL|PG*|RUN_PRODUCTION_*|SSH_AUTH_SOCK) unset "$rp_name" ;; esac; done; unset rp_name',
        "export RUN='2091'",
        `export DATASET='it'\\''s $HOME \`x\`'`,
        "export INPUT='/data/run 2091.mid'",
        `cd '${job.workDir}' || exit 1`,
        `exec '${WRAPPER_PATH}' '${job.statusPath}' '${job.stdoutPath}' '${job.stderrPath}' '/prod/alcapana/v3/job.sh'`,
        '',
      ].join('\n'),
    );
  });

  it('passes a gated job\'s release file, token and wait to the wrapper, without the submitter pid (the job runs on another host)', () => {
    const job = { ...spec('rp-alcapana-v3-r2092', {}), release: { path: '/jobs/r2092/attempt1.status.json.release', token: 'ab12', waitSeconds: 1800 } };
    expect(renderBatchScript(job).split('\n').at(-2)).toBe(
      `exec '${WRAPPER_PATH}' '${job.statusPath}' '${job.stdoutPath}' '${job.stderrPath}' '/prod/alcapana/v3/job.sh' '/jobs/r2092/attempt1.status.json.release' 'ab12' '1800'`,
    );
  });

  it('sets exactly the given values when bash runs it', async () => {
    const job = spec('rp-env-check', { DATASET: "it's $HOME `x` \\ \"q\"\nnext line" });
    const text = renderBatchScript(job).replace(/^exec .*$/m, 'printf %s "$DATASET"');
    await mkdir(job.workDir, { recursive: true });
    expect(spawnSync('bash', ['-c', text], { encoding: 'utf8' }).stdout).toBe(job.env.DATASET);
  });

  it('passes the base set and the allow-list from the coordinator, never a secret, the submit host\'s TMPDIR only when the node has none', async () => {
    const source = {
      PATH: '/usr/bin:/bin', HOME: '/home/shifter', LC_ALL: 'C', TMPDIR: '/tmp/login', ROOTSYS: '/opt/root', UNLISTED: 'x',
      DATABASE_URL: 'postgres://u:pw@db/p', PGPASSWORD: 'pw', RUN_PRODUCTION_SFTP_PASSWORD: 'pw', SSH_AUTH_SOCK: '/tmp/agent.1',
    };
    const job = spec('rp-env-allow', { RUN: '7' });
    const text = renderBatchScript(job, [], { allow: ['ROOTSYS', 'PGPASSWORD'], source });
    expect(text).toContain("export PATH='/usr/bin:/bin'\n");
    expect(text).toContain("export LC_ALL='C'\n");
    expect(text).toContain("export ROOTSYS='/opt/root'\n");
    expect(text).toContain(`[ -n "\${TMPDIR:-}" ] || export TMPDIR='/tmp/login'\n`);
    expect(text).not.toMatch(/UNLISTED|pw|agent/);
    // Run by bash with the secrets already in its environment (a scheduler that copied them): gone.
    await mkdir(job.workDir, { recursive: true });
    const run = spawnSync('bash', ['-c', text.replace(/^exec .*$/m, 'env')], { encoding: 'utf8', env: { ...source, TMPDIR: '/scratch/job42' } });
    const names = run.stdout.split('\n').map((line) => line.split('=')[0]);
    expect(names).toEqual(expect.arrayContaining(['PATH', 'HOME', 'LC_ALL', 'ROOTSYS', 'RUN', 'UNLISTED']));
    for (const secret of ['DATABASE_URL', 'PGPASSWORD', 'RUN_PRODUCTION_SFTP_PASSWORD', 'SSH_AUTH_SOCK']) expect(names).not.toContain(secret);
    expect(run.stdout).toContain('TMPDIR=/scratch/job42\n');
  });

  it('refuses environment names the shell cannot export', () => {
    expect(() => renderBatchScript(spec('rp-bad-env', { 'OUTPUT-ROOT': 'x' }))).toThrow(/invalid environment variable name/);
  });
});

describe('Slurm backend, recorded outputs', () => {
  it('submits with sbatch --parsable and every configured option', async () => {
    const runner = recordingRunner({ sbatch: { stdout: slurm('sbatch-ok.stdout') } });
    const grid = createSlurmGrid(
      { partition: 'prod', account: 'alcap', time: '02:00:00', memory: '4G', extraArgs: ['--qos=long'], sshHost: 'submit01', commandTimeoutSeconds: 12 },
      runner.run,
    );
    const job = spec('rp-alcapana-v3-r2091', { RUN: '2091' });
    await expect(grid.submit(job)).resolves.toBe('4101');
    const script = join(job.workDir, 'rp-alcapana-v3-r2091.rp-batch.sh');
    expect(runner.calls).toEqual([
      {
        argv: [
          'sbatch', '--parsable', '--job-name=rp-alcapana-v3-r2091', `--chdir=${job.workDir}`,
          `--output=${job.workDir}/rp-alcapana-v3-r2091.slurm-%j.out`, `--error=${job.workDir}/rp-alcapana-v3-r2091.slurm-%j.err`,
          '--partition=prod', '--account=alcap', '--time=02:00:00', '--mem=4G', '--qos=long', script,
        ],
        opts: { timeoutMs: 12_000, sshHost: 'submit01', env: expect.any(Object) },
      },
    ]);
    // --export=NONE in the script: sbatch sends none of its environment with the job.
    expect(await readFile(script, 'utf8')).toBe(renderBatchScript(job, ['#SBATCH --export=NONE']));
    expect((await readFile(script, 'utf8')).split('\n')[1]).toBe('#SBATCH --export=NONE');
  });

  it('keeps the cluster of a multi-cluster submission in the job id', async () => {
    const runner = recordingRunner({ sbatch: { stdout: slurm('sbatch-cluster.stdout') }, squeue: { stdout: '4242|RUNNING|c2n01\n' } });
    const grid = createSlurmGrid({}, runner.run);
    await expect(grid.submit(spec('rp-cluster'))).resolves.toBe('4242;hpc2');
    const states = await grid.poll([await ref('4242;hpc2')]);
    expect(states.get('4242;hpc2')).toEqual({ state: 'running', host: 'c2n01' });
    expect(runner.argvOf('squeue')).toEqual([['squeue', '--clusters=hpc2', '--noheader', '--states=all', '--format=%i|%T|%N', '--jobs=4242']]);
  });

  it.each([
    ['sbatch-invalid-partition.stderr', 'sbatch failed: sbatch: error: invalid partition specified: nope'],
    ['sbatch-down.stderr', 'sbatch failed: sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)'],
  ])('turns a refused submission (%s) into GridUnavailableError', async (name, message) => {
    const grid = createSlurmGrid({}, recordingRunner({ sbatch: { stderr: slurm(name), code: 1 } }).run);
    const error = await grid.submit(spec('rp-refused')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toBe(message);
  });

  it('rejects sbatch output without a job id', async () => {
    const grid = createSlurmGrid({}, recordingRunner({ sbatch: { stdout: 'Submitted batch job 12\n' } }).run);
    await expect(grid.submit(spec('rp-odd'))).rejects.toThrow(GridUnavailableError);
  });

  it('polls live jobs with a single squeue call and nothing else', async () => {
    const runner = recordingRunner({ squeue: { stdout: slurm('squeue-running.stdout') } });
    const grid = createSlurmGrid({}, runner.run);
    const refs = await Promise.all(['4101', '4102', '4103', '4104'].map((id) => ref(id)));
    const states = await grid.poll(refs);
    expect(Object.fromEntries(states)).toEqual({
      '4101': { state: 'running', host: 'node01' },
      '4102': { state: 'queued' },
      '4103': { state: 'running', host: 'node07' },
      '4104': { state: 'queued' },
    });
    expect(runner.calls.map((call) => call.argv)).toEqual([['squeue', '--noheader', '--states=all', '--format=%i|%T|%N', '--jobs=4101,4102,4103,4104']]);
  });

  /** squeue-mixed.stdout: 7 and 13 ended without a wrapper exit, 8 ended with one, 11 queued, 9 running; 77-79 are gone. */
  async function mixedRefs(): Promise<JobRef[]> {
    return [
      await ref('7'),
      await ref('8', { host: 'vm.cluster', exit: 143 }),
      await ref('13'),
      await ref('11'),
      await ref('9'),
      await ref('77'),
      await ref('78', { host: 'node05', exit: 0 }),
      await ref('79', { host: 'node06' }),
    ];
  }

  it.each<[string, PollOptions | undefined]>([
    ['without a deadline', undefined],
    ['with a deadline not reached', { deadline: Date.now() + 600_000 }],
  ])('judges finished and missing jobs by scontrol and the wrapper when accounting is disabled, %s', async (_, options) => {
    const runner = recordingRunner({
      squeue: { stdout: slurm('squeue-mixed.stdout') },
      sacct: { stderr: slurm('sacct-disabled.stderr'), code: 1 },
      scontrol: (argv) => {
        const id = argv.at(-1);
        if (id === '7') return { stdout: slurm('scontrol-cancelled.stdout') };
        if (id === '13') return { stdout: slurm('scontrol-failed.stdout') };
        return { stderr: slurm('scontrol-unknown.stderr'), code: 1 };
      },
    });
    const grid = createSlurmGrid({}, runner.run);
    const states = await grid.poll(await mixedRefs(), options);
    expect(Object.fromEntries(states)).toEqual({
      // ExitCode=0:15: killed by SIGTERM.
      '7': { state: 'done', exitCode: 143, host: 'vm', reason: 'Slurm job state CANCELLED' },
      // Finished per squeue and the wrapper recorded the exit: no further question.
      '8': { state: 'done', exitCode: 143, host: 'vm.cluster', reason: 'Slurm job state CANCELLED' },
      '13': { state: 'done', exitCode: 2, host: 'vm', reason: 'Slurm job state FAILED' },
      '11': { state: 'queued' },
      '9': { state: 'running', host: 'vm' },
      '77': { state: 'lost', reason: 'Slurm no longer knows the job and its wrapper never started' },
      // Slurm forgot it, the wrapper did not.
      '78': { state: 'done', exitCode: 0, host: 'node05' },
      '79': { state: 'lost', reason: 'Slurm no longer knows the job and its wrapper started on node06 at 2024-03-01T10:00:05Z but recorded no exit' },
    });
    expect(runner.argvOf('squeue')).toEqual([['squeue', '--noheader', '--states=all', '--format=%i|%T|%N', '--jobs=7,8,13,11,9,77,78,79']]);
    expect(runner.argvOf('sacct')).toEqual([['sacct', '-n', '-P', '-X', '-j', '7,13,77,78,79', '--format=JobID,State,ExitCode,NodeList']]);
    expect(runner.argvOf('scontrol')).toEqual(['7', '13', '77', '78', '79'].map((id) => ['scontrol', 'show', 'job', id]));

    // Accounting said it is disabled: the next poll does not ask it again.
    await grid.poll([await ref('77')]);
    expect(runner.argvOf('sacct')).toHaveLength(1);
  });

  it('past the deadline makes only the squeue call: jobs that needed sacct or scontrol are not looked at', async () => {
    const runner = recordingRunner({ squeue: { stdout: slurm('squeue-mixed.stdout') } });
    const states = await createSlurmGrid({}, runner.run).poll(await mixedRefs(), { deadline: Date.now() - 1 });
    expect(Object.fromEntries(states)).toEqual({
      '7': NOT_LOOKED_AT,
      // Settled by squeue and the wrapper alone, as without a deadline.
      '8': { state: 'done', exitCode: 143, host: 'vm.cluster', reason: 'Slurm job state CANCELLED' },
      '13': NOT_LOOKED_AT,
      '11': { state: 'queued' },
      '9': { state: 'running', host: 'vm' },
      '77': NOT_LOOKED_AT,
      // The wrapper recorded an exit, but Slurm's verdict (a cancellation, a timeout) was not asked.
      '78': NOT_LOOKED_AT,
      '79': NOT_LOOKED_AT,
    });
    expect(NOT_LOOKED_AT).toEqual({ state: 'unknown', reason: 'not looked at this pass: scheduler time budget used' });
    expect(runner.calls.map((call) => call.argv[0])).toEqual(['squeue']);
  });

  it('stops asking scontrol once the deadline passes during the pass', async () => {
    const options: PollOptions = { deadline: Date.now() + 600_000 };
    const runner = recordingRunner({
      squeue: { stdout: slurm('squeue-mixed.stdout') },
      sacct: { stderr: slurm('sacct-disabled.stderr'), code: 1 },
      scontrol: () => {
        // This answer took the rest of the pass's budget.
        options.deadline = Date.now() - 1;
        return { stdout: slurm('scontrol-cancelled.stdout') };
      },
    });
    const states = await createSlurmGrid({}, runner.run).poll(await mixedRefs(), options);
    expect(runner.argvOf('scontrol')).toEqual([['scontrol', 'show', 'job', '7']]);
    expect(states.get('7')).toEqual({ state: 'done', exitCode: 143, host: 'vm', reason: 'Slurm job state CANCELLED' });
    for (const id of ['13', '77', '78', '79']) expect(states.get(id)).toEqual(NOT_LOOKED_AT);
    expect([...states.keys()].sort()).toEqual(['11', '13', '7', '77', '78', '79', '8', '9']);
  });

  it('maps every state sacct reports, preferring the wrapper exit code', async () => {
    const runner = recordingRunner({ squeue: { stdout: slurm('squeue-empty.stdout') }, sacct: { stdout: slurm('sacct-finished.stdout') } });
    const grid = createSlurmGrid({}, runner.run);
    const refs = [
      await ref('4101'),
      await ref('4102', { host: 'node02.cluster', exit: 3 }),
      await ref('4103'),
      await ref('4104', { host: 'node03.cluster', exit: 143 }),
      await ref('4105'),
      await ref('4106'),
      await ref('4107', { host: 'node05.cluster', exit: 0 }),
    ];
    const states = await grid.poll(refs);
    expect(Object.fromEntries(states)).toEqual({
      '4101': { state: 'done', exitCode: 0, host: 'node01' },
      '4102': { state: 'done', exitCode: 3, host: 'node02.cluster', reason: 'Slurm job state FAILED' },
      '4103': { state: 'done', exitCode: 143, host: 'node01', reason: 'Slurm job state CANCELLED' },
      '4104': { state: 'done', exitCode: 143, host: 'node03.cluster', reason: 'Slurm job state TIMEOUT' },
      '4105': { state: 'done', exitCode: 253, host: 'node04', reason: 'Slurm job state OUT_OF_MEMORY' },
      // Cancelled while pending: no node, no code anywhere, but a failure all the same.
      '4106': { state: 'done', exitCode: 1, reason: 'Slurm job state CANCELLED' },
      // The script ended well but the node failed: Slurm's verdict wins over the wrapper's 0.
      '4107': { state: 'done', exitCode: 1, host: 'node05.cluster', reason: 'Slurm job state NODE_FAIL' },
    });
    expect(runner.argvOf('scontrol')).toEqual([]);
  });

  it('falls back on scontrol while the accounting database is down, and asks it again later', async () => {
    const runner = recordingRunner({
      squeue: { stderr: slurm('squeue-single-unknown.stderr'), code: 1 },
      sacct: { stderr: slurm('sacct-dbd-down.stderr'), code: 1 },
      scontrol: { stdout: slurm('scontrol-failed.stdout') },
    });
    const grid = createSlurmGrid({}, runner.run);
    const states = await grid.poll([await ref('13')]);
    expect(states.get('13')).toEqual({ state: 'done', exitCode: 2, host: 'vm', reason: 'Slurm job state FAILED' });
    await grid.poll([await ref('13')]);
    expect(runner.argvOf('sacct')).toHaveLength(2);
  });

  it('reports a running job seen only by scontrol (it started after squeue answered)', async () => {
    const runner = recordingRunner({
      squeue: { stdout: slurm('squeue-empty.stdout') },
      sacct: { stderr: slurm('sacct-disabled.stderr'), code: 1 },
      scontrol: { stdout: slurm('scontrol-running.stdout') },
    });
    const states = await createSlurmGrid({}, runner.run).poll([await ref('9')]);
    expect(states.get('9')).toEqual({ state: 'running', host: 'vm' });
  });

  it('treats an unreachable controller as GridUnavailableError', async () => {
    const grid = createSlurmGrid({}, recordingRunner({ squeue: { stderr: slurm('squeue-down.stderr'), code: 1 } }).run);
    const error = await grid.poll([await ref('9')]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toBe('squeue failed: slurm_load_jobs error: Unable to contact slurm controller (connect failure)');
  });

  it('passes on an unreachable submit host', async () => {
    const grid = createSlurmGrid({ sshHost: 'submit01' }, recordingRunner(() => new GridUnavailableError('ssh to submit01 failed while running squeue: Connection refused')).run);
    await expect(grid.poll([await ref('9')])).rejects.toThrow('ssh to submit01 failed');
  });

  it('asks nothing for an empty poll', async () => {
    const runner = recordingRunner({});
    await expect(createSlurmGrid({}, runner.run).poll([])).resolves.toEqual(new Map());
    expect(runner.calls).toEqual([]);
  });

  it('cancels many jobs with one scancel; ids already gone are not an error', async () => {
    const runner = recordingRunner({ scancel: { stderr: slurm('scancel-unknown.stderr'), code: 1 } });
    const grid = createSlurmGrid({}, runner.run);
    await expect(grid.cancel(['4101', '4102', '4199'])).resolves.toBeUndefined();
    expect(runner.calls.map((call) => call.argv)).toEqual([['scancel', '4101', '4102', '4199']]);
    await grid.cancel([]);
    expect(runner.calls).toHaveLength(1);
  });

  it('reports a cancellation the controller did not take', async () => {
    const grid = createSlurmGrid({}, recordingRunner({ scancel: { stderr: slurm('scancel-down.stderr'), code: 1 } }).run);
    await expect(grid.cancel(['4101'])).rejects.toThrow(GridUnavailableError);
  });

  it('reaches every job of the cluster', () => {
    expect(createSlurmGrid({}, recordingRunner({}).run).canReach('4101')).toBe(true);
  });
});

describe('Slurm options from the config file', () => {
  it('reads every option, numbers for memory and time included', () => {
    expect(
      slurmOptionsFrom({ partition: 'prod', account: 'alcap', time: '02:00:00', memory: 4096, extraArgs: ['--qos=long'], sshHost: 'shifter@submit01', commandTimeoutSeconds: 60 }),
    ).toEqual({ partition: 'prod', account: 'alcap', time: '02:00:00', memory: '4096', extraArgs: ['--qos=long'], sshHost: 'shifter@submit01', commandTimeoutSeconds: 60 });
    expect(slurmOptionsFrom({})).toEqual({});
  });

  it('names the option that is unknown or of the wrong type', () => {
    expect(() => slurmOptionsFrom({ partiton: 'prod' }, 'types.alcapana.job.options')).toThrow(/^types\.alcapana\.job\.options\.partiton: unknown option; known: partition, /);
    expect(() => slurmOptionsFrom({ extraArgs: '--qos=long' })).toThrow('job.options.extraArgs: expected a list of strings, got "--qos=long"');
    expect(() => slurmOptionsFrom({ commandTimeoutSeconds: 0 })).toThrow('job.options.commandTimeoutSeconds: expected a positive number, got 0');
    expect(() => slurmOptionsFrom({ partition: '' })).toThrow('job.options.partition: expected a non-empty string, got ""');
  });

  it('refuses extra arguments that would export the environment (any prefix of --export sbatch takes)', () => {
    for (const arg of ['--export=ALL', '--export-file=/tmp/env', '--exp=ALL']) {
      expect(() => slurmOptionsFrom({ extraArgs: ['--qos=long', arg] })).toThrow(/extraArgs: .* is not allowed: jobs are submitted with --export=NONE.*job\.environment/);
    }
  });
});

describe('Slurm submission environment', () => {
  it('gives sbatch an environment without the coordinator\'s secrets and without SBATCH_EXPORT, keeping the agent for ssh', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, { DATABASE_URL: 'postgres://u:pw@db/p', PGPASSWORD: 'pw', RUN_PRODUCTION_SFTP_PASSWORD: 'pw', SBATCH_EXPORT: 'ALL', SSH_AUTH_SOCK: '/tmp/agent.1' });
    try {
      const runner = recordingRunner({ sbatch: { stdout: slurm('sbatch-ok.stdout') } });
      await createSlurmGrid({}, runner.run).submit(spec('rp-submit-env', { RUN: '1' }));
      const env = runner.calls[0]!.opts.env!;
      for (const name of ['DATABASE_URL', 'PGPASSWORD', 'RUN_PRODUCTION_SFTP_PASSWORD', 'SBATCH_EXPORT']) expect(env).not.toHaveProperty(name);
      expect(env.SSH_AUTH_SOCK).toBe('/tmp/agent.1');
      expect(env.PATH).toBe(process.env.PATH);
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  });
});
