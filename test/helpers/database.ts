import { inject } from 'vitest';
import { openDatabase, type DatabaseHandle } from '../../src/db/connection.js';
import { migrate } from '../../src/db/migrate.js';
import { createScratchDatabase } from '../../src/db/scratch.js';

export interface TestDatabase {
  url: string;
  handle: DatabaseHandle;
  /** Closes the connections and drops the database. */
  drop(): Promise<void>;
}

/**
 * A fresh, migrated database of its own on the test run's real PostgreSQL server, or on another
 * server (`serverUrl`: a test's private one, which it stops and starts).
 */
export async function createTestDatabase(
  options: { migrated?: boolean; serverUrl?: string; max?: number; onIdleError?: (error: Error) => void } = {},
): Promise<TestDatabase> {
  const scratch = await createScratchDatabase(options.serverUrl ?? inject('adminDatabaseUrl'), 'rp_test');
  const handle = openDatabase(scratch.url, { applicationName: 'run-production-test', max: options.max ?? 20, onIdleError: options.onIdleError });
  if (options.migrated !== false) await migrate(handle.pool);
  return {
    url: scratch.url,
    handle,
    async drop() {
      await handle.close();
      await scratch.drop();
    },
  };
}
