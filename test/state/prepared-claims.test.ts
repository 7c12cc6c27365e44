import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimRuns } from '../../src/state/claim.js';
import { startSession } from '../../src/state/sessions.js';
import { transitionRuns } from '../../src/state/transition.js';
import { openDatabase } from '../../src/db/connection.js';
import { PREPARE_ENV, preparedStatementName } from '../../src/db/prepared.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { seedProduction } from '../helpers/seed.js';

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.drop();
});

const session = (db: typeof database.handle.db, productionId: number, user = 'alice') =>
  startSession(db, { user, host: 'login1', pid: 1, productionId, options: {}, leaseSeconds: 60 });

describe('prepared claims and transitions', () => {
  it('names only marked statements, by their text', () => {
    expect(preparedStatementName('SELECT 1')).toBeNull();
    const a = preparedStatementName('/* prepared */ SELECT 1');
    expect(a).toMatch(/^rp_[0-9a-f]{24}$/);
    expect(preparedStatementName('/* prepared */ SELECT 2')).not.toBe(a);
  });

  it('keeps one generic plan per connection for the claim and the transition after a few runs', async () => {
    const { productionId } = await seedProduction(database.handle.db, { runs: 200, firstRun: 1000 });
    // One connection, so that its prepared statements are the ones we look at.
    const handle = openDatabase(database.url, { applicationName: 'prepared test', max: 1 });
    try {
      const id = await session(handle.db, productionId);
      const actor = { user: 'alice', sessionId: id };
      for (let i = 0; i < 12; i++) {
        // Different limits under one power of two share a statement text.
        const runs = await claimRuns(handle.db, { productionId, parentId: null, session: { id, user: 'alice' }, limit: 5 + (i % 3) });
        expect(runs.length).toBe(5 + (i % 3));
        await transitionRuns(handle.db, { productionId, runs, from: 'claimed', to: 'downloading', owner: id, actor });
      }
      const statements = await sql<{ statement: string; generic_plans: number; custom_plans: number }>`
        SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE name LIKE 'rp\\_%'`.execute(handle.db);
      const claim = statements.rows.filter((s) => s.statement.includes('FOR UPDATE OF r SKIP LOCKED'));
      const move = statements.rows.filter((s) => s.statement.includes('unnest('));
      expect(claim).toHaveLength(1);
      expect(move).toHaveLength(1);
      // The server plans a prepared statement afresh for its first five runs, then keeps the generic plan.
      for (const s of [...claim, ...move]) expect(s.generic_plans).toBeGreaterThan(0);
    } finally {
      await handle.close();
    }
  });

  it('keeps the generic plan for moves of one run too (the loop moves single runs as downloads end)', async () => {
    const { productionId } = await seedProduction(database.handle.db, { runs: 12, firstRun: 1500 });
    const setup = await session(database.handle.db, productionId);
    const runs = await claimRuns(database.handle.db, { productionId, parentId: null, session: { id: setup, user: 'alice' }, limit: 12 });
    const handle = openDatabase(database.url, { applicationName: 'prepared test single', max: 1 });
    try {
      const actor = { user: 'alice', sessionId: setup };
      for (const run of runs) {
        expect(await transitionRuns(handle.db, { productionId, runs: [{ run, stagedPath: `/stage/${run}` }], from: 'claimed', to: 'downloading', owner: setup, actor })).toEqual([run]);
      }
      const [move] = (
        await sql<{ generic_plans: number; custom_plans: number }>`
          SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%unnest(%'`.execute(handle.db)
      ).rows;
      expect(move!.generic_plans).toBe(12 - 5);
      expect(move!.custom_plans).toBe(5);
    } finally {
      await handle.close();
    }
  });

  it('locks no more runs than it claims, so a concurrent claim gets the very next ones', async () => {
    const { productionId } = await seedProduction(database.handle.db, { runs: 10, firstRun: 2000 });
    const first = openDatabase(database.url, { applicationName: 'prepared test A', max: 1 });
    const second = openDatabase(database.url, { applicationName: 'prepared test B', max: 1 });
    try {
      const a = await session(first.db, productionId, 'alice');
      const b = await session(second.db, productionId, 'bob');
      await first.db.transaction().execute(async (tx) => {
        // 3 runs under a bound of 4: the fourth must stay unlocked while this transaction is open.
        expect(await claimRuns(tx, { productionId, parentId: null, session: { id: a, user: 'alice' }, limit: 3 })).toEqual([2000, 2001, 2002]);
        expect(await claimRuns(second.db, { productionId, parentId: null, session: { id: b, user: 'bob' }, limit: 2 })).toEqual([2003, 2004]);
      });
    } finally {
      await first.close();
      await second.close();
    }
  });

  it(`sends statements unnamed with ${PREPARE_ENV}=off (for a pooler in transaction mode)`, async () => {
    const { productionId } = await seedProduction(database.handle.db, { runs: 5, firstRun: 3000 });
    const saved = process.env[PREPARE_ENV];
    process.env[PREPARE_ENV] = 'off';
    const handle = openDatabase(database.url, { applicationName: 'prepared test off', max: 1 });
    try {
      const id = await session(handle.db, productionId);
      expect(await claimRuns(handle.db, { productionId, parentId: null, session: { id, user: 'alice' }, limit: 2 })).toEqual([3000, 3001]);
      const named = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_prepared_statements`.execute(handle.db);
      expect(named.rows[0]!.n).toBe(0);
    } finally {
      if (saved === undefined) delete process.env[PREPARE_ENV];
      else process.env[PREPARE_ENV] = saved;
      await handle.close();
    }
  });
});
