import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDatabaseUnavailable, openDatabase, type DatabaseHandle } from '../../src/db/connection.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

/**
 * A database restart terminates every backend (57P01). A client the pool had handed out but that is
 * between two statements (inside a transaction, while its caller does file work) used to emit
 * 'error' with nobody listening: an uncaught exception, and the session aborted itself in the middle
 * of an outage it should have ridden out (seen in the chaos test). Here the server really terminates
 * such a client's backend.
 */

let database: TestDatabase;
let handle: DatabaseHandle;
const idleErrors: Error[] = [];
const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);

beforeAll(async () => {
  database = await createTestDatabase();
  handle = openDatabase(database.url, { onIdleError: (error) => idleErrors.push(error) });
  process.on('uncaughtException', onUncaught);
});

afterAll(async () => {
  process.off('uncaughtException', onUncaught);
  await handle.close();
  await database.drop();
});

describe('a connection the server drops while it is checked out', () => {
  it('is no uncaught exception: its next query fails as an outage, and the pool goes on', async () => {
    const client = await handle.pool.connect();
    await client.query('BEGIN');
    const { pid } = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!;
    await database.handle.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(uncaught).toEqual([]);
    expect(idleErrors.map((e) => e.message).join()).toMatch(/terminating connection due to administrator command/);
    const failed = await client.query('SELECT 1').then(() => null, (error: unknown) => error);
    expect(isDatabaseUnavailable(failed)).toBe(true);
    client.release(failed as Error);
    expect((await handle.pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one).toBe(1);
  });
});
