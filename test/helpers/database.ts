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

/** A fresh, migrated database of its own on the test run's real PostgreSQL server. */
export async function createTestDatabase(options: { migrated?: boolean } = {}): Promise<TestDatabase> {
  const scratch = await createScratchDatabase(inject('adminDatabaseUrl'), 'rp_test');
  const handle = openDatabase(scratch.url, { applicationName: 'run-production-test', max: 20 });
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
