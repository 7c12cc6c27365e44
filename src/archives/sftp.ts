/**
 * The `sftp://[user@]host[:port]/path` archive: what src/archives/index.ts
 * creates. The parts, one concern a file, are in sftp/:
 *   pool.ts        a few connections reused across downloads, one operation each at a time
 *   connection.ts  one SSH connection and how it is seen to drop
 *   guard.ts       one operation raced against abort, stall and a dead connection
 *   connect.ts     credentials, host key check and login for one new connection
 *   auth.ts        the order of login attempts (password, key, agent)
 *   retry.ts       retrying transient failures with exponential backoff
 *   download.ts    reading a file with several requests in flight
 *   errors.ts      what the loop can act on: MissingInput, ArchiveAuth (with advice) or transient
 *   url.ts         remote path, endpoint and host label of a URL
 * Credentials are in credentials.ts and netrc.ts, host keys in known-hosts.ts.
 */
import { rm } from 'node:fs/promises';
import type { Stats } from 'ssh2';
import type { Archive, FetchRequest, FetchResult } from './archive.js';
import { connect } from './sftp/connect.js';
import type { ConnectSettings } from './sftp/connect.js';
import { call } from './sftp/connection.js';
import { download } from './sftp/download.js';
import { mapOperationError } from './sftp/errors.js';
import { guarded } from './sftp/guard.js';
import { ConnectionPool } from './sftp/pool.js';
import { hostLabel, remotePath } from './sftp/url.js';

export interface SftpArchiveOptions {
  /** Connections (and so concurrent downloads) at most. Default 2. */
  parallel?: number;
  /** Connect, stat, and "no progress" limit for a transfer. Default 60. */
  operationTimeoutSeconds?: number;
  /** Environment for credentials; default process.env. */
  env?: Record<string, string | undefined>;
  netrcPath?: string;
  knownHostsPath?: string;
  onLog?: (line: string) => void;
}

export function createSftpArchive(options: SftpArchiveOptions = {}): Archive {
  const parallel = options.parallel ?? 2;
  if (!Number.isInteger(parallel) || parallel < 1) throw new RangeError(`parallel must be a positive integer, not ${parallel}`);
  const timeoutSeconds = options.operationTimeoutSeconds ?? 60;
  if (!(timeoutSeconds > 0)) throw new RangeError(`operationTimeoutSeconds must be positive, not ${timeoutSeconds}`);
  const timeoutMs = timeoutSeconds * 1000;
  const settings: ConnectSettings = {
    env: options.env ?? process.env,
    netrcPath: options.netrcPath,
    knownHostsPath: options.knownHostsPath,
    timeoutMs,
    log: options.onLog ?? (() => {}),
  };
  const pool = new ConnectionPool(parallel, (url, signal, onDrop) => connect(url, signal, settings, onDrop));

  return {
    scheme: 'sftp',
    parallel,

    async size(url, signal) {
      const path = remotePath(url);
      return pool
        .use(url, signal, (connection) =>
          guarded(connection, signal, timeoutMs, `stat of ${path} on ${connection.label}`, async (guard) =>
            (await guard.race(call<Stats>((done) => connection.sftp.stat(path, done)))).size,
          ),
        )
        .catch((error: unknown) => {
          throw mapOperationError(error, `${path} on ${hostLabel(url)}`);
        });
    },

    async fetch(request: FetchRequest): Promise<FetchResult> {
      const path = remotePath(request.url);
      try {
        const bytes = await pool.use(request.url, request.signal, (connection) => download(connection, path, request, timeoutMs));
        return { bytes };
      } catch (error) {
        // The loop only ever renames a verified file; a partial one must not linger.
        await rm(request.destination, { force: true }).catch(() => {});
        throw mapOperationError(error, `${path} on ${hostLabel(request.url)} (run ${request.run})`);
      }
    },

    close: () => pool.close(),
  };
}
