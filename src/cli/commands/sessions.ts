import type { Command } from 'commander';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { findProduction, getProduction } from '../../state/productions.js';
import { reapExpiredSessions, removeReturnedFiles } from '../../state/sessions.js';
import { adoptionDeciderFor } from '../../state/adoption.js';
import { printableLine, terminalJson } from '../../core/sanitize.js';
import { withContext, type Context, type GlobalOptions } from '../context.js';
import { textTable } from '../table.js';

interface SessionsOptions {
  production?: string;
  all?: boolean;
  reap?: boolean;
  orphans: string;
  json?: boolean;
}

export function registerSessions(program: Command): void {
  program
    .command('sessions')
    .description('who runs what, since when, heartbeat age, runs held; --reap expired sessions')
    .option('--production <type>', 'only sessions of this production type')
    .option('--all', 'include ended sessions')
    .option('--reap', 'end sessions whose lease expired and return (or adopt) their runs')
    .option('--orphans <what>', 'with --reap: what to do with live jobs of dead sessions: adopt (default) or cancel', 'adopt')
    .option('--json', 'print JSON')
    .action(async (options: SessionsOptions, command: Command) => {
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        if (options.reap) await reapAndSay(context, options);
        else printSessions(await listSessions(context.handle.db, options), options);
      });
    });
}

/** `sessions --reap`: ends the expired sessions, removes the files of the runs they returned, and says what happened. */
async function reapAndSay(context: Context, options: SessionsOptions): Promise<void> {
  const { db } = context.handle;
  const outcomes = await reapExpiredSessions(db, context.actor, {
    productionId: options.production ? (await findProduction(db, options.production)).id : undefined,
    decide: adoptionDeciderFor(db, { orphans: options.orphans === 'cancel' ? 'cancel' : 'adopt', adopter: null }),
  });
  if (outcomes.length === 0) console.log('No expired sessions.');
  for (const o of outcomes) {
    await removeReturnedFiles(o, async (id) => (await getProduction(db, id)).config.stagingDir);
    console.log(printableLine(
      `${o.session.endReason === null ? 'Reaped' : 'Recovered the runs of ended'} session ${o.session.id.slice(0, 8)} (${o.session.user}@${o.session.host}, heartbeat ${o.session.heartbeatAgeSeconds}s ago): ` +
        `returned runs [${o.returned.join(', ')}]${o.adopted.length ? `, adopted [${o.adopted.join(', ')}]` : ''}`,
    ));
    if (o.kept.length) {
      console.error(printableLine(
        `run-production: WARNING: runs [${o.kept.join(', ')}] stay held by session ${o.session.id.slice(0, 8)}: their jobs started on ` +
          `${o.session.host}, which this host cannot reach, and recorded no exit yet. Their releases were revoked, so they stop within ` +
          'seconds if that host sees this filesystem; a session of the production adopts them (or run this again once they stopped).',
      ));
    }
  }
}

/** One session as `sessions` lists it (and prints with --json, in this order). */
interface ListedSession {
  id: string;
  user: string;
  host: string;
  pid: number;
  production: string | null;
  startedAt: Date;
  endedAt: Date | null;
  endReason: string | null;
  heartbeatAgeSeconds: number;
  leaseSeconds: number;
  stale: boolean;
  runsHeld: number;
}

/** The live sessions (with --all also the ended ones), of one production type if given, oldest first. */
async function listSessions(db: Kysely<Database>, filter: { all?: boolean; production?: string }): Promise<ListedSession[]> {
  const rows = await sql<{
    id: string;
    user_name: string;
    host: string;
    pid: number;
    production: string | null;
    started_at: Date;
    ended_at: Date | null;
    end_reason: string | null;
    heartbeat_age: number;
    lease_seconds: number;
    runs_held: number;
  }>`
    SELECT s.id, s.user_name, s.host, s.pid, p.type || ' v' || p.version AS production, s.started_at, s.ended_at, s.end_reason,
           extract(epoch FROM now() - s.heartbeat_at)::float8 AS heartbeat_age, s.lease_seconds,
           (SELECT count(*) FROM production_runs r WHERE r.session_id = s.id)::int AS runs_held
      FROM sessions s LEFT JOIN productions p ON p.id = s.production_id
     WHERE (${filter.all === true} OR s.ended_at IS NULL)
       AND (${filter.production ?? null}::text IS NULL OR p.type = ${filter.production ?? null}::text)
     ORDER BY s.started_at`.execute(db);
  return rows.rows.map((r) => ({
    id: r.id,
    user: r.user_name,
    host: r.host,
    pid: r.pid,
    production: r.production,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    endReason: r.end_reason,
    heartbeatAgeSeconds: Math.round(r.heartbeat_age),
    leaseSeconds: r.lease_seconds,
    stale: r.ended_at === null && r.heartbeat_age > r.lease_seconds,
    runsHeld: r.runs_held,
  }));
}

function printSessions(list: ListedSession[], options: SessionsOptions): void {
  if (options.json) {
    console.log(terminalJson(list));
    return;
  }
  if (list.length === 0) {
    console.log(options.all ? 'No sessions.' : 'No live sessions.');
    return;
  }
  console.log(
    textTable(
      ['session', 'user@host', 'pid', 'production', 'started', 'heartbeat', 'runs', 'state'],
      list.map((s) => [
        s.id.slice(0, 8),
        `${s.user}@${s.host}`,
        s.pid,
        s.production ?? '-',
        s.startedAt.toISOString().slice(0, 19).replace('T', ' '),
        `${s.heartbeatAgeSeconds}s ago`,
        s.runsHeld,
        s.endedAt ? `ended: ${s.endReason ?? ''}` : s.stale ? 'STALE (lease expired)' : 'live',
      ]),
    ),
  );
}
