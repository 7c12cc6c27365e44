import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ensureEmbeddedServer, freeLocalPort, stopEmbeddedServer } from '../db/embedded.js';

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
  // A name we make up ourselves: safe to splice as an identifier (CREATE DATABASE takes no parameters).
  const name = `rp_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    kind: 'server',
    async dispose() {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}
