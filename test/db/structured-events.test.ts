import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_REASONS, type EventReason } from '../../src/core/event-reasons.js';
import { migrate, SQL_DIR } from '../../src/db/migrate.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { FINAL_STATUS, LEGACY_EVENTS, type Actor } from './legacy-events.js';

/**
 * sql/010_structured_events.sql on a database that lived before it: migrated to 009, events written
 * there in the messages of that time (test/db/legacy-events.ts), the bookkeeping views read; then
 * migrated in place to 010. The back-fill must give every old event its reason and numbers, and the
 * views, now reading those columns instead of the messages, must answer what they answered before.
 */

let database: TestDatabase;
let legacyDir: string;
const pool = () => database.handle.pool;
const rows = async (text: string, values: unknown[] = []) => (await pool().query(text, values)).rows as Record<string, unknown>[];

/** The views of 002, each read in a fixed order (run_history with the columns it had before 010). */
const VIEWS: Record<string, string> = {
  attempt_outcomes: 'SELECT * FROM attempt_outcomes ORDER BY event_id',
  production_summary: 'SELECT * FROM production_summary ORDER BY production_id, dataset NULLS FIRST',
  run_history: `SELECT event_id, at, production_id, type, version, run_number, dataset, step, kind, from_status, to_status, message,
                       user_name, session_id, session_host FROM run_history ORDER BY event_id`,
  operator_activity: 'SELECT * FROM operator_activity ORDER BY production_id, user_name, session_id NULLS FIRST',
  failed_attempts: 'SELECT * FROM failed_attempts ORDER BY event_id',
  failures: 'SELECT * FROM failures ORDER BY production_id, grouped_by, exit_code NULLS FIRST, host NULLS FIRST, dataset NULLS FIRST',
};

async function readViews(): Promise<Record<string, Record<string, unknown>[]>> {
  const read: Record<string, Record<string, unknown>[]> = {};
  for (const [name, text] of Object.entries(VIEWS)) read[name] = await rows(text);
  return read;
}

/** Views whose definition reads events.message (from the dependencies PostgreSQL records per column). */
async function viewsReadingMessage(): Promise<string[]> {
  const found = await rows(`
    SELECT DISTINCT v.relname::text AS view FROM pg_depend AS d
      JOIN pg_rewrite AS w ON w.oid = d.objid JOIN pg_class AS v ON v.oid = w.ev_class
     WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = 'events'::regclass AND v.oid <> 'events'::regclass
       AND d.refobjsubid = (SELECT attnum FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'message')
     ORDER BY 1`);
  return found.map((r) => r.view as string);
}

