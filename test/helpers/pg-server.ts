import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureEmbeddedServer, freeLocalPort, serverAnswers, stopEmbeddedServer } from '../../src/db/embedded.js';
import { createTestDatabase, type TestDatabase } from './database.js';

/**
 * A PostgreSQL server of a test's own, for tests that stop and restart the database under running
 * sessions: the test run's shared server (test/setup/global-database.ts) serves every other test
 * file and must never be stopped. It is an embedded server (src/db/embedded.ts) in a temporary
 * RUN_PRODUCTION_HOME on a free port, started with ensureEmbeddedServer and stopped with
 * stopEmbeddedServer, which is a fast shutdown: connected sessions lose their connections at once,
 * as when a DBA restarts the server or it crashes.
 */
export interface PrivateServer {
  /** The environment that names this server to ensureEmbeddedServer / stopEmbeddedServer. */
  env: NodeJS.ProcessEnv;
  /** Its port on 127.0.0.1. */
  port: number;
  /** A fresh, migrated database on this server, with a handle for the test's own queries. */
  createDatabase(): Promise<TestDatabase>;
  /** Stops the server; resolves once it no longer accepts connections. */
  stop(): Promise<void>;
  /** Starts it again (same data, same port). */
  start(): Promise<void>;
  /** Stops it (if running) and deletes its files. */
  destroy(): Promise<void>;
}

export async function startPrivateServer(): Promise<PrivateServer> {
  const home = await mkdtemp(join(tmpdir(), 'rp-private-pg-'));
  const env = { ...process.env, RUN_PRODUCTION_HOME: home, RUN_PRODUCTION_PGPORT: String(await freeLocalPort()) };
  const url = await ensureEmbeddedServer(env);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const adminUrl = admin.toString();
  return {
    env,
    port: Number(env.RUN_PRODUCTION_PGPORT),
    // Errors of idle connections while the server is down are expected: the pool drops them.
    createDatabase: () => createTestDatabase({ serverUrl: adminUrl, max: 10, onIdleError: () => undefined }),
    async stop() {
      if (!(await stopEmbeddedServer(env))) throw new Error(`pg_ctl stop failed for the private server in ${home}`);
      if (await serverAnswers(adminUrl)) throw new Error(`the private server in ${home} still answers after pg_ctl stop`);
    },
    async start() {
      await ensureEmbeddedServer(env);
    },
    async destroy() {
      await stopEmbeddedServer(env);
      await rm(home, { recursive: true, force: true });
    },
  };
}

/**
 * A TCP relay to a server on 127.0.0.1, for a session whose network comes back later than the
 * database: `cut` drops every relayed connection and refuses new ones (ECONNREFUSED), `restore`
 * accepts them again on the same port.
 */
export interface Relay {
  port: number;
  /** The same database URL, through the relay. */
  urlFor(databaseUrl: string): string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  /**
   * The first time a session sends a message containing `text` (a query's SQL, say), cut before it
   * reaches the server and restore `downForMs` later: an outage at one exact point of a session's
   * life, which a test watching the session's output could never hit in time.
   */
  cutWhen(text: string, downForMs: number): Promise<void>;
}

export async function startRelay(targetPort: number): Promise<Relay> {
  const port = await freeLocalPort();
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let trigger: { text: string; downForMs: number; struck: () => void } | null = null;
  /** The restore a cutWhen scheduled; a cut by the test (its clean-up, say) cancels it. */
  let pendingRestore: NodeJS.Timeout | null = null;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const relay = createServer((client) => {
        const upstream = connect(targetPort, '127.0.0.1');
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        for (const socket of [client, upstream]) {
          sockets.add(socket);
          socket.on('error', drop);
          socket.on('close', drop);
        }
        client.on('data', (chunk: Buffer) => {
          const armed = trigger;
          if (armed && chunk.includes(armed.text)) {
            trigger = null;
            void dropAll().then(() => (pendingRestore = setTimeout(() => void restore().then(armed.struck), armed.downForMs)));
            return;
          }
          upstream.write(chunk);
        });
        upstream.pipe(client);
      });
      relay.once('error', reject);
      relay.listen(port, '127.0.0.1', () => {
        server = relay;
        resolve();
      });
    });
  /** Every relayed connection dropped, new ones refused. */
  const dropAll = async () => {
    const relay = server;
    server = null;
    for (const socket of [...sockets]) socket.destroy();
    sockets.clear();
    if (relay) await new Promise<void>((resolve) => relay.close(() => resolve()));
  };
  const restore = async () => {
    pendingRestore = null;
    if (!server) await listen();
  };
  await listen();
  return {
    port,
    urlFor(databaseUrl) {
      const url = new URL(databaseUrl);
      url.port = String(port);
      return url.toString();
    },
    async cut() {
      if (pendingRestore) clearTimeout(pendingRestore);
      pendingRestore = null;
      await dropAll();
    },
    restore,
    cutWhen(text, downForMs) {
      return new Promise<void>((struck) => (trigger = { text, downForMs, struck }));
    },
  };
}
