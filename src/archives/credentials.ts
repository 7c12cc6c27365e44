/**
 * Who we are and whom we trust when opening an SFTP connection.
 *
 * Login methods are gathered in a fixed order, so a shifter can predict which
 * one is used: ~/.netrc, then the RUN_PRODUCTION_SFTP_* environment variables,
 * then a running ssh-agent. The server's host key is checked against
 * ~/.ssh/known_hosts (known-hosts.ts) exactly like `ssh` does, unless the
 * shifter explicitly relaxes it with RUN_PRODUCTION_SFTP_STRICT_HOST_KEY=no.
 *
 * The environment is a parameter rather than process.env so tests (and a
 * future per-production override) can supply their own.
 */
import { readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import ssh2 from 'ssh2';
import { loadHostKeyPolicy } from './known-hosts.js';
import type { HostKeyPolicy } from './known-hosts.js';
import { findNetrcEntry, readNetrc } from './netrc.js';

export type SftpEnv = Readonly<Record<string, string | undefined>>;

export const ENV_USER = 'RUN_PRODUCTION_SFTP_USER';
export const ENV_PASSWORD = 'RUN_PRODUCTION_SFTP_PASSWORD';
export const ENV_KEY = 'RUN_PRODUCTION_SFTP_KEY';
export const ENV_PASSPHRASE = 'RUN_PRODUCTION_SFTP_PASSPHRASE';
export const ENV_STRICT_HOST_KEY = 'RUN_PRODUCTION_SFTP_STRICT_HOST_KEY';

/**
 * A secret that does not leak through String(), JSON.stringify or
 * console.log/util.inspect; only reveal() gives the value, at the point where
 * ssh2 needs it.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[redacted]';
  }
  toJSON(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return '[redacted]';
  }
}

export type AuthMethod =
  | { kind: 'password'; source: 'netrc' | 'env'; sourcePath?: string; password: Secret }
  | { kind: 'key'; path: string; key: Secret; passphrase?: Secret }
  | { kind: 'agent'; socket: string };

export type UserSource = 'url' | 'netrc' | 'env' | 'system';

export interface SftpCredentials {
  host: string;
  port: number;
  username: string;
  usernameSource: UserSource;
  /** In the order ssh2 should try them. Empty when nothing is configured. */
  methods: AuthMethod[];
  hostKeys: HostKeyPolicy;
}

/** A configuration problem the shifter must fix (bad key file, bad switch value). */
export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
}

export interface ResolveOptions {
  env: SftpEnv;
  /** Defaults to $HOME/.netrc. */
  netrcPath?: string;
  /** Defaults to $HOME/.ssh/known_hosts. */
  knownHostsPath?: string;
}

/**
 * Resolves credentials for sftp://[user@]host[:port]/... Throws NetrcError for
 * a loose or unreadable .netrc, KnownHostsError for an unreadable known_hosts
 * and CredentialsError for an unusable key or switch value; all mean "fix your
 * setup", not "retry".
 */
