/**
 * Opening one connection: credentials and known_hosts are read afresh, the
 * server's host key is checked, we log in (auth.ts) and open the SFTP channel,
 * all within the operation timeout and the caller's abort. Transient failures
 * are retried with backoff (retry.ts).
 */
import type { Client, ConnectConfig } from 'ssh2';
import SftpClient from 'ssh2-sftp-client';
import { ArchiveAuthError, ArchiveTransientError } from '../archive.js';
import { CredentialsError, ENV_STRICT_HOST_KEY, describeCredentials, resolveSftpCredentials } from '../credentials.js';
import type { SftpCredentials, SftpEnv } from '../credentials.js';
import { KnownHostsError } from '../known-hosts.js';
import { NetrcError } from '../netrc.js';
import { authSequence } from './auth.js';
import { Connection } from './connection.js';
import type { DropListener } from './connection.js';
import { abortError, connectError, describeHostKey, messageOf } from './errors.js';
import type { PresentedHostKey } from './errors.js';
import { withBackoff } from './retry.js';
import type { Backoff } from './retry.js';
import { endpointKey, hostLabel } from './url.js';

export interface ConnectSettings {
  env: SftpEnv;
  netrcPath: string | undefined;
  knownHostsPath: string | undefined;
  timeoutMs: number;
  log: (line: string) => void;
}

/** Connect attempts per request before giving up with ArchiveTransientError. */
const CONNECT_BACKOFF: Backoff = { attempts: 4, firstDelayMs: 500 };

let connectionCounter = 0;

/** Opens a connection, retrying transient failures with exponential backoff. */
export function connect(url: URL, signal: AbortSignal, settings: ConnectSettings, onDrop: DropListener): Promise<Connection> {
  return withBackoff(() => connectOnce(url, signal, settings, onDrop), CONNECT_BACKOFF, signal, (error, failed, delay) =>
    settings.log(
      `sftp: connecting to ${hostLabel(url)} failed (${error.message}); attempt ${failed + 1} of ${CONNECT_BACKOFF.attempts} in ${delay / 1000} s`,
    ),
  );
}

async function connectOnce(url: URL, signal: AbortSignal, settings: ConnectSettings, onDrop: DropListener): Promise<Connection> {
  const credentials = await loginCredentials(url, settings);
  const label = `${credentials.username}@${credentials.hostKeys.name}`;
  const client = new SftpClient(`run-production-${++connectionCounter}`, {
    // ssh2-sftp-client's defaults print to the console; route to the session log.
    error: (error) => settings.log(`sftp: ${label}: ${messageOf(error)}`),
    end: () => {},
    close: () => {},
  });
  const ssh = (client as unknown as { client: Client }).client;
  let presented: PresentedHostKey | undefined;
  const config = connectConfig(credentials, settings, (key) => (presented = key));

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

/** The login for `url`; a setup the shifter must fix is an ArchiveAuthError. */
async function loginCredentials(url: URL, settings: ConnectSettings): Promise<SftpCredentials> {
  try {
    // Read on every connect, so a fixed .netrc or known_hosts takes effect
    // without restarting the session.
    return await resolveSftpCredentials(url, {
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
}

/** ssh2's settings; `onPresented` learns the server's host key and its verdict, for the error message. */
function connectConfig(credentials: SftpCredentials, settings: ConnectSettings, onPresented: (presented: PresentedHostKey) => void): ConnectConfig {
  const policy = credentials.hostKeys;
  return {
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
      onPresented({ key, verdict });
      if (verdict.kind === 'match') return true;
      if (verdict.kind === 'revoked' || policy.strict) return false;
      settings.log(
        `sftp: WARNING: accepting ${verdict.kind === 'mismatch' ? 'a CHANGED' : 'an unknown'} host key ` +
          `${describeHostKey(key)} for ${policy.name} because ${ENV_STRICT_HOST_KEY}=no`,
      );
      return true;
    },
    ...(policy.algorithms ? { algorithms: { serverHostKey: policy.algorithms as never } } : {}),
  };
}
