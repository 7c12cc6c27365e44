import { sql, type Kysely, type Selectable } from 'kysely';
import { ExpectedError } from '../core/errors.js';
import type { FrozenType } from '../config/config.js';
import type { Database, ProductionsTable } from '../db/schema.js';
import { recordEvent, type Actor } from './transition.js';

export type ProductionRow = Selectable<ProductionsTable> & { config_intact?: boolean };

/** Who froze a production's definition and whether it is still what was frozen (sql/009_roles.sql). */
export interface Frozen {
  /** Database login; the Unix creator for productions frozen before logins were recorded. */
  by: string;
  at: Date;
  sha256: string | null;
  /** The stored config still hashes to sha256 (false: it was changed behind the triggers' back). */
  intact: boolean;
}

export interface Production {
  id: number;
  type: string;
  version: number;
  tag: string;
  parentId: number | null;
  config: FrozenType;
  modules: string | null;
  maxAttempts: number;
  maxRunning: number | null;
  status: 'active' | 'paused' | 'closed';
  statusReason: string | null;
  statusChangedAt: Date;
  datasets: string[] | null;
  quality: string | null;
  createdBy: string;
  startedAt: Date;
  stoppedAt: Date | null;
  frozen: Frozen;
}

export function toProduction(row: ProductionRow): Production {
  return {
    id: row.id,
    type: row.type,
    version: row.version,
    tag: row.tag,
    parentId: row.parent_id,
    config: row.config as FrozenType,
    modules: row.modules,
    maxAttempts: row.max_attempts,
    maxRunning: row.max_running,
    status: row.status,
    statusReason: row.status_reason,
    statusChangedAt: row.status_changed_at,
    datasets: row.datasets,
    quality: row.quality,
    createdBy: row.created_by,
    startedAt: row.started_at,
    stoppedAt: row.stopped_at,
    frozen: {
      by: row.frozen_by ?? row.created_by,
      at: row.frozen_at ?? row.started_at,
      sha256: row.config_sha256,
      intact: row.config_intact ?? true,
    },
  };
}

/** The stored config still hashes to what was stored when it was frozen. */
const configIntact = sql<boolean>`(config_sha256 IS NULL OR config_sha256 = encode(sha256(convert_to(config::text, 'UTF8')), 'hex'))`.as('config_intact');

/**
 * Refuses a production whose frozen config no longer matches its hash: someone changed it behind
 * the productions_frozen trigger (a superuser), and its commands are not the ones that were frozen.
 */
export function requireIntactConfig(production: Production): void {
  if (production.frozen.intact) return;
  throw new ExpectedError(
    `The frozen config of ${production.type} v${production.version} (frozen by ${production.frozen.by} at ${production.frozen.at.toISOString()}) ` +
      `no longer matches its sha256 ${production.frozen.sha256?.slice(0, 12)}: it was changed after it was frozen. Refusing to run it; ` +
      'a coordinator should find out who changed it (the database log) and start a new version with run-production new.',
    65,
  );
}

/** One line for the session's start and the display: "config of alcapana v5 frozen by carol at …". */
export function describeFrozen(production: Production): string {
  const sha = production.frozen.sha256 ? ` (sha256 ${production.frozen.sha256.slice(0, 12)})` : '';
  return `config of ${production.type} v${production.version} frozen by ${production.frozen.by} at ${production.frozen.at.toISOString().replace(/\.\d+Z$/, 'Z')}${sha}`;
}

/**
 * What others may change of a production while a session runs it: its status and limits. The
 * session keeps the definition (config, modules) it checked at its start, so nothing written to the
 * database later can change the commands it runs.
 */
export async function refreshProductionState(db: Kysely<Database>, production: Production): Promise<Production> {
  const row = await db
    .selectFrom('productions')
    .select(['status', 'status_reason', 'status_changed_at', 'max_running', 'max_attempts', 'stopped_at'])
    .where('id', '=', production.id)
    .executeTakeFirstOrThrow();
  return {
    ...production,
    status: row.status,
    statusReason: row.status_reason,
    statusChangedAt: row.status_changed_at,
    maxRunning: row.max_running,
    maxAttempts: row.max_attempts,
    stoppedAt: row.stopped_at,
  };
}

/** The production of a type: the given version, or the highest. Errors name what exists. */
export async function findProduction(db: Kysely<Database>, type: string, version?: number): Promise<Production> {
  const rows = await db.selectFrom('productions').selectAll().select(configIntact).where('type', '=', type).orderBy('version', 'desc').execute();
  if (rows.length === 0) {
    const types = await db.selectFrom('productions').select('type').distinct().orderBy('type').execute();
    throw new ExpectedError(
      `There is no production of type "${type}"${types.length ? ` (existing types: ${types.map((t) => t.type).join(', ')})` : ''}. Create one with: run-production new --production ${type} --tag TAG`,
      64,
    );
  }
  const row = version === undefined ? rows[0]! : rows.find((r) => r.version === version);
  if (!row) {
    throw new ExpectedError(`There is no ${type} production version ${version}; versions: ${rows.map((r) => r.version).reverse().join(', ')}.`, 64);
  }
  return toProduction(row);
}

