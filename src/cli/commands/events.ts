import type { Command } from 'commander';
import { readEvents, type EventFilter, type EventRow } from '../../admin/events.js';
import { findSession } from '../../admin/sessions.js';
import { findProduction } from '../../state/productions.js';
import { ExpectedError } from '../../core/errors.js';
import { withContext, type GlobalOptions } from '../context.js';
import { printableLine, terminalJson } from '../../core/sanitize.js';
import { duration, EVENTS_LIMIT_MAX, positiveInt, positiveIntUpTo } from '../parse.js';

const FOLLOW_POLL_MS = 1000;
/** Rows read per poll while following; a busy production catches up over a few polls instead of one huge read. */
const FOLLOW_BATCH = 1000;
/** How far below the cursor each poll looks again for events of transactions that committed late. */
const FOLLOW_LOOKBACK = 200;

export function registerEvents(program: Command): void {
  program
    .command('events')
    .description('the event log: transitions and operator actions, oldest first; --follow keeps printing new ones')
    .option('--production <type>', 'only events of this production type (its highest version unless --version)')
    .option('--version <n>', 'with --production: this version', positiveInt)
    .option('--run <n>', 'only events of this run', positiveInt)
    .option('--session <id>', 'only events written by this session (id or 8+ character prefix)')
    .option('--since <duration>', 'only events of the last 30m, 2h, 1d ...', duration)
    .option('--limit <n>', `at most this many (the newest; up to ${EVENTS_LIMIT_MAX})`, positiveIntUpTo(EVENTS_LIMIT_MAX), 200)
    .option('--follow', 'keep printing new events (every second) until Ctrl-C')
    .option('--json', 'one JSON object per line')
    .action(
      async (
        options: { production?: string; version?: number; run?: number; session?: string; since?: number; limit: number; follow?: boolean; json?: boolean },
        command: Command,
      ) => {
        if (options.version !== undefined && !options.production) throw new ExpectedError('--version needs --production TYPE.', 64);
        await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
          const { db } = context.handle;
          const filter: EventFilter = {
            productionId: options.production ? (await findProduction(db, options.production, options.version)).id : undefined,
            run: options.run,
            sessionId: options.session ? (await findSession(db, options.session)).id : undefined,
            sinceSeconds: options.since,
          };
          // Messages carry what others wrote (job stderr, pause reasons, tags): one printable line per
          // event; JSON escapes what a terminal would obey (src/core/sanitize.ts) and parses the same.
          const print = (rows: EventRow[]) => {
            for (const row of rows) console.log(options.json ? terminalJson(eventJson(row)) : printableLine(formatEventLine(row)));
          };
          const first = await readEvents(db, filter, options.limit);
          print(first);
          if (!options.follow) {
            if (first.length === 0 && !options.json) console.log('No events match.');
            return;
          }
          // Ids are taken at insert but become visible at commit, so a transaction that commits late
          // (a reap, a release) can show an id below the cursor: look back a little and skip what was printed.
          const seen = new Set(first.map((r) => r.id));
          await follow(async (cursor) => {
            const rows = await readEvents(db, { ...filter, sinceSeconds: undefined, afterId: Math.max(cursor - FOLLOW_LOOKBACK, 0) }, FOLLOW_BATCH, 'oldest');
            const fresh = rows.filter((r) => !seen.has(r.id));
            print(fresh);
            for (const r of fresh) seen.add(r.id);
            const next = Math.max(cursor, ...fresh.map((r) => r.id));
            for (const id of seen) if (id <= next - FOLLOW_LOOKBACK) seen.delete(id);
            return next;
          }, first.at(-1)?.id ?? (await lastEventId(db)));
        });
      },
    );
}

/** Polls until SIGINT/SIGTERM; resolves then so the database connections close normally (exit 0). */
async function follow(poll: (afterId: number) => Promise<number>, startAfter: number): Promise<void> {
  let stopped = false;
  let wake: () => void = () => undefined;
  const stop = () => {
    stopped = true;
    wake();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    let cursor = startAfter;
    while (!stopped) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, FOLLOW_POLL_MS);
      });
      if (!stopped) cursor = await poll(cursor);
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

async function lastEventId(db: Parameters<typeof readEvents>[0]): Promise<number> {
  const rows = await readEvents(db, {}, 1);
  return rows.at(-1)?.id ?? 0;
}

/** One line per event, the way a shifter reads a log: time, where, what and why, who, the message. */
function formatEventLine(e: EventRow): string {
  const time = e.at.toISOString().slice(0, 19).replace('T', ' ');
  const who = `${e.user}${e.session ? `/${e.session.slice(0, 8)}` : ''}`;
  const what = e.kind === 'transition' ? `${e.from} -> ${e.to}` : e.kind;
  const run = e.run !== null ? ` run ${e.run}` : '';
  return `${time}  ${e.production ?? '-'}${run}  ${what} [${e.reason}]  (${who})${e.message ? `  ${e.message}` : ''}`;
}

function eventJson(e: EventRow): Record<string, unknown> {
  return {
    id: e.id,
    at: e.at.toISOString(),
    production: e.production,
    run: e.run,
    session: e.session,
    user: e.user,
    kind: e.kind,
    from: e.from,
    to: e.to,
    reason: e.reason,
    attempt: e.attempt,
    jobId: e.jobId,
    exitCode: e.exitCode,
    host: e.host,
    error: e.error,
    message: e.message,
  };
}
