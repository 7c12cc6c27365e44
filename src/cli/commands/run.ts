import type { Command } from 'commander';
import { OperatorLoop, type AbortReason, type LoopOptions } from '../../session/operator-loop.js';
import { findProduction, type Production } from '../../state/productions.js';
import { DEFAULT_LEASE_SECONDS } from '../../state/sessions.js';
import { isDatabaseUnavailable } from '../../db/connection.js';
import { attachPlainLog } from '../../display/plain.js';
import { printableLine } from '../../core/sanitize.js';
import { attemptFiles } from '../../session/attempt-files.js';
import { inputUrl, stagedPathFor } from '../../session/download.js';
import { claimableRuns } from '../../state/claim.js';
import { openContext, type Context, type GlobalOptions } from '../context.js';
import { ExpectedError } from '../../core/errors.js';
import { commaList, FLAG_MAXIMA, nonNegativeInt, percent, positiveInt } from '../parse.js';
import { startNewProduction } from './new.js';

export interface RunOptions {
  production: string;
  version?: number;
  new?: string;
  fromVersion?: number;
  nproc: number;
  nprep: number;
  spacelim: number;
  pause: number;
  dataset?: string[];
  modules?: string;
  limit?: number;
  untilDone?: boolean;
  untilIdle?: boolean;
  dryRun?: boolean;
  plain?: boolean;
  lease?: number;
  watchdog?: number;
  orphans: string;
  maxRunning?: number;
}

/** Options shared by `run` and `demo`. */
export function addLoopOptions(command: Command, defaults = { nproc: 10, nprep: 5, spacelim: 90, pause: 5 }): Command {
  return command
    .option('--nproc <n>', 'jobs of this session on the grid at once', positiveInt, defaults.nproc)
    .option('--nprep <n>', 'runs staged ahead of the running ones', nonNegativeInt, defaults.nprep)
    .option('--spacelim <percent>', 'no new downloads while the staging area is this full', percent, defaults.spacelim)
    .option('--pause <seconds>', 'seconds between loop passes', positiveInt, defaults.pause)
    .option('--plain', 'one line per event instead of the live display')
    .option('--lease <seconds>', `session lease (default RUN_PRODUCTION_LEASE or ${DEFAULT_LEASE_SECONDS})`, positiveInt)
    .option('--watchdog <seconds>', 'stop heartbeating when a pass makes no progress this long (default: the lease, or twice the scheduler command timeout)', positiveInt)
    .option('--orphans <what>', "what to do with live jobs of dead sessions: adopt or cancel", 'adopt');
}

export function registerRun(program: Command): void {
  const command = program
    .command('run', { isDefault: true })
    .description('run a production: claim, download, stage, submit, watch (the main job; several shifters at once)')
    .requiredOption('--production <type>', 'production type')
    .option('--version <n>', 'version (default: the highest)', positiveInt)
    .option('--new <tag>', 'start the next version with this software tag first (as `new`)')
    .option('--from-version <n>', "with --new: the parent production's version to read from", positiveInt)
    .option('--dataset <set>', 'only runs of this dataset (repeatable, or comma-separated)', commaList)
    .option('--modules <file>', 'with --new: modules file frozen into the production')
    .option('--max-running <n>', 'with --new: cap on runs in flight across all sessions', positiveInt)
    .option('--limit <n>', 'claim at most this many runs in all, then finish', positiveInt)
    .option('--until-done', 'exit 0 once every run is finished or failed (reaping, adopting and claiming until then; waits while paused)')
    .option('--until-idle', 'exit 0 once this session holds nothing and nothing is left to claim now')
    .option('--dry-run', 'print what would be claimed, downloaded and submitted; change nothing');
  addLoopOptions(command).action(async (options: RunOptions, cmd: Command) => {
    const globals = cmd.optsWithGlobals<GlobalOptions>();
    process.exitCode = await runProduction(globals, options);
  });
}