export async function getProduction(db: Kysely<Database>, id: number): Promise<Production> {
  return toProduction(await db.selectFrom('productions').selectAll().select(configIntact).where('id', '=', id).executeTakeFirstOrThrow());
}

export interface NewProductionRequest {
  type: FrozenType;
  tag: string;
  /** Version of the parent production to read from (default: its highest). */
  fromVersion?: number;
  modules: string | null;
  datasets?: string[];
  quality?: string;
  maxRunning?: number;
  actor: Actor;
}

/**
 * Creates the next version of a production type with one `new` row per
 * selected run (for a child type, per run of the parent production), in one
 * transaction. Versions of a type are assigned under an advisory lock so two
 * shifters creating at once get 4 and 5, not a unique violation.
 */
export async function createProduction(db: Kysely<Database>, request: NewProductionRequest): Promise<{ production: Production; runs: number }> {
  const { type } = request;
  return db.transaction().execute(async (tx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtext(${'run-production new ' + type.type}))`.execute(tx);
    let parentId: number | null = null;
    if (type.parent) {
      const parent = await findProduction(tx, type.parent, request.fromVersion).catch((error: unknown) => {
        if (error instanceof ExpectedError) {
          throw new ExpectedError(`${type.type} reads its input from ${type.parent}: ${error.message}`, 64);
        }
        throw error;
      });
      parentId = parent.id;
    } else if (request.fromVersion !== undefined) {
      throw new ExpectedError(`--from-version applies to a type with a parent; ${type.type} has none in ${type.configFile}.`, 64);
    }
    const next = await tx
      .selectFrom('productions')
      .select(sql<number>`coalesce(max(version), 0) + 1`.as('version'))
      .where('type', '=', type.type)
      .executeTakeFirstOrThrow();
    const inserted = await tx
      .insertInto('productions')
      .values({
        type: type.type,
        version: next.version,
        tag: request.tag,
        parent_id: parentId,
        config: JSON.stringify(type),
        modules: request.modules,
        max_attempts: type.maxAttempts,
        max_running: request.maxRunning ?? null,
        datasets: request.datasets?.length ? request.datasets : null,
        quality: request.quality ?? null,
        created_by: request.actor.user,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    const datasets = request.datasets?.length ? request.datasets : null;
    const quality = request.quality ?? null;
    const added =
      parentId === null
        ? await sql`
            INSERT INTO production_runs (production_id, run_number, dataset)
            SELECT ${inserted.id}, run_number, dataset FROM runs
             WHERE (${datasets}::text[] IS NULL OR dataset = ANY(${datasets}::text[]))
               AND (${quality}::text IS NULL OR quality = ${quality}::text)
             ORDER BY run_number`.execute(tx)
        : await sql`
            INSERT INTO production_runs (production_id, run_number, dataset)
            SELECT ${inserted.id}, p.run_number, p.dataset FROM production_runs AS p JOIN runs AS r USING (run_number)
             WHERE p.production_id = ${parentId}
               AND (${datasets}::text[] IS NULL OR p.dataset = ANY(${datasets}::text[]))
               AND (${quality}::text IS NULL OR r.quality = ${quality}::text)
             ORDER BY p.run_number`.execute(tx);
    const runs = Number(added.numAffectedRows ?? 0);
    if (runs === 0) {
      const what = [datasets ? `dataset ${datasets.join(',')}` : null, quality ? `quality ${quality}` : null].filter(Boolean).join(' and ');
      throw new ExpectedError(
        `No runs${what ? ` of ${what}` : ''} ${parentId ? 'in the parent production' : 'in the catalogue'}; nothing was created. ` +
          (parentId ? 'Check --datasets/--quality.' : 'Import the catalogue first (run-production datasets import FILE.csv) or check --datasets/--quality.'),
        65,
      );
    }
    await recordEvent(tx, {
      productionId: inserted.id,
      actor: request.actor,
      kind: 'new-production',
      reason: 'production_created',
      message: `${type.type} version ${next.version} (tag ${request.tag}) with ${runs} runs${parentId ? ` from parent production ${parentId}` : ''}`,
    });
    return { production: toProduction(inserted), runs };
  });
}

export async function listProductions(db: Kysely<Database>): Promise<Production[]> {
  const rows = await db.selectFrom('productions').selectAll().orderBy('type').orderBy('version').execute();
  return rows.map(toProduction);
}
