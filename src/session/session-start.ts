import type { Kysely } from 'kysely';
import { EXIT, ExpectedError } from '../core/errors.js';
import { whyNotCreated } from '../core/disk-faults.js';
import type { Database } from '../db/schema.js';
import { inFlightCommands } from '../grids/command.js';
import { adoptionDeciderFor } from '../state/adoption.js';
import { describeFrozen, getProduction, type Production } from '../state/productions.js';
import { reapExpiredSessions, removeReturnedFiles, startSession } from '../state/sessions.js';
import { SessionHeartbeat, watchdogSeconds } from './heartbeat.js';
import type { Journal } from './journal.js';
import { reapLine } from './messages.js';
import type { LoopOptions } from './options.js';
import { ensureModulesFile } from './prepare-job.js';
import type { Stage } from './stage.js';

/** Who runs the session, and what the display says about where. */
export interface SessionWho {
  user: string;
  host: string;
  databaseLabel: string;
  keysEnabled: boolean;
}

/** A scheduler command still running after this long is named on screen. */
const HANGING_COMMAND_MS = 5_000;

/**
 * Writes the production's modules file and creates the session row. The dataDir is checked first:
 * one this account cannot write to is the shifter's to fix, and must not leave a session row
 * behind (or a stack trace).
 */
export async function openSession(db: Kysely<Database>, production: Production, options: LoopOptions, who: SessionWho, journal: Journal): Promise<{ id: string; modulesFile: string }> {
  const modulesFile = await ensureModulesFile(production).catch(async (failure: NodeJS.ErrnoException) => {
    const error = await whyNotCreated(production.config.dataDir, failure);
    throw new ExpectedError(
      `Cannot write to the production's dataDir ${production.config.dataDir} (${error.code ?? error.message}: ${error.path ?? ''}); ` +
        'make it writable for this account, or fix dataDir in the config and start a new version.',
      EXIT.cantCreate,
    );
  });
  const id = await startSession(db, {
    user: who.user,
    host: who.host,
    pid: process.pid,
    productionId: production.id,
    options: { ...options },
    leaseSeconds: options.leaseSeconds,
  });
  journal.emit('info', null, `INFO: Session ${id.slice(0, 8)} on ${production.type} v${production.version} (tag ${production.tag}) as ${who.user}@${who.host}`);
  journal.emit('info', null, `INFO: Running the ${describeFrozen(production)}`);
  return { id, modulesFile };
}

/** Seconds one scheduler or quota command may take before it is killed. */
export function commandTimeoutSeconds(production: Production): number {
  const configured = production.config.job.options.commandTimeoutSeconds;
  return typeof configured === 'number' && configured > 0 ? configured : 30;
}

/**
 * Starts the session's heartbeat, with its banners: the database lost and found again, a pass
 * stuck (the watchdog), a scheduler command that has not answered for a while.
 */
export function watchSession(
  db: Kysely<Database>,
  sessionId: string,
  production: Production,
  options: LoopOptions,
  journal: Journal,
  on: { fenced(): void; unreachable(error: Error): void },
): SessionHeartbeat {
  const timeout = commandTimeoutSeconds(production);
  const heartbeat = new SessionHeartbeat(
    db,
    sessionId,
    { leaseSeconds: options.leaseSeconds, watchdogSeconds: options.watchdogSeconds ?? watchdogSeconds(options.leaseSeconds, timeout) },
    {
      fenced: on.fenced,
      reachable: () => journal.clearAlert('database-unreachable', 'INFO: The database answers again.'),
      unreachable: (_silent, error) => on.unreachable(error),
      stuck: (state) =>
        state
          ? journal.setAlert(
              'session-stuck',
              `No progress for ${state.seconds}s while ${state.step}; not heartbeating, claiming or submitting, so that another session can take over this session's runs`,
            )
          : journal.clearAlert('session-stuck', 'INFO: The loop moves again.'),
      beat: () => showHangingCommands(journal, timeout),
    },
  );
  heartbeat.start();
  return heartbeat;
}

/** A banner naming a scheduler command that has been running for a while (its timeout still holds). */
function showHangingCommands(journal: Journal, timeoutSeconds: number): void {
  const now = Date.now();
  const slow = inFlightCommands().filter((c) => now - c.startedAt > HANGING_COMMAND_MS);
  if (slow.length === 0) return journal.clearAlert('scheduler-slow', 'INFO: The scheduler answers again.');
  const oldest = slow[0]!;
  journal.setAlert(
    'scheduler-slow',
    `${oldest.label} has not answered for ${Math.round((now - oldest.startedAt) / 1000)}s (timeout ${timeoutSeconds}s)` +
      (slow.length > 1 ? `, and ${slow.length - 1} more command(s)` : ''),
  );
}

/**
 * Reaps sessions whose lease expired and adopts our production's jobs, removing the returned runs'
 * files. Not before this session has itself been connected for a lease (see ReapOptions): after an
 * outage everybody's heartbeat is old.
 */
export async function reapOthers(stage: Stage): Promise<void> {
  const { db, production, actor } = stage.job;
  const reaped = await reapExpiredSessions(db, actor, {
    decide: adoptionDeciderFor(db, { orphans: stage.options.orphans, adopter: { productionId: production.id, grid: stage.grid } }),
    reaperConnectedSeconds: stage.heartbeat.connectedSeconds,
    adopterProductionId: production.id,
  });
  for (const outcome of reaped) {
    const line = reapLine(outcome);
    stage.journal.emit(line.kind, line.run, line.text);
    await removeReturnedFiles(outcome, async (id) => (id === production.id ? production : await getProduction(db, id)).config.stagingDir);
  }
}