function loopOptions(options: RunOptions): LoopOptions {
  const leaseText = process.env.RUN_PRODUCTION_LEASE;
  const lease = options.lease ?? (leaseText ? Number(leaseText) : DEFAULT_LEASE_SECONDS);
  const maxLease = FLAG_MAXIMA['--lease']!;
  if (!Number.isInteger(lease) || lease <= 0 || lease > maxLease) {
    throw new ExpectedError(`RUN_PRODUCTION_LEASE=${leaseText}: expected a positive whole number of seconds up to ${maxLease}.`, 64);
  }
  if (options.untilDone && options.untilIdle) throw new ExpectedError('--until-done and --until-idle: give one of them.', 64);
  if (options.orphans !== 'adopt' && options.orphans !== 'cancel') {
    throw new ExpectedError(`--orphans ${options.orphans}: expected adopt or cancel.`, 64);
  }
  return {
    nproc: options.nproc,
    nprep: options.nprep,
    spacelim: options.spacelim,
    pauseSeconds: options.pause,
    datasets: options.dataset ?? [],
    limit: options.limit ?? null,
    until: options.untilDone ? 'done' : options.untilIdle ? 'idle' : null,
    leaseSeconds: lease,
    orphans: options.orphans,
    watchdogSeconds: options.watchdog ?? null,
  };
}

export async function runProduction(globals: GlobalOptions, options: RunOptions): Promise<number> {
  const settings = loopOptions(options);
  const context = await openContext(globals, { applicationName: `run-production ${options.production}`, poolSize: 6 });
  try {
    let production: Production;
    if (options.new) {
      if (options.dryRun) throw new ExpectedError('--dry-run with --new would create a production; run without --new to preview.', 64);
      production = await startNewProduction(context, globals, {
        production: options.production,
        tag: options.new,
        fromVersion: options.fromVersion,
        modules: options.modules,
        datasets: options.dataset,
        maxRunning: options.maxRunning,
      });
    } else {
      production = await findProduction(context.handle.db, options.production, options.version);
    }
    if (production.status === 'closed') throw new ExpectedError(`${production.type} v${production.version} is closed; start a new version with --new TAG.`, 65);
    if (options.dryRun) return await dryRun(context, production, settings);
    return await operate(context, production, settings, options.plain === true);
  } finally {
    await context.close();
  }
}

async function operate(context: Context, production: Production, settings: LoopOptions, plain: boolean): Promise<number> {
  const loop = new OperatorLoop(context.handle, production, settings, {
    user: context.user,
    host: context.host,
    databaseLabel: context.databaseLabel,
    keysEnabled: Boolean(process.stdin.isTTY),
  });
  // After SIGHUP the terminal is gone: failed writes to it must not become crashes during the rollback.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  const onSignal = (reason: AbortReason) => () => void loop.abort(reason);
  const handlers: [NodeJS.Signals, () => void][] = [
    ['SIGINT', onSignal('SIGINT')],
    ['SIGTERM', onSignal('SIGTERM')],
    ['SIGHUP', onSignal('SIGHUP')],
    ['SIGUSR1', () => loop.drain()],
  ];
  for (const [signal, handler] of handlers) process.on(signal, handler);
  // A connection the server dropped is an outage the loop rides out, not a bug to abort for.
  const onCrash = (error: unknown) => {
    if (!isDatabaseUnavailable(error)) void loop.abort('error', error);
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  let display: Display | null = null;
  try {
    const live = !plain && Boolean(process.stdout.isTTY) && !inCi(process.env);
    // The plain log listens from the first line; the live display needs the first snapshot.
    if (!live) display = startPlainLog(loop);
    const finished = loop.run();
    const first = await Promise.race([loop.ready().then(() => 'snapshot' as const), finished.then(() => 'ended' as const)]);
    // A loop that ended before its first snapshot (aborted while the database was away) has
    // nothing to draw: its reason is all there is to say.
    display ??= first === 'snapshot' ? await startLiveView(loop) : { stop: async (reason) => void process.stderr.write(`run-production: ${reason}\n`) };
    const result = await finished;
    await display.stop(result.reason);
    return result.exitCode;
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler);
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  }
}

interface Display {
  stop(reason: string): Promise<void>;
}

/**
 * Ink draws only its last frame under CI (is-in-ci), as it does when stdout is
 * not a terminal; there the plain log is the useful output.
 */