export async function resolveSftpCredentials(url: URL, options: ResolveOptions): Promise<SftpCredentials> {
  const { env } = options;
  const host = hostOf(url);
  const port = url.port === '' ? 22 : Number(url.port);
  const urlUser = url.username === '' ? undefined : decodeURIComponent(url.username);
  const envUser = nonEmpty(env[ENV_USER]);
  const home = nonEmpty(env.HOME) ?? homedir();
  const netrcPath = options.netrcPath ?? join(home, '.netrc');
  const knownHostsPath = options.knownHostsPath ?? join(home, '.ssh', 'known_hosts');

  const netrc = await readNetrc(netrcPath);
  const entry = netrc && findNetrcEntry(netrc, host, urlUser);

  let username: string;
  let usernameSource: UserSource;
  if (urlUser !== undefined) [username, usernameSource] = [urlUser, 'url'];
  else if (entry?.login !== undefined) [username, usernameSource] = [entry.login, 'netrc'];
  else if (envUser !== undefined) [username, usernameSource] = [envUser, 'env'];
  else [username, usernameSource] = [nonEmpty(env.USER) ?? nonEmpty(env.LOGNAME) ?? userInfo().username, 'system'];

  const methods: AuthMethod[] = [];
  if (entry?.password !== undefined && (entry.login === undefined || entry.login === username)) {
    methods.push({ kind: 'password', source: 'netrc', sourcePath: netrcPath, password: new Secret(entry.password) });
  }
  // The env password belongs to the env user: do not send one account's
  // password to another account named in the URL.
  const envPassword = env[ENV_PASSWORD];
  if (envPassword !== undefined && envPassword !== '' && (envUser === undefined || envUser === username)) {
    methods.push({ kind: 'password', source: 'env', password: new Secret(envPassword) });
  }
  const keyPath = nonEmpty(env[ENV_KEY]);
  if (keyPath !== undefined) {
    methods.push(await loadPrivateKey(keyPath, nonEmpty(env[ENV_PASSPHRASE])));
  }
  const agentSocket = nonEmpty(env.SSH_AUTH_SOCK);
  if (agentSocket !== undefined) methods.push({ kind: 'agent', socket: agentSocket });

  const hostKeys = await loadHostKeyPolicy(host, port, knownHostsPath, parseStrictSwitch(env[ENV_STRICT_HOST_KEY]));
  return { host, port, username, usernameSource, methods, hostKeys };
}

/** One line for logs and error messages: never a password, passphrase or key. */
export function describeCredentials(credentials: SftpCredentials): string {
  const { username, usernameSource, methods, hostKeys } = credentials;
  const tried = methods.map((method) => {
    switch (method.kind) {
      case 'password':
        return method.source === 'netrc' ? `password from ${method.sourcePath}` : `password from ${ENV_PASSWORD}`;
      case 'key':
        return `key ${method.path}${method.passphrase ? ' (with passphrase)' : ''}`;
      case 'agent':
        return 'ssh-agent';
    }
  });
  const hostCheck = hostKeys.strict
    ? `host key checked against ${hostKeys.knownHostsPath}`
    : `host key NOT checked (${ENV_STRICT_HOST_KEY}=no)`;
  return (
    `${username}@${hostKeys.name} (user from ${usernameSource}; ` +
    `${tried.length > 0 ? tried.join(', ') : 'no password, key or agent configured'}; ${hostCheck})`
  );
}

async function loadPrivateKey(path: string, passphrase: string | undefined): Promise<AuthMethod> {
  let key: string;
  try {
    // Private keys are text (OpenSSH or PEM armour), kept as a Secret string.
    key = await readFile(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new CredentialsError(`${ENV_KEY} names ${path}, which cannot be read (${reason})`);
  }
  // Parse now so a wrong passphrase is reported as such, instead of ssh2
  // silently skipping the key and the server answering "authentication failed".
  const parsed = ssh2.utils.parseKey(key, passphrase);
  if (parsed instanceof Error) {
    const hint = /passphrase/i.test(parsed.message)
      ? passphrase === undefined
        ? `it is encrypted: set ${ENV_PASSPHRASE}`
        : `check ${ENV_PASSPHRASE}`
      : 'it is not a private key ssh2 understands';
    throw new CredentialsError(`cannot use the private key ${path} from ${ENV_KEY}: ${hint}`);
  }
  const first = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!first?.isPrivateKey()) {
    throw new CredentialsError(`${ENV_KEY} names ${path}, which holds no private key (a .pub file?)`);
  }
  return { kind: 'key', path, key: new Secret(key), ...(passphrase !== undefined ? { passphrase: new Secret(passphrase) } : {}) };
}

function parseStrictSwitch(value: string | undefined): boolean {
  const normalized = (value ?? '').trim().toLowerCase();
  if (['', 'yes', 'true', 'on', '1'].includes(normalized)) return true;
  if (['no', 'false', 'off', '0'].includes(normalized)) return false;
  // A typo must not silently turn host key checking off (or on): say so.
  throw new CredentialsError(`${ENV_STRICT_HOST_KEY} must be yes or no, not '${value}'`);
}

function hostOf(url: URL): string {
  // IPv6 literals come bracketed from URL; known_hosts and ssh2 want them bare.
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
