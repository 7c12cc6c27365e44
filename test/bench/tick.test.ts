import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { seedProduction } from '../../src/bench/seed.js';
import { tick } from '../../src/bench/tick.js';
import { startSession } from '../../src/state/sessions.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

/**
 * The bench's figures are only worth reading if its pass is the loop's: this drives the bench's
 * pass (the loop's plan, moves and judgement recording) over the bench's own seeded production and
 * checks that it does a production's work, every run finished once, as a session would.
 */

let database: TestDatabase | null = null;
afterEach(async () => {
  await database?.drop();
  database = null;
});

describe('the bench pass', () => {
  it('takes a bench production from new to finished, each run once, through the loop\'s own functions', async () => {
    database = await createTestDatabase();
    const { db } = database.handle;
    const RUNS = 60;
    const productionId = await seedProduction(db, 500_000, RUNS);
    const sessionId = await startSession(db, { user: 'bench', host: 'test', pid: process.pid, productionId, options: {}, leaseSeconds: 600 });
    const session = { db, productionId, actor: { user: 'bench', sessionId }, nproc: 10, nprep: 5 };
    let finished = 0;
    for (let pass = 0; pass < 40 && finished < RUNS; pass++) finished += await tick(session);
    expect(finished).toBe(RUNS);
    const statuses = await sql<{ status: string; n: number }>`
      SELECT status::text, count(*)::int AS n FROM production_runs WHERE production_id = ${productionId} GROUP BY 1`.execute(db);
    expect(statuses.rows).toEqual([{ status: 'finished', n: RUNS }]);
    const finishes = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM events WHERE production_id = ${productionId} AND to_status = 'finished' AND reason = 'finished'`.execute(db);
    expect(finishes.rows[0]!.n).toBe(RUNS);
    const held = await sql<{ n: number }>`SELECT count(*)::int AS n FROM production_runs WHERE session_id IS NOT NULL`.execute(db);
    expect(held.rows[0]!.n).toBe(0);
  });
});