function inCi(env: NodeJS.ProcessEnv): boolean {
  return ['CI', 'CONTINUOUS_INTEGRATION'].some((key) => key in env && env[key] !== '0' && env[key] !== 'false');
}

/** The line log: with --plain, when stdout is not a terminal, or under CI. */
function startPlainLog(loop: OperatorLoop): Display {
  const detach = attachPlainLog(loop);
  return {
    async stop() {
      detach();
    },
  };
}

/** The live Ink display on a terminal, with keys wired to the loop. */
async function startLiveView(loop: OperatorLoop): Promise<Display> {
  const { startLiveDisplay } = await import('../../display/ink/live.js');
  const live = startLiveDisplay(loop, {
    drain: () => loop.drain(),
    togglePauseClaiming: () => loop.togglePauseClaiming(),
    abort: () => void loop.abort('SIGINT'),
  });
  return {
    stop: (reason) => live.stop(finalSummary(loop, reason)),
  };
}

/** What stays on the screen once the live display is gone. */
function finalSummary(loop: OperatorLoop, reason: string): string {
  let snapshot;
  try {
    snapshot = loop.getSnapshot();
  } catch {
    return `run-production: ${reason}`;
  }
  const { production, counts, total, abort } = snapshot;
  const lines = [
    `run-production: ${production.type} v${production.version} (tag ${production.tag}), session ${snapshot.session.id.slice(0, 8)}: ${reason}`,
    `  ${counts.finished}/${total} finished, ${counts.failed} failed, ${counts.new} new, ${total - counts.finished - counts.failed - counts.new} in flight`,
  ];
  if (abort) {
    for (const job of abort.cancelledJobs) lines.push(`Cancelling job ${job}`);
    lines.push(`Aborting runs: [${abort.rolledBackRuns.join(', ')}]`);
    if (abort.note) lines.push(abort.note);
  }
  const failures = snapshot.events.filter((e) => e.kind === 'fail' || e.kind === 'error').slice(0, 5);
  for (const event of failures.reverse()) lines.push(`  ${event.text}`);
  return lines.join('\n');
}

/** What the loop would do now, without a session and without changing anything. */
async function dryRun(context: Context, production: Production, settings: LoopOptions): Promise<number> {
  const config = production.config;
  // Tags, reasons, sources and dataset-derived paths are others' text: shown only as printable text.
  const say = (line: string) => console.log(printableLine(line));
  const candidates = await claimableRuns(context.handle.db, {
    productionId: production.id,
    parentId: production.parentId,
    datasets: settings.datasets,
    limit: Math.min(settings.nproc + settings.nprep, settings.limit ?? Infinity),
  });
  const runs = candidates.map((r) => ({ run: r.run_number, dataset: r.dataset, attempts: r.attempts, source: r.source, sizeBytes: r.size_bytes }));
  // The paths a session would use; no session exists, so the acting account stands in for it.
  const as = { production, actor: { user: context.user, sessionId: '' } };
  say(`DRY RUN: ${production.type} v${production.version} (tag ${production.tag}), ${production.status}; nothing will be changed.`);
  if (production.status !== 'active') say(`Nothing would be claimed: the production is ${production.status} (${production.statusReason ?? 'no reason given'}).`);
  say(`Would claim ${runs.length} run(s): [${runs.map((r) => r.run).join(', ')}]`);
  for (const run of runs) {
    if (config.input.kind === 'archive') {
      say(`Would download run ${run.run}: ${inputUrl(as, run).href} → ${stagedPathFor(as, run)}${run.sizeBytes !== null ? ` (${run.sizeBytes} bytes)` : ''}`);
    } else {
      say(`Would use run ${run.run}'s parent ${config.input.output} output in place`);
    }
  }
  for (const run of runs.slice(0, settings.nproc)) {
    const { outputs } = attemptFiles(production, context.user, run);
    say(
      `Would submit run ${run.run} to ${config.job.backend}: ${config.job.script} (attempt ${run.attempts + 1}) → ` +
        Object.entries(outputs).map(([name, path]) => `${name}=${path}`).join(' '),
    );
  }
  return 0;
}
