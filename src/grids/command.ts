import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { GridUnavailableError } from './grid.js';

/**
 * Runs one scheduler command (sbatch, qstat, condor_q, ...) either here or on a
 * submit host over ssh. Every backend goes through this single door so that
 * "the scheduler cannot be reached" is detected the same way everywhere and so
 * that tests can replace it with a runner answering from recorded outputs.
 */

export interface CommandOptions {
  /** Run the command on this host through `ssh` (user@host or an ssh_config alias). */
  sshHost?: string;
  /**
   * Give up after this long: the command's whole process group is killed and
   * the call rejects at once with GridUnavailableError, whatever the command's
   * children still hold open. Default 30 s.
   */
  timeoutMs?: number;
  /** Written to the command's standard input, which is closed afterwards. */
  input?: string;
  /** Environment of the local process (for ssh: of the ssh client, not the remote command). */
  env?: NodeJS.ProcessEnv;
  /**
   * What messages and the in-flight list call it instead of `<argv[0]> locally`: for a site's own
   * shell command (`quota command`), whose argv[0] is only `/bin/sh`.
   */
  label?: string;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** Exit status; 128+N when the command died from signal N. */
  code: number;
}

/** ssh reserves exit status 255 for its own failures (host unreachable, auth refused, ...). */
const SSH_FAILURE = 255;
const DEFAULT_TIMEOUT_MS = 30_000;

/** Quotes one word for a POSIX shell: the remote side of ssh always goes through the user's login shell. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_\/.,:=@%+-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The argv actually spawned: the command itself, or ssh carrying it to the submit host. */
export function commandLine(argv: readonly string[], sshHost?: string): string[] {
  if (sshHost === undefined) return [...argv];
  // A "host" starting with - would be read by ssh as an option (e.g. -oProxyCommand=...).
  if (sshHost.startsWith('-') || sshHost.trim() === '') throw new Error(`invalid ssh host ${JSON.stringify(sshHost)}`);
  // BatchMode: never prompt for a password in an unattended loop; fail instead.
  return ['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', sshHost, '--', argv.map(shellQuote).join(' ')];
}

export async function runCommand(argv: string[], opts: CommandOptions = {}): Promise<CommandResult> {
  if (argv.length === 0) throw new Error('runCommand: empty command');
  const [file, ...args] = commandLine(argv, opts.sshHost);
  // Only the command name and host go into messages: arguments may carry paths
  // worth showing, but environment values (tokens, passwords) never do.
  const where = opts.sshHost === undefined ? 'locally' : `on ${opts.sshHost} (via ssh)`;
  const result = await runChild({
    file: file!,
    args,
    env: opts.env ?? process.env,
    input: opts.input ?? '',
    label: opts.label ?? `${argv[0]} ${where}`,
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });

  if (opts.sshHost !== undefined && result.code === SSH_FAILURE) {
    throw new GridUnavailableError(`ssh to ${opts.sshHost} failed while running ${argv[0]}: ${lastLine(result.stderr) || 'exit 255'}`);
  }
  return result;
}

/** A scheduler command still running, as a banner may show it: a label, never arguments or environment values. */
export interface InFlightCommand {
  /** `squeue locally`, `sbatch on shifter@submit01 (via ssh)`. */
  readonly label: string;
  /** Epoch ms. */
  readonly startedAt: number;
}

interface RunningCommand extends InFlightCommand {
  /** Kills the command's process group and rejects its promise at once. */
  abort(): void;
}

/** Commands spawned and not yet exited (or failed to start). */
const inFlight = new Set<RunningCommand>();

let exitHookInstalled = false;
/**
 * In their own process groups, commands no longer die with a Ctrl-C on the
 * terminal; so that none outlives this process (a hung ssh would), the groups
 * still running when it exits are killed.
 */
function killInFlightOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', abortInFlightCommands);
}

/** The scheduler commands running right now, oldest first: lets the loop name a command that hangs. */
export function inFlightCommands(): readonly InFlightCommand[] {
  return [...inFlight].map(({ label, startedAt }) => ({ label, startedAt }));
}

/**
 * Kills every scheduler command running now (each one's whole process group)
 * and makes each reject at once with GridUnavailableError "<label> was
 * interrupted". For Ctrl-C: the rollback must not wait for a poll that hangs.
 * Commands started after this call run normally.
 */
export function abortInFlightCommands(): void {
  for (const command of [...inFlight]) command.abort();
}

/**
 * After the command exits, how long its pipes may still deliver output. Output
 * normally ends with the exit; a grandchild that inherited the pipes (a
 * background process, an ssh ProxyCommand or ControlPersist master) may hold
 * them open indefinitely and must not delay the answer.
 */
const EXIT_GRACE_MS = 200;

interface ChildPlan {
  file: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  input: string;
  /** For messages and the in-flight list. */
  label: string;
  timeoutMs: number;
}

/**
 * Spawns one command and settles on the first of: its pipes closing after it
 * exited, its exit plus EXIT_GRACE_MS, the timeout, an abort, a spawn error.
 * Never waits for anything but the command itself.
 */
