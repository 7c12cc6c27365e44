import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { resolveSftpCredentials } from '../../src/archives/credentials.js';
import { KnownHostsError, hostKeyFingerprint, hostKeyType, hostMatches, knownHostsName, loadHostKeyPolicy } from '../../src/archives/known-hosts.js';

// ssh-keygen makes hashed known_hosts; with CI=true its absence fails loudly.
const skipKeygen = spawnSync('ssh-keygen', ['-?'], { stdio: 'ignore' }).error !== undefined && !process.env.CI;

let dir: string;
let knownHosts: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rp-known-hosts-'));
  knownHosts = join(dir, 'known_hosts');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('known_hosts', () => {
  const keyA = Buffer.from('0000000b7373682d6564323535313900000020' + 'aa'.repeat(32), 'hex');
  const keyB = Buffer.from('0000000b7373682d6564323535313900000020' + 'bb'.repeat(32), 'hex');
  const line = (hosts: string, key: Buffer, marker = '') => `${marker}${marker ? ' ' : ''}${hosts} ssh-ed25519 ${key.toString('base64')}`;

  it('names hosts the way ssh does', () => {
    expect(knownHostsName('h', 22)).toBe('h');
    expect(knownHostsName('h', 2222)).toBe('[h]:2222');
    expect(hostKeyFingerprint(keyA)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(hostKeyType(keyA)).toBe('ssh-ed25519');
    expect(hostKeyType(Buffer.alloc(2))).toBe('unknown');
  });

  it('an unreadable known_hosts is a KnownHostsError naming the file, a missing one is no error', async () => {
    await mkdir(knownHosts); // reading a directory fails with EISDIR
    const env = { HOME: dir, USER: 'u' };
    const failure = await resolveSftpCredentials(new URL('sftp://h/x'), { env, netrcPath: join(dir, 'no-netrc'), knownHostsPath: knownHosts }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(KnownHostsError);
    expect((failure as Error).message).toContain(`cannot read ${knownHosts}`);
    const absent = await resolveSftpCredentials(new URL('sftp://h/x'), { env, netrcPath: join(dir, 'no-netrc'), knownHostsPath: join(dir, 'absent') });
    expect(absent.hostKeys.verify(keyA)).toEqual({ kind: 'unknown' });
  });

  it('matches plain names, [host]:port, comma lists, wildcards and negations', () => {
    expect(hostMatches('archive.example.org', 'archive.example.org')).toBe(true);
    expect(hostMatches('other,archive.example.org,192.0.2.1', 'archive.example.org')).toBe(true);
    expect(hostMatches('[archive.example.org]:2222', '[archive.example.org]:2222')).toBe(true);
    expect(hostMatches('archive.example.org', '[archive.example.org]:2222')).toBe(false);
    expect(hostMatches('*.example.org', 'Archive.Example.org')).toBe(true);
    expect(hostMatches('*.example.org,!bad.example.org', 'bad.example.org')).toBe(false);
    expect(hostMatches('arch?ve.example.org', 'archive.example.org')).toBe(true);
  });

  it('verifies a matching key, reports unknown hosts and changed keys', async () => {
    await writeFile(knownHosts, ['# comment', line('other', keyB), line('[h]:2222,h2', keyA), ''].join('\n'));
    const policy = await loadHostKeyPolicy('h', 2222, knownHosts, true);
    expect(policy.name).toBe('[h]:2222');
    expect(policy.verify(keyA)).toEqual({ kind: 'match' });
    expect(policy.verify(keyB)).toEqual({ kind: 'mismatch', knownTypes: ['ssh-ed25519'] });
    expect(policy.algorithms).toEqual(['ssh-ed25519']);
    const unknown = await loadHostKeyPolicy('elsewhere', 22, knownHosts, true);
    expect(unknown.verify(keyA)).toEqual({ kind: 'unknown' });
    expect(unknown.algorithms).toBeUndefined();
    const missingFile = await loadHostKeyPolicy('h', 2222, join(dir, 'absent'), true);
    expect(missingFile.verify(keyA)).toEqual({ kind: 'unknown' });
  });

  it('honours @revoked and offers the SHA-2 algorithms for ssh-rsa keys', async () => {
    await writeFile(knownHosts, [line('h', keyA), line('h', keyB, '@revoked'), `h ssh-rsa ${keyB.toString('base64')}`].join('\n'));
    const policy = await loadHostKeyPolicy('h', 22, knownHosts, true);
    expect(policy.verify(keyB)).toEqual({ kind: 'revoked' });
    expect(policy.verify(keyA)).toEqual({ kind: 'match' });
    expect(policy.algorithms).toEqual(['ssh-ed25519', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    // Relaxed mode does not restrict what the server may present.
    expect((await loadHostKeyPolicy('h', 22, knownHosts, false)).algorithms).toBeUndefined();
  });

  it.skipIf(skipKeygen)('understands entries hashed by ssh-keygen -H', async () => {
    await writeFile(knownHosts, [line('[archive.example.org]:2222', keyA), line('plain.example.org', keyB)].join('\n') + '\n');
    const hashed = spawnSync('ssh-keygen', ['-H', '-f', knownHosts], { encoding: 'utf8' });
    expect(hashed.status).toBe(0);
    const text = await readFile(knownHosts, 'utf8');
    expect(text).not.toContain('archive.example.org');
    expect(text).toContain('|1|');
    expect((await loadHostKeyPolicy('archive.example.org', 2222, knownHosts, true)).verify(keyA)).toEqual({ kind: 'match' });
    expect((await loadHostKeyPolicy('archive.example.org', 22, knownHosts, true)).verify(keyA)).toEqual({ kind: 'unknown' });
    expect((await loadHostKeyPolicy('plain.example.org', 22, knownHosts, true)).verify(keyA)).toMatchObject({ kind: 'mismatch' });
  });
});
