import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readWrapperStatus, releaseJob, releasePathFor, wrapperCommand, type JobRelease } from '../../src/grids/wrapper.js';

/**
 * The job wrapper's gate, with the real bin/rp-job-wrapper in real processes: a
 * job runs its script only once released with its own token, and a job nobody
 * releases leaves without touching the attempt's files.
 */

let dir: string;
let children: ChildProcess[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rp-gate-'));
  // The script leaves a mark each time it runs: a job that ran twice shows two lines.
  await writeFile(join(dir, 'job.sh'), `#!/bin/bash\necho "ran $TOKEN_SEEN" >> ${JSON.stringify(join(dir, 'ran'))}\n`);
  await chmod(join(dir, 'job.sh'), 0o755);
});
afterEach(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children = [];
  await rm(dir, { recursive: true, force: true });
});

const statusPath = () => join(dir, 'attempt1.status.json');

function gated(token: string, options: { waitSeconds?: number; submitterPid?: number; label?: string } = {}) {
  const release: JobRelease = { path: releasePathFor(statusPath()), token, waitSeconds: options.waitSeconds ?? 60 };
  const job = { statusPath: statusPath(), stdoutPath: join(dir, 'out.log'), stderrPath: join(dir, 'err.log'), script: join(dir, 'job.sh'), release };
  const [command, ...args] = wrapperCommand(job, { submitterPid: options.submitterPid });
  const child = spawn(command!, args, { env: { ...process.env, TOKEN_SEEN: options.label ?? token }, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<{ code: number | null; stderr: string }>((resolve) => child.once('exit', (code) => resolve({ code, stderr })));
  return { release, child, exit };
}

const marks = async () => (existsSync(join(dir, 'ran')) ? (await readFile(join(dir, 'ran'), 'utf8')).trim().split('\n') : []);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the job gate', () => {
  it('runs the script only after the release with its own token, then records the exit as usual', async () => {
    const job = gated('a'.repeat(32));
    await sleep(700);
    expect(job.child.exitCode).toBeNull(); // still waiting
    expect(await marks()).toEqual([]);
    expect(await readWrapperStatus(statusPath())).toBeUndefined(); // not even a start record
    await releaseJob(job.release);
    expect((await job.exit).code).toBe(0);
    expect(await marks()).toEqual([`ran ${'a'.repeat(32)}`]);
    expect((await readWrapperStatus(statusPath()))?.exit).toBe(0);
  });

  it('an unrecorded job of an earlier submission leaves when another submission is released, and only the new one runs', async () => {
    const orphan = gated('old-token', { label: 'orphan' });
    await sleep(300);
    const current = gated('new-token', { label: 'current' });
    await releaseJob(current.release);
    const [orphanExit, currentExit] = await Promise.all([orphan.exit, current.exit]);
    expect(orphanExit.code).toBe(75);
    expect(orphanExit.stderr).toMatch(/not released, script not run: .* releases another submission/);
    expect(currentExit.code).toBe(0);
    expect(await marks()).toEqual(['ran current']);
    expect((await readWrapperStatus(statusPath()))?.exit).toBe(0);
  });

  it('leaves at once when its submitter is gone (the local grid passes the session pid)', async () => {
    const submitter = spawn('sleep', ['30']);
    children.push(submitter);
    await new Promise((r) => submitter.once('spawn', r));
    const job = gated('t1', { submitterPid: submitter.pid });
    await sleep(300);
    expect(job.child.exitCode).toBeNull();
    submitter.kill('SIGKILL');
    const exit = await job.exit;
    expect(exit.code).toBe(75);
    expect(exit.stderr).toMatch(/submitting process \d+ is gone/);
    expect(await marks()).toEqual([]);
    expect(existsSync(statusPath())).toBe(false);
  });

  it('still runs when released just before its submitter exits', async () => {
    const submitter = spawn('sleep', ['30']);
    children.push(submitter);
    await new Promise((r) => submitter.once('spawn', r));
    const job = gated('t2', { submitterPid: submitter.pid });
    await releaseJob(job.release);
    submitter.kill('SIGKILL');
    expect((await job.exit).code).toBe(0);
    expect(await marks()).toEqual(['ran t2']);
  });

  it('gives up after its wait without running or writing a status file', async () => {
    const job = gated('t3', { waitSeconds: 1 });
    const exit = await job.exit;
    expect(exit.code).toBe(75);
    expect(exit.stderr).toMatch(/no release within 1s/);
    expect(await marks()).toEqual([]);
    expect(existsSync(statusPath())).toBe(false);
  });

  it('a cancel while waiting ends it without a status file', async () => {
    const job = gated('t4');
    await sleep(300);
    job.child.kill('SIGTERM');
    expect((await job.exit).code).toBe(143);
    expect(await marks()).toEqual([]);
    expect(existsSync(statusPath())).toBe(false);
  });

  it('an ungated job (no release) runs at once, as before', async () => {
    const job = { statusPath: statusPath(), stdoutPath: join(dir, 'out.log'), stderrPath: join(dir, 'err.log'), script: join(dir, 'job.sh') };
    expect(wrapperCommand(job)).toHaveLength(5);
    const [command, ...args] = wrapperCommand(job);
    const child = spawn(command!, args, { env: { ...process.env, TOKEN_SEEN: 'ungated' }, stdio: 'ignore' });
    children.push(child);
    expect(await new Promise((r) => child.once('exit', r))).toBe(0);
    expect(await marks()).toEqual(['ran ungated']);
  });
});
