import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { ExpectedError } from '../cli/errors.js';

/**
 * Our own small runner for the numbered plain-SQL migrations in sql/ (Kysely's
 * FileMigrationProvider only loads JS/TS). Each file is applied in its own
 * transaction under a cluster-wide advisory lock, and recorded with a checksum
 * so that an applied file that was edited afterwards is noticed and refused.
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
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await ensureLedger(client);
      const applied = (await client.query<AppliedRow>('SELECT version, name, checksum FROM schema_migrations ORDER BY version')).rows;
      checkApplied(applied, files);
      const done = new Set(applied.map((row) => row.version));
      const pending = files.filter((file) => !done.has(file.version));
      for (const file of pending) {
        await client.query('BEGIN');
        try {
          await client.query(file.sql);
          await client.query('INSERT INTO schema_migrations (version, name, checksum, applied_by) VALUES ($1, $2, $3, $4)', [
            file.version,
            file.name,
            file.checksum,
            userInfo().username,
          ]);
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK');
          throw new ExpectedError(`Migration sql/${file.file} failed and was rolled back: ${(error as Error).message}`);
        }
      }
      return { applied: pending, version: files.at(-1)?.version ?? 0 };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } finally {
    client.release();
  }
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
