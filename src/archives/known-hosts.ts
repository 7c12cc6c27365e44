/**
 * Whom we trust: the server's host key checked against ~/.ssh/known_hosts the
 * way `ssh` does it (plain and hashed names, `[host]:port`, wildcards and `!`
 * negation, @revoked), and the host key algorithms to offer so that a server
 * with several keys presents one we can check.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/** known_hosts exists but cannot be read: the shifter must fix it (not a reason to retry). */
export class KnownHostsError extends Error {
  override readonly name = 'KnownHostsError';
}

export type HostKeyVerdict =
  | { kind: 'match' }
  | { kind: 'unknown' }
  /** known_hosts has other keys for this host: possibly a man-in-the-middle. */
  | { kind: 'mismatch'; knownTypes: string[] }
  | { kind: 'revoked' };

export interface HostKeyPolicy {
  strict: boolean;
  knownHostsPath: string;
  /** The host as known_hosts names it: `host`, or `[host]:port` off port 22. */
  name: string;
  /**
   * Host key algorithms to offer, restricted to the key types known_hosts has
   * for this host, so a server with several keys presents one we can check
   * (what OpenSSH does too). Undefined: ssh2's default list.
   */
  algorithms: string[] | undefined;
  verify(key: Buffer): HostKeyVerdict;
}

export interface KnownHostEntry {
  marker: '@revoked' | '@cert-authority' | undefined;
  /** Comma-separated patterns, or one `|1|salt|hash` hashed name. */
  hosts: string;
  keyType: string;
  key: Buffer;
}

export async function loadHostKeyPolicy(
  host: string,
  port: number,
  knownHostsPath: string,
  strict: boolean,
): Promise<HostKeyPolicy> {
  const name = knownHostsName(host, port);
  let text = '';
  try {
    text = await readFile(knownHostsPath, 'utf8');
  } catch (error) {
    // No known_hosts yet: every host is unknown, which strict mode reports.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new KnownHostsError(`cannot read ${knownHostsPath}: ${(error as Error).message}`);
    }
  }
  const entries = parseKnownHosts(text).filter((entry) => hostMatches(entry.hosts, name));
  const plain = entries.filter((entry) => entry.marker === undefined);
  const algorithms = [...new Set(plain.flatMap((entry) => algorithmsForKeyType(entry.keyType)))];
  return {
    strict,
    knownHostsPath,
    name,
    algorithms: strict && algorithms.length > 0 ? algorithms : undefined,
    verify: (key) => verdictFor(entries, key),
  };
}

export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** OpenSSH's fingerprint format, for messages: SHA256:base64-without-padding. */
export function hostKeyFingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** The key type a host key blob names in its first field (`ssh-ed25519`, …), for messages. */
export function hostKeyType(key: Buffer): string {
  if (key.length < 4) return 'unknown';
  const length = key.readUInt32BE(0);
  return key.subarray(4, 4 + length).toString('latin1');
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as KnownHostEntry['marker'];
    else if (fields[0]?.startsWith('@')) continue; // a marker we do not know: ignore the line, as ssh does
    const [hosts, keyType, keyBase64] = fields;
    if (hosts === undefined || keyType === undefined || keyBase64 === undefined) continue;
    entries.push({ marker, hosts, keyType, key: Buffer.from(keyBase64, 'base64') });
  }
  return entries;
}

function verdictFor(entries: readonly KnownHostEntry[], key: Buffer): HostKeyVerdict {
  const same = (entry: KnownHostEntry): boolean => entry.key.length === key.length && timingSafeEqual(entry.key, key);
  if (entries.some((entry) => entry.marker === '@revoked' && same(entry))) return { kind: 'revoked' };
  // Certificate authorities would need certificate host keys, which ssh2 does
  // not negotiate; such lines neither vouch for nor against a plain key.
  const plain = entries.filter((entry) => entry.marker === undefined);
  if (plain.some(same)) return { kind: 'match' };
  if (plain.length === 0) return { kind: 'unknown' };
  return { kind: 'mismatch', knownTypes: [...new Set(plain.map((entry) => entry.keyType))] };
}

/** known_hosts host field against a name: hashed entries, or patterns with `*`, `?` and `!` negation. */
export function hostMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (salt === undefined || hash === undefined) return false;
    const expected = Buffer.from(hash, 'base64');
    const actual = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest();
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
  let matched = false;
  for (const pattern of hosts.split(',')) {
    const negated = pattern.startsWith('!');
    if (globMatches(negated ? pattern.slice(1) : pattern, name)) {
      if (negated) return false; // a negated match rules the host out whatever else matches
      matched = true;
    }
  }
  return matched;
}

function globMatches(pattern: string, name: string): boolean {
  const regex = pattern
    .toLowerCase()
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${regex}$`).test(name.toLowerCase());
}

/** An `ssh-rsa` key is negotiated with the SHA-2 signature algorithms too. */
function algorithmsForKeyType(keyType: string): string[] {
  switch (keyType) {
    case 'ssh-rsa':
      return ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];
    case 'ssh-ed25519':
    case 'ecdsa-sha2-nistp256':
    case 'ecdsa-sha2-nistp384':
    case 'ecdsa-sha2-nistp521':
    case 'ssh-dss':
      return [keyType];
    default:
      return []; // e.g. sk-* or certificate types ssh2 cannot negotiate
  }
}
