import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { SessionFence } from '../state/moves.js';
import type { Production } from '../state/productions.js';
import type { Actor } from '../state/transition.js';

/** What a session's stages act with: the database, the production as this pass read it, and who acts. */
export interface JobContext {
  db: Kysely<Database>;
  production: Production;
  actor: Actor & { sessionId: string };
}

/** The fence of the session's moves: its runs, in its production. */
export function fenceOf(context: JobContext): SessionFence {
  return { productionId: context.production.id, actor: context.actor };
}
