import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { ExpectedError } from '../core/errors.js';

/**
 * Our own small runner for the numbered plain-SQL migrations in sql/ (Kysely's
 * FileMigrationProvider only loads JS/TS). Each file is applied in its own
 * transaction under a cluster-wide advisory lock, and recorded with a checksum
 * so that an applied file that was edited afterwards is noticed and refused.
 *
 * The lock is a transaction-level one (pg_advisory_xact_lock), taken again in
 * every transaction, and nothing here keeps state on the server connection
 * between transactions: behind a pooler in transaction mode (PgBouncer) each
 * transaction may run on another server connection. A session-level lock taken
 * there stays with whichever server connection ran it, is unlocked (or not) on
 * another one, and every migrator that lands elsewhere waits for ever while
 * holding one of the pooler's few connections.
 */

export const SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));
const MIGRATION_LOCK = 0x72756e70; // "runp": one advisory lock key for all migrators
const FILE_PATTERN = /^(\d+)_([\w-]+)\.sql$/;

export interface MigrationFile {
  version: number;
  name: string;
  file: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  applied: MigrationFile[];
  version: number;
}

export async function readMigrationFiles(dir = SQL_DIR): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((name) => FILE_PATTERN.test(name)).sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const match = FILE_PATTERN.exec(name)!;
    const sql = await readFile(dir + name, 'utf8');
    files.push({
      version: Number(match[1]),
      name: match[2]!,
      file: name,
      sql,
      checksum: createHash('sha256').update(sql).digest('hex'),
    });
  }
  const seen = new Set<number>();
  for (const file of files) {
    if (seen.has(file.version)) throw new ExpectedError(`sql/: two migrations are numbered ${file.version}; renumber one of them.`);
    seen.add(file.version);
  }
  return files;
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

async function ensureLedger(client: pg.PoolClient): Promise<void> {
  await client.query(`
    CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      checksum   text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      applied_by text NOT NULL
    )`);
  await client.query(`COMMENT ON TABLE schema_migrations IS 'Migrations from sql/ applied to this database, with the checksum of each file as applied.'`);
}

/** Compares what the database has applied with the files we ship; throws on edited or unknown migrations. */
function checkApplied(applied: AppliedRow[], files: MigrationFile[]): void {
  const byVersion = new Map(files.map((f) => [f.version, f]));
  const newest = files.at(-1)?.version ?? 0;
  for (const row of applied) {
    const file = byVersion.get(row.version);
    if (!file) {
      throw new ExpectedError(
        `This database was migrated by a newer run-production (it has migration ${row.version}_${row.name}; this version knows up to ${newest}). ` +
          'Upgrade run-production (git pull && npm ci) before using this database.',
      );
    }
    if (file.checksum !== row.checksum) {
      throw new ExpectedError(
        `sql/${file.file} was changed after it was applied to this database (checksum ${row.checksum.slice(0, 12)} applied, ${file.checksum.slice(0, 12)} on disk). ` +
          `Restore the file as released (git checkout -- sql/${file.file}) and put schema changes into a new numbered migration.`,
      );
    }
  }
}

export async function migrate(pool: pg.Pool, options: { dir?: string } = {}): Promise<MigrationResult> {
  const files = await readMigrationFiles(options.dir);
  const applied: MigrationFile[] = [];
  const client = await pool.connect();
  try {
    // Nothing pending (what nearly every command finds): read the ledger and go. No lock, no DDL, so a
    // shifter's or reader's login, which may not change the schema, runs commands as usual.
    if (await upToDate(client, files)) return { applied, version: files.at(-1)?.version ?? 0 };
    // One file per transaction, the ledger read again under the lock each time: another
    // migrator may have applied files between two of our transactions. No file runs twice,
    // because reading the ledger and recording the file happen in one transaction under the lock.
    for (;;) {
      const next = await migrateOne(client, files);
      if (!next) return { applied, version: files.at(-1)?.version ?? 0 };
      applied.push(next);
    }
  } finally {
    client.release();
  }
}

/** In one transaction under the lock: checks the ledger, applies the first pending file. Null when none is pending. */
async function migrateOne(client: pg.PoolClient, files: MigrationFile[]): Promise<MigrationFile | null> {
  let file: MigrationFile | undefined;
  await client.query('BEGIN');
  try {
    // Released by COMMIT or ROLLBACK, or by the server when the connection dies: a crashed
    // migrator cannot leave it held, whichever server connection the pooler gave us.
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    // Under the lock, so that two first migrators do not both create the ledger.
    if (!(await ledgerExists(client))) await ensureLedger(client);
    const rows = (await client.query<AppliedRow>('SELECT version, name, checksum FROM schema_migrations ORDER BY version')).rows;
    checkApplied(rows, files);
    const done = new Set(rows.map((row) => row.version));
    file = files.find((f) => !done.has(f.version));
    if (!file) {
      await client.query('COMMIT');
      return null;
    }
    await client.query(file.sql);
    await client.query('INSERT INTO schema_migrations (version, name, checksum, applied_by) VALUES ($1, $2, $3, $4)', [
      file.version,
      file.name,
      file.checksum,
      userInfo().username,
    ]);
    await client.query('COMMIT');
    return file;
  } catch (error) {
    // A failed COMMIT has already ended the transaction (ROLLBACK then only warns); on a dead
    // connection ROLLBACK fails too, and the pool drops that client when it is released.
    await client.query('ROLLBACK').catch(() => undefined);
    if (error instanceof ExpectedError) throw error;
    if ((error as { code?: string }).code === '42501') {
      throw new ExpectedError(
        `${file ? `Migration sql/${file.file} is pending` : 'Migrations are pending'}, and this database login may not change the schema ` +
          `(${(error as Error).message}). Ask the administrator to run \`run-production db migrate\` with a login that is a member of run_production_owner.`,
        77,
      );
    }
    if (!file) throw error;
    throw new ExpectedError(`Migration sql/${file.file} failed and was rolled back: ${(error as Error).message}`);
  }
}

async function ledgerExists(client: pg.PoolClient): Promise<boolean> {
  return (await client.query<{ present: boolean }>(`SELECT to_regclass('schema_migrations') IS NOT NULL AS present`)).rows[0]!.present;
}

/** The ledger lists every file we ship, unchanged (a changed or unknown one is refused here too). */
async function upToDate(client: pg.PoolClient, files: MigrationFile[]): Promise<boolean> {
  if (!(await ledgerExists(client))) return false;
  const rows = (await client.query<AppliedRow>('SELECT version, name, checksum FROM schema_migrations ORDER BY version')).rows;
  checkApplied(rows, files);
  const done = new Set(rows.map((row) => row.version));
  return files.every((f) => done.has(f.version));
}

/** Schema version of the database (0 when never migrated) and whether our files are ahead of it. */
export async function schemaVersion(pool: pg.Pool): Promise<{ version: number; pending: number; known: number }> {
  const files = await readMigrationFiles();
  const exists = await pool.query<{ present: boolean }>(`SELECT to_regclass('schema_migrations') IS NOT NULL AS present`);
  const applied = exists.rows[0]!.present
    ? (await pool.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version)
    : [];
  const version = applied.length ? Math.max(...applied) : 0;
  const appliedSet = new Set(applied);
  return { version, pending: files.filter((f) => !appliedSet.has(f.version)).length, known: files.at(-1)?.version ?? 0 };
}