function runChild(plan: ChildPlan): Promise<CommandResult> {
  return new Promise<CommandResult>((resolve, reject) => {
    // Its own process group (detached = setsid): a timeout or abort kills the
    // command with everything it started, and a Ctrl-C on the shifter's
    // terminal reaches only us, who then decide (abortInFlightCommands).
    const child = spawn(plan.file, plan.args, { env: plan.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const output = collectOutput(child);
    let settled = false;
    let graceTimer: NodeJS.Timeout | undefined;

    const finish = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timeoutTimer);
      clearTimeout(graceTimer);
      inFlight.delete(running);
      // Only our ends of the pipes: a grandchild still holding the other ends
      // must not keep handles (or the event loop) of this process alive.
      destroyStdio(child);
      outcome();
    };
    const stop = (message: string): void => {
      killGroup(child);
      finish(() => reject(new GridUnavailableError(message)));
    };
    const answer = (code: number | null, signal: NodeJS.Signals | null): void => {
      finish(() => resolve({ ...output.text(), code: exitStatus(code, signal) }));
    };

    const running: RunningCommand = { label: plan.label, startedAt: Date.now(), abort: () => stop(`${plan.label} was interrupted`) };
    inFlight.add(running);
    killInFlightOnExit();
    const timeoutTimer = setTimeout(() => stop(`${plan.label} did not answer within ${Math.round(plan.timeoutMs / 1000)} s`), plan.timeoutMs);

    child.on('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'ENOENT' ? 'command not found' : error.code ?? error.message;
      finish(() => reject(new GridUnavailableError(`cannot run ${plan.label}: ${why}`)));
    });
    child.on('exit', (code, signal) => {
      if (settled) return; // killed on timeout or abort: already rejected
      // It answered: no longer hanging, no longer subject to the timeout or an
      // abort (its pid may be reused from now on, so its group is not killed).
      inFlight.delete(running);
      clearTimeout(timeoutTimer);
      graceTimer = setTimeout(() => answer(code, signal), EXIT_GRACE_MS);
    });
    // The usual end: exited and all output read.
    child.on('close', answer);
    // A command that does not read its input must not make us crash with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(plan.input);
  });
}

/** Gathers a child's stdout and stderr; text() decodes what arrived so far. */
function collectOutput(child: ChildProcessWithoutNullStreams): { text(): { stdout: string; stderr: string } } {
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  return { text: () => ({ stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') }) };
}

function destroyStdio(child: ChildProcessWithoutNullStreams): void {
  child.stdin.destroy();
  child.stdout.destroy();
  child.stderr.destroy();
}

/** SIGKILL to the command's whole process group: the command, its children and theirs. */
function killGroup(child: ChildProcessWithoutNullStreams): void {
  if (child.pid === undefined) return; // never started
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // ESRCH: the group is gone already; nothing is left to kill.
  }
}

/** Exit status as a shell reports it: 128+N when signal N ended the command. */
function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal === null ? 0 : osConstants.signals[signal] ?? 0);
}

/** Backends take the runner as a dependency so tests can answer from recorded scheduler outputs. */
export type CommandRunner = typeof runCommand;

/** The first non-empty line of a command's output: schedulers put the useful part of an error there. */
export function firstLine(text: string): string {
  return text.split('\n').map((line) => line.trim()).find((line) => line.length > 0) ?? '';
}

/** ssh prints warnings first and its own error last. */
function lastLine(text: string): string {
  return text.split('\n').map((line) => line.trim()).filter((line) => line.length > 0).pop() ?? '';
}

/** `string or number`: values like memory (`4G` or `4096`) or time (`02:00:00` or `7200`), passed on as text. */
export type OptionKind = 'string' | 'string or number' | 'positive number' | 'string list';

type OptionValue<K extends OptionKind> = K extends 'string' | 'string or number' ? string : K extends 'positive number' ? number : string[];

export type OptionsOf<S extends Record<string, OptionKind>> = { [K in keyof S]?: OptionValue<S[K]> };

/** The `job.options` every scheduler backend takes for running its commands (see CommandOptions). */
export const COMMAND_OPTION_KINDS = {
  /** Run the scheduler's commands on this submit host over ssh. */
  sshHost: 'string',
  /** Per scheduler command; default 30. */
  commandTimeoutSeconds: 'positive number',
} as const;

/**
 * A backend's options: what its table of kinds declares (each key documented there), and the
 * production's `job.environment`, which createGrid adds (it is not a `job.options` key).
 */
export type BackendOptions<S extends Record<string, OptionKind>> = OptionsOf<S> & { environment?: readonly string[] };

/**
 * Scheduler backend options arrive from the config file as `job.options`
 * (untyped JSON). Each backend declares the kind of every option it takes and
 * reads them through this, so a typo or a wrong type fails at load time with
 * the option's name instead of as an odd sbatch/qsub error later.
 */
export function readOptions<S extends Record<string, OptionKind>>(raw: Record<string, unknown>, shape: S, where: string): OptionsOf<S> {
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const kind = Object.hasOwn(shape, key) ? shape[key] : undefined;
    if (kind === undefined) throw new Error(`${where}.${key}: unknown option; known: ${Object.keys(shape).join(', ')}`);
    if (value === undefined || value === null) continue;
    const isText = typeof value === 'string' && value !== '';
    const isNumber = typeof value === 'number' && Number.isFinite(value) && value > 0;
    const ok =
      kind === 'string' ? isText
      : kind === 'string or number' ? isText || isNumber
      : kind === 'positive number' ? isNumber
      : Array.isArray(value) && value.every((item) => typeof item === 'string');
    if (!ok) throw new Error(`${where}.${key}: expected ${kind === 'string' ? 'a non-empty string' : kind === 'string list' ? 'a list of strings' : `a ${kind}`}, got ${JSON.stringify(value)}`);
    result[key] = kind === 'string list' ? [...(value as string[])] : kind === 'string or number' ? String(value) : value;
  }
  return result as OptionsOf<S>;
}