/** A catalogue, one production, two sessions, and the legacy events, all in SQL as 009 knew them. */
async function seedAt009(): Promise<{ productionId: number; sessions: Record<Actor, string | null> }> {
  const runs = Object.keys(FINAL_STATUS).map(Number);
  await pool().query(`INSERT INTO runs (run_number, dataset, quality, size_bytes) SELECT g, CASE WHEN g % 2 = 0 THEN 'SiR2' ELSE 'Al50b' END, 'gold', 1024 FROM unnest($1::int[]) AS g`, [runs]);
  const production = await rows(`INSERT INTO productions (type, version, tag, config, created_by) VALUES ('alcapana', 1, 'v1', '{}', 'carol') RETURNING id`);
  const productionId = production[0]!.id as number;
  const attempts: Record<number, number> = { 1: 1, 2: 3, 4: 1, 6: 2, 11: 1 };
  for (const run of runs) {
    const status = FINAL_STATUS[run]!;
    await pool().query(
      `INSERT INTO production_runs (production_id, run_number, dataset, status, attempts, finished_at, output_bytes)
       SELECT $1, run_number, dataset, $2::run_status, $3, CASE WHEN $2 IN ('finished', 'failed') THEN timestamptz '2024-05-01 12:00' + run_number * interval '1 minute' END,
              CASE WHEN $2 = 'finished' THEN 2048 END
         FROM runs WHERE run_number = $4`,
      [productionId, status, attempts[run] ?? 0, run],
    );
  }
  const session = async (user: string, host: string, pid: number) =>
    (await rows(
      `INSERT INTO sessions (user_name, host, pid, production_id, started_at, heartbeat_at, ended_at, end_reason)
       VALUES ($1, $2, $3, $4, '2024-05-01 10:00', '2024-05-01 13:00', '2024-05-01 13:00', 'done') RETURNING id::text AS id`,
      [user, host, pid, productionId],
    ))[0]!.id as string;
  const sessions: Record<Actor, string | null> = { alice: await session('alice', 'ha', 11), bob: await session('bob', 'hb', 12), carol: null };
  for (const e of LEGACY_EVENTS) {
    await pool().query(
      `INSERT INTO events (production_id, run_number, session_id, user_name, from_status, to_status, kind, message)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [e.kind === 'import' ? null : productionId, e.run, sessions[e.by], e.by, e.from, e.to, e.kind, e.message],
    );
  }
  return { productionId, sessions };
}

/** Reasons that return a held run to new without counting an attempt: what operator_activity.runs_rolled_back counts. */
const UNCOUNTED_RETURNS: readonly EventReason[] = ['rolled_back', 'reaped', 'released', 'revoked', 'parent_missing', 'archive_refused'];

beforeAll(async () => {
  database = await createTestDatabase({ migrated: false });
  legacyDir = await mkdtemp(join(tmpdir(), 'rp-sql-009-'));
  for (const name of await readdir(SQL_DIR)) {
    const version = /^(\d+)_/.exec(name)?.[1];
    if (version && Number(version) <= 9) await copyFile(join(SQL_DIR, name), join(legacyDir, name));
  }
});

afterAll(async () => {
  await database?.drop();
  if (legacyDir) await rm(legacyDir, { recursive: true, force: true });
});

describe('migrating a database with events from before 010', () => {
  let before: Record<string, Record<string, unknown>[]>;
  let seeded: Awaited<ReturnType<typeof seedAt009>>;

  beforeAll(async () => {
    expect((await migrate(pool(), { dir: legacyDir + '/' })).version).toBe(9);
    seeded = await seedAt009();
    before = await readViews();
    expect(before.attempt_outcomes!.length).toBeGreaterThan(0);
    // At 009 the views parse the messages.
    expect(await viewsReadingMessage()).toEqual(['attempt_outcomes', 'operator_activity', 'run_history']);
    const result = await migrate(pool());
    expect(result.applied.map((f) => f.version)).toEqual([10]);
  });

  it('gives every old event its reason, attempt, job id, exit code, host and error line from its kind and message', async () => {
    const filled = await rows('SELECT reason, attempt, job_id, exit_code, host, error FROM events ORDER BY id');
    expect(filled).toHaveLength(LEGACY_EVENTS.length);
    filled.forEach((row, i) => expect(row, `${LEGACY_EVENTS[i]!.kind} ${LEGACY_EVENTS[i]!.message}`).toEqual(LEGACY_EVENTS[i]!.expected));
  });

  it('the views answer as before, now from the columns; no view reads a message but run_history, which shows it', async () => {
    const after = await readViews();
    // One answer changes, on purpose: a download that failed with the same wrong bytes every try is
    // a counted attempt, which 002's pattern for "rolled back" (not 'attempt N/M failed', not 'input
    // missing: ') counted as a roll-back against its own column comment ("without an attempt counted").
    const countedDownloads = (user: Actor) => LEGACY_EVENTS.filter((e) => e.by === user && e.expected.reason === 'download_failed' && e.to === 'new').length;
    expect(countedDownloads('alice')).toBe(1);
    const fixed = before.operator_activity!.map((row) => ({ ...row, runs_rolled_back: (row.runs_rolled_back as number) - countedDownloads(row.user_name as Actor) }));
    expect(after).toEqual({ ...before, operator_activity: fixed });
    for (const user of ['alice', 'bob'] as const) {
      const expected = LEGACY_EVENTS.filter((e) => e.by === user && e.kind === 'transition' && UNCOUNTED_RETURNS.includes(e.expected.reason)).length;
      const row = after.operator_activity!.find((r) => r.session_id === seeded.sessions[user])!;
      expect(row.runs_rolled_back, user).toBe(expected);
    }
    expect(await viewsReadingMessage()).toEqual(['run_history']);
    const history = await rows('SELECT reason, attempt, job_id FROM run_history WHERE run_number = 2 ORDER BY event_id');
    expect(history.map((r) => r.reason)).toEqual(LEGACY_EVENTS.filter((e) => e.run === 2).map((e) => e.expected.reason));
  });

  it('knows exactly the codes of EVENT_REASONS, refuses any other, and the log stays append-only', async () => {
    const codes = await rows('SELECT code FROM event_reasons ORDER BY code');
    expect(codes.map((r) => r.code)).toEqual([...EVENT_REASONS].sort());
    const client: pg.PoolClient = await pool().connect();
    try {
      await client.query('BEGIN');
      // Every code is accepted (rolled back: the log cannot be cleaned up afterwards).
      await client.query(`INSERT INTO events (user_name, kind, reason) SELECT 'x', 'note', unnest($1::text[])`, [[...EVENT_REASONS]]);
      await client.query('ROLLBACK');
      const unknown = await client.query(`INSERT INTO events (user_name, kind, reason) VALUES ('x', 'note', 'bogus')`).catch((e: pg.DatabaseError) => e);
      expect((unknown as pg.DatabaseError).code).toBe('23514');
      const missing = await client.query(`INSERT INTO events (user_name, kind) VALUES ('x', 'note')`).catch((e: pg.DatabaseError) => e);
      expect((missing as pg.DatabaseError).code).toBe('23502');
      const rewrite = await client.query(`UPDATE events SET reason = 'other'`).catch((e: pg.DatabaseError) => e);
      expect((rewrite as pg.DatabaseError).message).toMatch(/events is append-only/);
    } finally {
      client.release();
    }
  });

  it('comments every new column and the new table', async () => {
    const uncommented = await rows(`
      SELECT c.relname::text || '.' || a.attname::text AS name FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
       WHERE c.relname IN ('events', 'event_reasons', 'run_history', 'attempt_outcomes', 'operator_activity') AND a.attnum > 0 AND NOT a.attisdropped
         AND col_description(c.oid, a.attnum) IS NULL`);
    expect(uncommented).toEqual([]);
    expect((await rows(`SELECT obj_description('event_reasons'::regclass, 'pg_class') AS d`))[0]!.d).toMatch(/codes of events.reason/);
  });

  it('grants the new columns to those who write events, and the codes to every reader', async () => {
    const grants = await rows(`
      SELECT has_column_privilege('run_production_shifter', 'events', c, 'INSERT') AS insert_ok,
             has_column_privilege('run_production_reader', 'events', c, 'INSERT') AS reader_insert
        FROM unnest(ARRAY['reason', 'attempt', 'job_id', 'exit_code', 'host', 'error']) AS c`);
    expect(grants.every((g) => g.insert_ok === true && g.reader_insert === false)).toBe(true);
    expect((await rows(`SELECT has_table_privilege('run_production_reader', 'event_reasons', 'SELECT') AS ok`))[0]!.ok).toBe(true);
  });
});
