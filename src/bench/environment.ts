import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureEmbeddedServer, freeLocalPort, stopEmbeddedServer } from '../db/embedded.js';
import { createScratchDatabase } from '../db/scratch.js';

/**
 * The bench's database: by default a fresh embedded PostgreSQL in a temporary
 * RUN_PRODUCTION_HOME on a free port (so it never touches a shifter's own
 * embedded server), stopped and deleted afterwards; with --database URL, a
 * database of its own created on that server and dropped afterwards.
 */
export interface BenchDatabase {
  url: string;
  kind: 'embedded' | 'server';
  dispose(): Promise<void>;
}

export async function openBenchDatabase(serverUrl: string | undefined): Promise<BenchDatabase> {
  if (!serverUrl) {
    const home = await mkdtemp(join(tmpdir(), 'rp-bench-'));
    const env = { ...process.env, RUN_PRODUCTION_HOME: home, RUN_PRODUCTION_PGPORT: String(await freeLocalPort()) };
    const url = await ensureEmbeddedServer(env);
    return {
      url,
      kind: 'embedded',
      async dispose() {
        await stopEmbeddedServer(env);
        await rm(home, { recursive: true, force: true });
      },
    };
  }
  const scratch = await createScratchDatabase(serverUrl, 'rp_bench');
  return { url: scratch.url, kind: 'server', dispose: scratch.drop };
}
