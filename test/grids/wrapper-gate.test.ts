import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readWrapperStatus, releaseJob, releasePathFor, revokeJob, wrapperCommand, type JobRelease } from '../../src/grids/wrapper.js';

/**
 * The job wrapper's gate, with the real bin/rp-job-wrapper in real processes: a
 * job runs its script only once released with its own token, a job nobody
 * releases leaves without touching the attempt's files, and a job whose release
 * is revoked stops (before its script starts, or while it runs).
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

function gated(
  token: string,
  options: { waitSeconds?: number; submitterPid?: number; label?: string; script?: string; env?: NodeJS.ProcessEnv; ownGroup?: boolean } = {},
) {
  const release: JobRelease = { path: releasePathFor(statusPath()), token, waitSeconds: options.waitSeconds ?? 60 };
  const job = { statusPath: statusPath(), stdoutPath: join(dir, 'out.log'), stderrPath: join(dir, 'err.log'), script: options.script ?? join(dir, 'job.sh'), release };
  const [command, ...args] = wrapperCommand(job, { submitterPid: options.submitterPid });
  // ownGroup: in a process group of its own, as the local grid starts jobs (and a scheduler's batch script execs them).
  const child = spawn(command!, args, {
    env: { ...process.env, TOKEN_SEEN: options.label ?? token, ...options.env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: options.ownGroup ?? false,
  });
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

  it('a release that was revoked stays revoked: releasing the job afterwards does not start it', async () => {
    const job = gated('t5');
    await revokeJob(job.release);
    expect(await releaseJob(job.release)).toBe(false); // a slow session releasing after a reaper revoked
    expect(await readFile(job.release.path, 'utf8')).toBe('revoked');
    const exit = await job.exit;
    expect(exit.code).toBe(75);
    expect(exit.stderr).toMatch(/not released, script not run: its release .* was revoked/);
    expect(await marks()).toEqual([]);
    expect(existsSync(statusPath())).toBe(false);
    // Releasing twice with the same token is harmless, as before (the next submission removes the old release first, as prepareJob does).
    await rm(job.release.path);
    const again = gated('t6');
    expect(await releaseJob(again.release)).toBe(true);
    expect(await releaseJob(again.release)).toBe(true);
    expect((await again.exit).code).toBe(0);
  });
});

describe('a revoked release', () => {
  /** A script that starts a long child of its own and waits for it: a revoked job must leave nothing of it running. */
  async function longScript(options: { ignoreTerm?: boolean } = {}): Promise<string> {
    const path = join(dir, 'long.sh');
    await writeFile(
      path,
      `#!/bin/bash
${options.ignoreTerm ? "trap '' TERM" : ''}
echo started >> ${JSON.stringify(join(dir, 'ran'))}
sleep 60 &
echo $! > ${JSON.stringify(join(dir, 'grandchild.pid'))}
wait
echo finished >> ${JSON.stringify(join(dir, 'ran'))}
`,
    );
    await chmod(path, 0o755);
    return path;
  }
  /** Running (a zombie has exited: it only waits for whoever inherited it to reap it). */
  const alive = (pid: number) => {
    try {
      return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  async function startedJob(options: { ignoreTerm?: boolean } = {}) {
    const job = gated('tok-run', { script: await longScript(options), ownGroup: true });
    await releaseJob(job.release);
    const deadline = Date.now() + 10_000;
    while (!existsSync(join(dir, 'grandchild.pid')) && Date.now() < deadline) await sleep(50);
    const grandchild = Number((await readFile(join(dir, 'grandchild.pid'), 'utf8')).trim());
    expect(alive(grandchild)).toBe(true);
    expect(await readWrapperStatus(statusPath())).toMatchObject({ pid: job.child.pid });
    return { job, grandchild };
  }

  it('ends a running job, and what its script started, within about a second, and records the exit as revoked', async () => {
    const { job, grandchild } = await startedJob();
    const revokedAt = Date.now();
    await revokeJob(job.release);
    const exit = await job.exit;
    expect(Date.now() - revokedAt).toBeLessThan(3_000);
    expect(exit.stderr).toMatch(/release revoked .*terminating the job/);
    expect(exit.code).toBe(143);
    const status = await readWrapperStatus(statusPath());
    expect(status).toMatchObject({ pid: job.child.pid, exit: 143, revoked: true });
    expect(await marks()).toEqual(['started']);
    expect(alive(grandchild)).toBe(false);
  });

  it('kills a job that ignores TERM after the grace a cancel gives', async () => {
    const { job, grandchild } = await startedJob({ ignoreTerm: true });
    const revokedAt = Date.now();
    await revokeJob(job.release);
    const exit = await job.exit;
    const took = Date.now() - revokedAt;
    expect(took).toBeGreaterThan(4_500);
    expect(took).toBeLessThan(9_000);
    expect(await readWrapperStatus(statusPath())).toMatchObject({ exit: 137, revoked: true });
    expect(exit.code).toBe(137);
    expect(await marks()).toEqual(['started']);
    expect(alive(grandchild)).toBe(false);
  });

  it('a job whose release was removed for a new submission stops, and leaves that submission\'s status file alone', async () => {
    const { job } = await startedJob();
    // What prepareJob of the next submission of the same attempt does, and that submission's start record.
    await rm(job.release.path);
    const theirs = '{"host":"elsewhere","pid":4242,"started":"2026-01-01T00:00:00Z"}\n';
    await writeFile(statusPath(), theirs);
    expect((await job.exit).code).toBe(143);
    expect(await readFile(statusPath(), 'utf8')).toBe(theirs);
  });

  it('a job revoked between passing its gate and starting its script does not run it, and leaves no start record', async () => {
    // `hostname` is the wrapper's first command past the gate: this one says when it is there and dawdles.
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'hostname'), `#!/bin/bash
touch ${JSON.stringify(join(dir, 'past-gate'))}
sleep 1
echo gatehost
`);
    await chmod(join(bin, 'hostname'), 0o755);
    const job = gated('tok-late', { env: { PATH: `${bin}:${process.env.PATH}` } });
    await releaseJob(job.release);
    const deadline = Date.now() + 10_000;
    while (!existsSync(join(dir, 'past-gate')) && Date.now() < deadline) await sleep(20);
    await revokeJob(job.release);
    const exit = await job.exit;
    expect(exit.code).toBe(75);
    expect(exit.stderr).toMatch(/not released, script not run: its release .* was revoked before the script started/);
    expect(await marks()).toEqual([]);
    expect(existsSync(statusPath())).toBe(false);
  });
});
