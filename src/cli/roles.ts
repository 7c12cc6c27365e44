import type { Command } from 'commander';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import { ExpectedError } from '../core/errors.js';

/**
 * Which of the database's roles (sql/009_roles.sql) each command needs. The database refuses what a
 * login may not do whatever the CLI says; this table only lets the CLI say so first, in one line
 * naming the role (exit 77), instead of half a command and a permission error.
 */

export type Role = 'run_production_reader' | 'run_production_shifter' | 'run_production_coordinator';

export const EXIT_REFUSED = 77;

interface Invocation {
  path: string;
  options: Record<string, unknown>;
}

/** The role a command needs, by its path (`datasets import`) and options (`--fix`, `--force`, `--new`). */
export function roleFor({ path, options }: Invocation): Role {
  const coordinator: Role = 'run_production_coordinator';
  switch (path) {
    case 'new':
    case 'close':
    case 'limits':
    case 'retry':
    case 'datasets import':
      return coordinator;
    case 'validate':
      return options.fix ? coordinator : 'run_production_reader';
    case 'release':
      return options.force ? coordinator : 'run_production_shifter';
    case 'run':
    case 'demo':
      return options.new && !options.dryRun ? coordinator : options.dryRun ? 'run_production_reader' : 'run_production_shifter';
    case 'pause':
    case 'resume':
      return 'run_production_shifter';
    case 'sessions':
      return options.reap ? 'run_production_shifter' : 'run_production_reader';
    default:
      return 'run_production_reader';
  }
}

let invocation: Invocation | null = null;

/** Remembers the command about to run (a commander preAction hook), for requireCommandRole. */
export function noteInvocation(command: Command): void {
  const names: string[] = [];
  for (let c: Command | null = command; c?.parent; c = c.parent) names.unshift(c.name());
  invocation = { path: names.join(' '), options: command.opts() };
}

/** Refuses, with exit 77, a login that lacks the role the current command needs. */
export async function requireCommandRole(db: Kysely<Database>): Promise<void> {
  if (!invocation) return;
  const role = roleFor(invocation);
  const row = (
    // A database not yet migrated to the roles (db migrate opens it first) has no role model to check.
    await sql<{ ok: boolean; login: string }>`
      SELECT CASE WHEN to_regrole(${role}) IS NULL THEN true ELSE pg_has_role(session_user, ${role}, 'MEMBER') END AS ok,
             session_user AS login`.execute(db)
  ).rows[0]!;
  if (row.ok) return;
  throw new ExpectedError(
    `run-production ${invocation.path} needs the ${role} role, which the database login ${row.login} does not have; ` +
      `a database administrator grants it with: GRANT ${role} TO ${row.login};`,
    EXIT_REFUSED,
  );
}

/** The database refused the statement (SQLSTATE 42501): one line, exit 77, never a stack trace. */
export function asRefusal(error: unknown): ExpectedError | null {
  if ((error as { code?: string } | null)?.code !== '42501') return null;
  const role = invocation ? roleFor(invocation) : null;
  return new ExpectedError(
    `the database refused it: ${(error as Error).message}` + (role ? ` (run-production ${invocation!.path} needs the ${role} role)` : ''),
    EXIT_REFUSED,
  );
}
