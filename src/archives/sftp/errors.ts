/**
 * Errors mapped to what the loop can act on: MissingInputError (the file is
 * not there), ArchiveAuthError (the shifter must fix credentials or
 * known_hosts; never contains a secret) and ArchiveTransientError (retry).
 */
import { ArchiveAuthError, ArchiveTransientError, MissingInputError } from '../archive.js';
import { ENV_KEY, ENV_PASSWORD, ENV_STRICT_HOST_KEY, describeCredentials } from '../credentials.js';
import type { SftpCredentials } from '../credentials.js';
import { hostKeyFingerprint, hostKeyType } from '../known-hosts.js';
import type { HostKeyVerdict } from '../known-hosts.js';

/** SFTP status codes SSH_FX_EOF and SSH_FX_NO_SUCH_FILE. */
export const SFTP_EOF = 1;
const SFTP_NO_SUCH_FILE = 2;

/** The host key a server presented and what known_hosts said of it. */
export interface PresentedHostKey {
  key: Buffer;
  verdict: HostKeyVerdict;
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** An SFTP status error from the server (a numeric `code`, unlike Node's string errno codes). */
export function isSftpStatus(error: unknown): error is Error & { code: number } {
  return error instanceof Error && typeof (error as { code?: unknown }).code === 'number';
}

export function abortError(signal: AbortSignal, what: string): ArchiveTransientError {
  // Transient: a download timeout aborts too, and that one should be retried.
  // When the session itself is ending, the loop knows and does not retry.
  return new ArchiveTransientError(`${what} aborted`, { cause: signal.reason });
}

/** A failed stat or download: already classified errors pass, a missing file is MissingInputError, the rest transient. */
export function mapOperationError(error: unknown, what: string): Error {
  if (error instanceof ArchiveAuthError || error instanceof MissingInputError || error instanceof ArchiveTransientError) return error;
  if (isSftpStatus(error) && error.code === SFTP_NO_SUCH_FILE) {
    return new MissingInputError(`${what} does not exist`, { cause: error });
  }
  return new ArchiveTransientError(`${what}: ${messageOf(error)}`, { cause: error });
}

/** A failed connect: a refused host key or login is ArchiveAuthError with advice, the rest transient. */
export function connectError(error: unknown, credentials: SftpCredentials, presented: PresentedHostKey | undefined): Error {
  const policy = credentials.hostKeys;
  const message = messageOf(error);
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

/** The host key as a shifter compares it with what the administrators publish. */
export function describeHostKey(key: Buffer): string {
  return `${hostKeyType(key)} ${hostKeyFingerprint(key)}`;
}

function hostKeyAdvice(credentials: SftpCredentials, key: Buffer, verdict: HostKeyVerdict): string {
  const policy = credentials.hostKeys;
  const shown = describeHostKey(key);
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
