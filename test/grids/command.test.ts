/**
 * The command runner's guarantees under faults, with real processes: a timeout
 * holds even when grandchildren keep the pipes open, an exited command answers
 * at once, and the commands running now can be listed and aborted.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { abortInFlightCommands, inFlightCommands, runCommand } from '../../src/grids/command.js';
import { GridUnavailableError } from '../../src/grids/grid.js';

/**
 * A sleep duration no other process on the machine uses, so the sleep a test
 * starts can be found in /proc: `sleep 20.<pid><n>` sleeps 20 s and a bit.
 */
let tokens = 0;
function sleepToken(seconds: number): string {
  tokens += 1;
  return `${seconds}.${process.pid}${tokens}`;
}

/** Pids of live (not zombie) processes whose command line is exactly `sleep TOKEN`. */
function sleepsWith(token: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'utf8') !== `sleep\0${token}\0`) continue;
      // After `comm)` come the state letter and the rest; Z is a dead process nobody reaped yet.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z') found.push(Number(name));
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) return false;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return true;
}

/** Background sleeps some tests leave on purpose (they hold the pipes); killed at the end. */
const leftovers: string[] = [];
afterAll(() => {
  for (const token of leftovers) for (const pid of sleepsWith(token)) process.kill(pid, 'SIGKILL');
});

describe('runCommand timeout', () => {
  it('kills the whole process group and rejects on time although a grandchild holds the pipes', async () => {
    const token = sleepToken(20);
    const started = Date.now();
    const outcome = runCommand(['bash', '-c', `sleep ${token}; echo`], { timeoutMs: 3000 }).catch((e: unknown) => e);
    expect(await until(() => sleepsWith(token).length === 1, 2000)).toBe(true);
    const error = await outcome;
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(GridUnavailableError);
    expect((error as Error).message).toBe('bash locally did not answer within 3 s');
    expect(elapsed).toBeGreaterThanOrEqual(2900);
    expect(elapsed).toBeLessThan(4000);
    // The grandchild went with its group (the kernel may take a moment to deliver SIGKILL).
    expect(await until(() => sleepsWith(token).length === 0, 1000)).toBe(true);
  });
});

describe('runCommand answers when the command exits', () => {
  it('resolves with the output although a background grandchild keeps the pipe open', async () => {
    const token = sleepToken(30);
    leftovers.push(token);
    const started = Date.now();
    const result = await runCommand(['bash', '-c', `sleep ${token} & echo hi`], { timeoutMs: 20_000 });
    expect(result).toEqual({ stdout: 'hi\n', stderr: '', code: 0 });
    // The exit plus a short grace for the pipes, not the 30 s of the grandchild.
    expect(Date.now() - started).toBeLessThan(1500);
    // An ended command's leftovers are not killed: they may be an ssh ControlPersist master.
    expect(sleepsWith(token)).toHaveLength(1);
  });

  it('still resolves with the exit status and output of a command that failed', async () => {
    await expect(runCommand(['bash', '-c', 'echo out; echo err >&2; exit 3'])).resolves.toEqual({ stdout: 'out\n', stderr: 'err\n', code: 3 });
    const token = sleepToken(30);
    leftovers.push(token);
    await expect(runCommand(['bash', '-c', `sleep ${token} & echo partial; exit 5`])).resolves.toEqual({ stdout: 'partial\n', stderr: '', code: 5 });
  });

  it('reports death by signal N as 128+N', async () => {
    await expect(runCommand(['bash', '-c', 'kill -TERM $$'])).resolves.toMatchObject({ code: 143 });
  });
});

describe('commands in flight', () => {
  it('lists a running command by its label only, and not after it ended', async () => {
    const before = Date.now();
    const running = runCommand(['bash', '-c', 'sleep 0.5 # rp-argument-marker'], { env: { PATH: process.env.PATH, SECRET: 'hunter2' } });
    const listed = inFlightCommands();
    expect(listed).toEqual([{ label: 'bash locally', startedAt: expect.any(Number) }]);
    expect(listed[0]!.startedAt).toBeGreaterThanOrEqual(before);
    expect(JSON.stringify(listed)).not.toMatch(/rp-argument-marker|hunter2/);
    await running;
    expect(inFlightCommands()).toEqual([]);
  });

  it('does not keep a command that could not start', async () => {
    await expect(runCommand(['rp-no-such-squeue'])).rejects.toThrow('cannot run rp-no-such-squeue locally: command not found');
    expect(inFlightCommands()).toEqual([]);
  });

  it.skipIf(spawnSync('ssh', ['-V']).error !== undefined)('names the submit host of a command carried over ssh', async () => {
    const outcome = runCommand(['squeue', '--me'], { sshHost: 'rp-test-host.invalid', timeoutMs: 20_000 }).catch((e: unknown) => e);
    expect(inFlightCommands().map((command) => command.label)).toEqual(['squeue on rp-test-host.invalid (via ssh)']);
    abortInFlightCommands();
    expect(((await outcome) as Error).message).toBe('squeue on rp-test-host.invalid (via ssh) was interrupted');
  });

  it('aborts every running command at once, its grandchildren included; later commands run normally', async () => {
    const tokens = [sleepToken(30), sleepToken(30)];
    const outcomes = tokens.map((token) => runCommand(['bash', '-c', `sleep ${token}; echo`], { timeoutMs: 60_000 }).catch((e: unknown) => e));
    expect(await until(() => tokens.every((token) => sleepsWith(token).length === 1), 2000)).toBe(true);
    const started = Date.now();
    abortInFlightCommands();
    const errors = await Promise.all(outcomes);
    expect(Date.now() - started).toBeLessThan(500);
    for (const error of errors) {
      expect(error).toBeInstanceOf(GridUnavailableError);
      expect((error as Error).message).toBe('bash locally was interrupted');
    }
    expect(inFlightCommands()).toEqual([]);
    expect(await until(() => tokens.every((token) => sleepsWith(token).length === 0), 1000)).toBe(true);
    await expect(runCommand(['bash', '-c', 'sleep 0.2; echo after'])).resolves.toEqual({ stdout: 'after\n', stderr: '', code: 0 });
  });
});

/** command.ts and grid.ts as plain ES modules, for a Node process of their own. */
function compiledRunner(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rp-command-'));
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  for (const name of ['command', 'grid']) {
    const source = readFileSync(new URL(`../../src/grids/${name}.ts`, import.meta.url), 'utf8');
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 } });
    writeFileSync(join(dir, `${name}.js`), outputText);
  }
  return dir;
}

describe('a process that exits with commands in flight', () => {
  it('takes their process groups with it (they no longer die with a Ctrl-C on the terminal)', async () => {
    const dir = compiledRunner();
    try {
      const token = sleepToken(30);
      leftovers.push(token);
      const script = `
        import { runCommand } from './command.js';
        runCommand(['bash', '-c', 'sleep ${token}; echo'], { timeoutMs: 60_000 }).catch(() => undefined);
        setTimeout(() => process.exit(0), 300);
      `;
      const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, encoding: 'utf8', timeout: 10_000 });
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(await until(() => sleepsWith(token).length === 0, 1000)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
