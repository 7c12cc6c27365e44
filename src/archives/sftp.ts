/**
 * The `sftp://[user@]host[:port]/path` archive.
 *
 * Opening an SSH connection costs a handshake and a login, and an archive
 * host may rate-limit them, so a session keeps a small pool of connections
 * (at most `parallel`) and reuses them across downloads. ssh2-sftp-client does
 * not serialise operations nor reconnect, so the pool does: a connection
 * carries one operation at a time, and one that dropped, stalled or was
 * interrupted is thrown away and replaced (with backoff) on the next request.
 *
 * Errors are mapped to what the loop can act on: MissingInputError (the file
 * is not there), ArchiveAuthError (the shifter must fix credentials or
 * known_hosts; never contains a secret) and ArchiveTransientError (retry).
 */
import { rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { AnyAuthMethod, AuthHandlerMiddleware, AuthenticationType, Client, ConnectConfig, SFTPWrapper, Stats } from 'ssh2';
import SftpClient from 'ssh2-sftp-client';
import { ArchiveAuthError, ArchiveTransientError, MissingInputError } from './archive.js';
import type { Archive, FetchRequest, FetchResult } from './archive.js';
import { CredentialsError, ENV_KEY, ENV_PASSWORD, ENV_STRICT_HOST_KEY, describeCredentials, resolveSftpCredentials } from './credentials.js';
import type { AuthMethod, SftpCredentials, SftpEnv } from './credentials.js';
import { KnownHostsError, hostKeyFingerprint, hostKeyType as keyType } from './known-hosts.js';
import type { HostKeyVerdict } from './known-hosts.js';
import { createStagingFile } from './file.js';
import { NetrcError } from './netrc.js';

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

/** How often progress is reported at most: "a few times a second". */
const PROGRESS_INTERVAL_MS = 250;
/** Connect attempts per request before giving up with ArchiveTransientError. */
const CONNECT_ATTEMPTS = 4;
const CONNECT_BACKOFF_MS = 500;
/** Read requests in flight per download, and their size: 2 MiB in flight, enough for a long link. */
const READS_IN_FLIGHT = 32;
const CHUNK_BYTES = 64 * 1024;
/** SFTP status codes SSH_FX_EOF and SSH_FX_NO_SUCH_FILE. */
const SFTP_EOF = 1;
const SFTP_NO_SUCH_FILE = 2;

export function createSftpArchive(options: SftpArchiveOptions = {}): Archive {
  const parallel = options.parallel ?? 2;
  if (!Number.isInteger(parallel) || parallel < 1) throw new RangeError(`parallel must be a positive integer, not ${parallel}`);
  const timeoutSeconds = options.operationTimeoutSeconds ?? 60;
  if (!(timeoutSeconds > 0)) throw new RangeError(`operationTimeoutSeconds must be positive, not ${timeoutSeconds}`);
  const timeoutMs = timeoutSeconds * 1000;
  const log = options.onLog ?? (() => {});
  const settings: ConnectSettings = {
    env: options.env ?? process.env,
    netrcPath: options.netrcPath,
    knownHostsPath: options.knownHostsPath,
    timeoutMs,
    log,
  };
  const pool = new ConnectionPool(parallel, (url, signal, onDrop) => connect(url, signal, settings, onDrop));

  return {
    scheme: 'sftp',
    parallel,

    async size(url, signal) {
      const path = remotePath(url);
      return pool
        .use(url, signal, async (connection) => {
          const guard = new Guard(connection, signal, timeoutMs, `stat of ${path} on ${connection.label}`);
          try {
            return (await guard.race(call<Stats>((done) => connection.sftp.stat(path, done)))).size;
          } finally {
            guard.dispose();
          }
        })
        .catch((error: unknown) => {
          throw mapOperationError(error, `${path} on ${hostLabel(url)}`);
        });
    },

    async fetch(request: FetchRequest): Promise<FetchResult> {
      const path = remotePath(request.url);
      try {
        const bytes = await pool.use(request.url, request.signal, (connection) =>
          download(connection, path, request, timeoutMs),
        );
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

/* ------------------------------------------------------------------------ */
/* One connection                                                           */
/* ------------------------------------------------------------------------ */

type Callback<T> = (error: Error | null | undefined, value: T) => void;

/** Wraps one callback-style ssh2 request in a promise. */
function call<T>(start: (done: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start((error, value) => (error ? reject(error) : resolve(value))));
}

class Connection {
  /** False once the connection dropped or was killed: never reuse it then. */
  alive = true;
  private readonly closeListeners = new Set<(reason: Error) => void>();

  constructor(
    readonly key: string,
    readonly label: string,
    private readonly client: SftpClient,
    private readonly ssh: Client,
    readonly sftp: SFTPWrapper,
    onDrop: DropListener,
  ) {
    const dropped = (reason: string) => () => {
      if (!this.alive) return;
      this.alive = false;
      onDrop(this, reason);
      this.notify(new ArchiveTransientError(`connection to ${label} lost (${reason})`));
    };
    ssh.on('close', dropped('connection closed'));
    sftp.on('close', dropped('sftp channel closed'));
    // An SFTP protocol error is emitted on the channel; unhandled, it would
    // crash the whole session.
    sftp.on('error', (error: Error) => dropped(`sftp error: ${error.message}`)());
  }

  /** Calls `listener` once when the connection becomes unusable; returns an unsubscribe. */
  onClose(listener: (reason: Error) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Tear the connection down now: whatever is in flight on it fails, nothing is reused. */
  kill(reason: Error): void {
    const wasAlive = this.alive;
    this.alive = false;
    this.ssh.destroy();
    if (wasAlive) this.notify(reason);
  }

  async end(): Promise<void> {
    if (!this.alive) return;
    this.alive = false;
    // A polite goodbye, but never let a dead peer hold close() up.
    const timer = setTimeout(() => this.ssh.destroy(), 2_000);
    try {
      await this.client.end();
    } catch {
      this.ssh.destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  private notify(reason: Error): void {
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    for (const listener of listeners) listener(reason);
  }
}

/**
 * Watches one operation on a connection. ssh2 can leave a request unanswered
 * forever when its connection dies (it then re-sends a CLOSE nobody answers),
 * so every request is raced against `stopped`, which rejects on the first of:
 * the caller's abort, no activity for the timeout, or the connection closing.
 * Abort and timeout kill the connection, since requests may still be in flight.
 */
class Guard {
  private readonly stopped: Promise<never>;
  private stop!: (reason: Error) => void;
  private lastActivity = Date.now();
  private readonly watchdog: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  private readonly onAbort: () => void;

  constructor(
    connection: Connection,
    private readonly signal: AbortSignal,
    timeoutMs: number,
    what: string,
  ) {
    this.stopped = new Promise<never>((_resolve, reject) => {
      this.stop = reject;
    });
    this.stopped.catch(() => {}); // observed through race(); not an unhandled rejection otherwise
    this.unsubscribe = connection.onClose((reason) => this.stop(reason));
    this.onAbort = () => connection.kill(abortError(signal, what));
    this.watchdog = setInterval(
      () => {
        if (Date.now() - this.lastActivity > timeoutMs) {
          connection.kill(new ArchiveTransientError(`${what} stalled: nothing happened for ${timeoutMs / 1000} s`));
        }
      },
      Math.min(1_000, timeoutMs / 4),
    );
    if (signal.aborted) this.onAbort();
    else signal.addEventListener('abort', this.onAbort, { once: true });
    if (!connection.alive) this.stop(new ArchiveTransientError(`connection to ${connection.label} is closed`));
  }

  race<T>(operation: Promise<T>): Promise<T> {
    return Promise.race([operation, this.stopped]);
  }

  /** Progress was made: restart the "no activity" clock. */
  touch(): void {
    this.lastActivity = Date.now();
  }

  dispose(): void {
    clearInterval(this.watchdog);
    this.unsubscribe();
    this.signal.removeEventListener('abort', this.onAbort);
  }
}

/* ------------------------------------------------------------------------ */
/* Pool                                                                     */
/* ------------------------------------------------------------------------ */

type DropListener = (connection: Connection, reason: string) => void;

class ConnectionPool {
  private readonly idle: Connection[] = [];
  /** Connections in use plus connections being opened. */
  private taken = 0;
  private waiters: Array<() => void> = [];
  private closed = false;
  /** Aborts connection attempts still under way when the archive is closed. */
  private readonly closing = new AbortController();
  private readonly all = new Set<Connection>();

  constructor(
    private readonly limit: number,
    private readonly open: (url: URL, signal: AbortSignal, onDrop: DropListener) => Promise<Connection>,
  ) {}

  /** Runs `operation` on a connection of its own; the connection returns to the pool only if still healthy. */
  async use<T>(url: URL, signal: AbortSignal, operation: (connection: Connection) => Promise<T>): Promise<T> {
    const connection = await this.acquire(url, signal);
    try {
      return await operation(connection);
    } finally {
      this.release(connection);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort(new ArchiveTransientError('the SFTP archive is closed'));
    this.wake();
    const closing: Promise<void>[] = [];
    for (const connection of this.all) {
      if (this.idle.includes(connection)) closing.push(connection.end());
      else connection.kill(new ArchiveTransientError('the SFTP archive was closed during the operation'));
    }
    this.idle.length = 0;
    this.all.clear();
    await Promise.all(closing);
  }

  private async acquire(url: URL, signal: AbortSignal): Promise<Connection> {
    const key = endpointKey(url);
    for (;;) {
      if (this.closed) throw new ArchiveTransientError('the SFTP archive is closed');
      if (signal.aborted) throw abortError(signal, `waiting for a connection to ${hostLabel(url)}`);
      const reusable = this.idle.findIndex((connection) => connection.key === key && connection.alive);
      if (reusable !== -1) {
        const [connection] = this.idle.splice(reusable, 1);
        this.taken++;
        return connection!;
      }
      if (this.taken + this.idle.length >= this.limit && this.idle.length > 0) {
        // At the limit with an idle connection to another host: make room.
        void this.forget(this.idle.shift()!).end();
      }
      if (this.taken + this.idle.length < this.limit) {
        this.taken++;
        try {
          const connection = await this.open(url, AbortSignal.any([signal, this.closing.signal]), (dropped) => this.onDrop(dropped));
          if (this.closed) {
            connection.kill(new ArchiveTransientError('the SFTP archive is closed'));
            throw new ArchiveTransientError('the SFTP archive is closed');
          }
          this.all.add(connection);
          return connection;
        } catch (error) {
          this.taken--;
          this.wake();
          throw error;
        }
      }
      await this.waitForSlot(signal);
    }
  }

  private release(connection: Connection): void {
    this.taken--;
    if (connection.alive && !this.closed) this.idle.push(connection);
    else this.forget(connection);
    this.wake();
  }

  private onDrop(connection: Connection): void {
    // An idle connection the server closed (idle timeout, restart): drop it
    // now so the next request opens a fresh one instead of failing.
    const index = this.idle.indexOf(connection);
    if (index !== -1) {
      this.idle.splice(index, 1);
      this.forget(connection);
      this.wake();
    }
  }

  private forget(connection: Connection): Connection {
    this.all.delete(connection);
    return connection;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private waitForSlot(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.push(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/* ------------------------------------------------------------------------ */
/* Connecting                                                               */
/* ------------------------------------------------------------------------ */

interface ConnectSettings {
  env: SftpEnv;
  netrcPath: string | undefined;
  knownHostsPath: string | undefined;
  timeoutMs: number;
  log: (line: string) => void;
}

let connectionCounter = 0;

/** Opens a connection, retrying transient failures with exponential backoff. */
async function connect(
  url: URL,
  signal: AbortSignal,
  settings: ConnectSettings,
  onDrop: DropListener,
): Promise<Connection> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connectOnce(url, signal, settings, onDrop);
    } catch (error) {
      if (!(error instanceof ArchiveTransientError) || signal.aborted || attempt >= CONNECT_ATTEMPTS) throw error;
      const delay = CONNECT_BACKOFF_MS * 2 ** (attempt - 1);
      settings.log(`sftp: connecting to ${hostLabel(url)} failed (${error.message}); attempt ${attempt + 1} of ${CONNECT_ATTEMPTS} in ${delay / 1000} s`);
      await sleep(delay, signal);
    }
  }
}

async function connectOnce(
  url: URL,
  signal: AbortSignal,
  settings: ConnectSettings,
  onDrop: DropListener,
): Promise<Connection> {
  let credentials: SftpCredentials;
  try {
    // Read on every connect, so a fixed .netrc or known_hosts takes effect
    // without restarting the session.
    credentials = await resolveSftpCredentials(url, {
      env: settings.env,
      ...(settings.netrcPath !== undefined ? { netrcPath: settings.netrcPath } : {}),
      ...(settings.knownHostsPath !== undefined ? { knownHostsPath: settings.knownHostsPath } : {}),
    });
  } catch (error) {
    if (error instanceof NetrcError || error instanceof KnownHostsError || error instanceof CredentialsError) {
      throw new ArchiveAuthError(`cannot log in to ${hostLabel(url)}: ${error.message}`, { cause: error });
    }
    throw error;
  }

  const id = ++connectionCounter;
  const label = `${credentials.username}@${credentials.hostKeys.name}`;
  const policy = credentials.hostKeys;
  let presented: { key: Buffer; verdict: HostKeyVerdict } | undefined;

  const client = new SftpClient(`run-production-${id}`, {
    // ssh2-sftp-client's defaults print to the console; route to the session log.
    error: (error) => settings.log(`sftp: ${label}: ${error instanceof Error ? error.message : String(error)}`),
    end: () => {},
    close: () => {},
  });
  const ssh = (client as unknown as { client: Client }).client;

  const config: ConnectConfig = {
    host: credentials.host,
    port: credentials.port,
    username: credentials.username,
    readyTimeout: settings.timeoutMs,
    // Notice a silently dead peer between downloads rather than mid-transfer.
    keepaliveInterval: 15_000,
    keepaliveCountMax: 4,
    authHandler: authSequence(credentials),
    hostVerifier: (key: Buffer): boolean => {
      const verdict = policy.verify(key);
      presented = { key, verdict };
      if (verdict.kind === 'match') return true;
      if (verdict.kind === 'revoked' || policy.strict) return false;
      settings.log(
        `sftp: WARNING: accepting ${verdict.kind === 'mismatch' ? 'a CHANGED' : 'an unknown'} host key ` +
          `${keyType(key)} ${hostKeyFingerprint(key)} for ${policy.name} because ${ENV_STRICT_HOST_KEY}=no`,
      );
      return true;
    },
    ...(policy.algorithms ? { algorithms: { serverHostKey: policy.algorithms as never } } : {}),
  };

  const timeout = new ArchiveTransientError(`connecting to ${label} timed out after ${settings.timeoutMs / 1000} s`);
  let interrupted: Error | undefined;
  const interrupt = (error: Error) => {
    interrupted ??= error;
    ssh.destroy();
  };
  // readyTimeout covers the handshake and login, not opening the sftp channel.
  const timer = setTimeout(() => interrupt(timeout), settings.timeoutMs);
  const onAbort = () => interrupt(abortError(signal, `connecting to ${label}`));
  signal.addEventListener('abort', onAbort, { once: true });
  if (signal.aborted) onAbort();
  try {
    const sftp = await client.connect(config);
    if (interrupted) throw interrupted;
    const connection = new Connection(endpointKey(url), label, client, ssh, sftp, (dropped, reason) => {
      settings.log(`sftp: ${label}: ${reason}`);
      onDrop(dropped, reason);
    });
    settings.log(`sftp: connected to ${describeCredentials(credentials)}`);
    return connection;
  } catch (error) {
    ssh.destroy();
    if (interrupted) throw interrupted;
    throw connectError(error, credentials, presented);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Password first when one is configured (netrc, then env), then the key, then
 * the agent. A password is also answered over keyboard-interactive, which is
 * how PAM-based servers often ask for it.
 */
function authSequence(credentials: SftpCredentials): AuthHandlerMiddleware {
  const username = credentials.username;
  const attempts = credentials.methods.flatMap((method: AuthMethod): AnyAuthMethod[] => {
    switch (method.kind) {
      case 'password':
        return [
          { type: 'password', username, password: method.password.reveal() },
          {
            type: 'keyboard-interactive',
            username,
            prompt: (_name, _instructions, _lang, prompts, finish) => finish(prompts.map(() => method.password.reveal())),
          },
        ];
      case 'key':
        return [{ type: 'publickey', username, key: method.key.reveal(), ...(method.passphrase ? { passphrase: method.passphrase.reveal() } : {}) }];
      case 'agent':
        return [{ type: 'agent', username, agent: method.socket }];
    }
  });
  let next = 0;
  let first = true;
  return (authsLeft, _partialSuccess, callback) => {
    if (first) {
      // Ask with `none` first: the server's answer lists the methods it accepts,
      // so we do not burn MaxAuthTries on methods it would refuse anyway.
      first = false;
      return callback({ type: 'none', username });
    }
    while (next < attempts.length) {
      const attempt = attempts[next++]!;
      // An agent is a client-side source of public keys: the server calls it 'publickey'.
      const serverName: AuthenticationType = attempt.type === 'agent' ? 'publickey' : attempt.type;
      if (authsLeft === null || authsLeft.includes(serverName)) return callback(attempt);
    }
    // ssh2 takes `false` as "nothing left to try"; its typings omit it.
    return (callback as unknown as (done: false) => void)(false);
  };
}

function connectError(error: unknown, credentials: SftpCredentials, presented: { key: Buffer; verdict: HostKeyVerdict } | undefined): Error {
  const policy = credentials.hostKeys;
  const message = error instanceof Error ? error.message : String(error);
  if (presented && presented.verdict.kind !== 'match' && (policy.strict || presented.verdict.kind === 'revoked') && /Host denied/i.test(message)) {
    return new ArchiveAuthError(hostKeyAdvice(credentials, presented.key, presented.verdict));
  }
  if (policy.algorithms && /no matching host key format|host key/i.test(message) && !presented) {
    // known_hosts lists key types for this host that the server no longer offers.
    return new ArchiveAuthError(
      `the SSH server ${policy.name} offers none of the host key types ${policy.knownHostsPath} has for it ` +
        `(${policy.algorithms.join(', ')}): its keys changed. Ask the archive's administrators, then replace the entry ` +
        `(ssh-keygen -R '${policy.name}' -f ${policy.knownHostsPath}; ${keyscanCommand(credentials)}).`,
    );
  }
  if (/All configured authentication methods failed|Too many authentication failures/i.test(message)) {
    return new ArchiveAuthError(
      `the SFTP server refused the login ${describeCredentials(credentials)}. ` +
        (credentials.methods.length === 0
          ? `Configure one: a 'machine ${credentials.host} login USER password …' line in ~/.netrc (chmod 600), ` +
            `${ENV_PASSWORD}, ${ENV_KEY}=/path/to/private/key, or a key loaded in ssh-agent.`
          : `Fix the password in ~/.netrc or ${ENV_PASSWORD}, or point ${ENV_KEY} at a key the server accepts, ` +
            `or load one into ssh-agent; check the user name too.`),
    );
  }
  return new ArchiveTransientError(`connecting to ${credentials.username}@${policy.name} failed: ${message}`, { cause: error });
}

function hostKeyAdvice(credentials: SftpCredentials, key: Buffer, verdict: HostKeyVerdict): string {
  const policy = credentials.hostKeys;
  const shown = `${keyType(key)} ${hostKeyFingerprint(key)}`;
  switch (verdict.kind) {
    case 'revoked':
      return `the SSH host key of ${policy.name} (${shown}) is marked @revoked in ${policy.knownHostsPath}; refusing to connect.`;
    case 'mismatch':
      return (
        `WARNING: the SSH host key of ${policy.name} has CHANGED: it now presents ${shown}, which does not match ` +
        `the ${verdict.knownTypes.join('/')} key in ${policy.knownHostsPath}. Someone could be intercepting the ` +
        `connection, or the server was reinstalled. Ask the archive's administrators; if the change is expected, ` +
        `remove the old key with: ssh-keygen -R '${policy.name}' -f ${policy.knownHostsPath}, then add the new one with: ` +
        `${keyscanCommand(credentials)}`
      );
    default:
      return (
        `the SSH host key of ${policy.name} (${shown}) is not in ${policy.knownHostsPath}. Check the fingerprint ` +
        `with the archive's administrators, then add it with: ${keyscanCommand(credentials)} ` +
        `(or connect once with ssh). To skip the check, which is not recommended, set ${ENV_STRICT_HOST_KEY}=no.`
      );
  }
}

function keyscanCommand(credentials: SftpCredentials): string {
  const port = credentials.port === 22 ? '' : `-p ${credentials.port} `;
  return `ssh-keyscan ${port}${credentials.host} >> ${credentials.hostKeys.knownHostsPath}`;
}

/* ------------------------------------------------------------------------ */
/* Downloading                                                              */
/* ------------------------------------------------------------------------ */

/**
 * Reads the remote file with several requests in flight, like ssh2's fastGet
 * (which matters on a long link to a remote archive), but with the local file
 * in our hands: fastGet cannot be cancelled and, when the connection dies, may
 * never call back nor close its local file.
 */
async function download(connection: Connection, path: string, request: FetchRequest, timeoutMs: number): Promise<number> {
  const { sftp } = connection;
  const guard = new Guard(connection, request.signal, timeoutMs, `download of ${path} from ${connection.label} (run ${request.run})`);
  let remote: Buffer | undefined;
  let local: FileHandle | undefined;
  try {
    remote = await guard.race(call<Buffer>((done) => sftp.open(path, 'r', done)));
    const handle = remote;
    const size = (await guard.race(call<Stats>((done) => sftp.fstat(handle, done)))).size;
    // A new file only, never through a symlink planted at the partial name, mode 0640 (see file.ts).
    local = await createStagingFile(request.destination);
    const file = local;

    let bytesDone = 0;
    let lastReportAt = 0;
    const report = (force: boolean) => {
      const now = Date.now();
      // The first chunk is reported at once (lastReportAt is 0), later ones at
      // most every PROGRESS_INTERVAL_MS, and the end always.
      if (!request.onProgress || (!force && now - lastReportAt < PROGRESS_INTERVAL_MS)) return;
      lastReportAt = now;
      request.onProgress(bytesDone, size);
    };

    let nextOffset = 0;
    let failure: unknown;
    const worker = async (): Promise<void> => {
      const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
      while (failure === undefined && nextOffset < size) {
        const offset = nextOffset;
        const length = Math.min(CHUNK_BYTES, size - offset);
        nextOffset += length;
        for (let got = 0; got < length; ) {
          const read = await guard.race(readAt(sftp, handle, buffer, got, length - got, offset + got));
          if (read === 0) {
            throw new ArchiveTransientError(`${path} ended after ${offset + got} of ${size} bytes: it changed while being read`);
          }
          got += read;
        }
        await file.write(buffer, 0, length, offset);
        bytesDone += length;
        guard.touch();
        report(false);
      }
    };
    // allSettled, not all: every worker must have stopped writing before the
    // file is closed and removed.
    await Promise.allSettled(
      Array.from({ length: READS_IN_FLIGHT }, () =>
        worker().catch((error: unknown) => {
          failure ??= error;
        }),
      ),
    );
    if (failure !== undefined) throw failure;
    await file.close();
    local = undefined;
    await guard.race(call<void>((done) => sftp.close(handle, done)));
    remote = undefined;
    report(true);
    return bytesDone;
  } finally {
    await local?.close().catch(() => {});
    // Release the remote handle when the connection survives (a local write
    // error, a file that shrank): it stays in the pool.
    if (remote && connection.alive) {
      const handle = remote;
      await guard.race(call<void>((done) => sftp.close(handle, done))).catch(() => {});
    }
    guard.dispose();
  }
}

/** One SFTP read; 0 at end of file. */
function readAt(sftp: SFTPWrapper, handle: Buffer, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    sftp.read(handle, buffer, offset, length, position, (error, bytesRead) => {
      if (!error) resolve(bytesRead);
      else if (isSftpStatus(error) && error.code === SFTP_EOF) resolve(0);
      else reject(error);
    });
  });
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

function mapOperationError(error: unknown, what: string): Error {
  if (error instanceof ArchiveAuthError || error instanceof MissingInputError || error instanceof ArchiveTransientError) return error;
  if (isSftpStatus(error) && error.code === SFTP_NO_SUCH_FILE) {
    return new MissingInputError(`${what} does not exist`, { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ArchiveTransientError(`${what}: ${message}`, { cause: error });
}

function isSftpStatus(error: unknown): error is Error & { code: number } {
  return error instanceof Error && typeof (error as { code?: unknown }).code === 'number';
}

function abortError(signal: AbortSignal, what: string): ArchiveTransientError {
  // Transient: a download timeout aborts too, and that one should be retried.
  // When the session itself is ending, the loop knows and does not retry.
  return new ArchiveTransientError(`${what} aborted`, { cause: signal.reason });
}

/** sftp://host/data/x → /data/x; sftp://host/~/x → x, relative to the login's home. */
function remotePath(url: URL): string {
  const path = decodeURIComponent(url.pathname);
  if (path.startsWith('/~/')) return path.slice(3);
  return path;
}

function endpointKey(url: URL): string {
  return `${url.username}@${url.hostname}:${url.port || 22}`;
}

function hostLabel(url: URL): string {
  return url.port ? `${url.hostname}:${url.port}` : url.hostname;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
