import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CredentialsError, describeCredentials, resolveSftpCredentials } from '../../src/archives/credentials.js';
import type { SftpCredentials } from '../../src/archives/credentials.js';
import { NetrcError } from '../../src/archives/netrc.js';

// ssh-keygen makes real keys and hashed known_hosts; with CI=true its absence fails loudly.
const skipKeygen = spawnSync('ssh-keygen', ['-?'], { stdio: 'ignore' }).error !== undefined && !process.env.CI;

let dir: string;
let netrc: string;
let knownHosts: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rp-credentials-'));
  netrc = join(dir, '.netrc');
  knownHosts = join(dir, 'known_hosts');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function resolve(url: string, env: Record<string, string | undefined> = {}): Promise<SftpCredentials> {
  return resolveSftpCredentials(new URL(url), { env: { HOME: dir, USER: 'systemuser', ...env }, netrcPath: netrc, knownHostsPath: knownHosts });
}

describe('resolveSftpCredentials: where the login comes from', () => {
  it('takes the user and password from .netrc first', async () => {
    await writeFile(netrc, 'machine archive.example.org login shifter password fromnetrc\n', { mode: 0o600 });
    const credentials = await resolve('sftp://archive.example.org/data/run1.mid', {
      RUN_PRODUCTION_SFTP_USER: 'envuser',
      RUN_PRODUCTION_SFTP_PASSWORD: 'fromenv',
    });
    expect(credentials).toMatchObject({ host: 'archive.example.org', port: 22, username: 'shifter', usernameSource: 'netrc' });
    // The env password belongs to envuser, not to the netrc login.
    expect(credentials.methods.map((method) => method.kind)).toEqual(['password']);
    expect(credentials.methods[0]).toMatchObject({ kind: 'password', source: 'netrc' });
  });

  it('lets the user in the URL win, and then only uses a netrc entry for that user', async () => {
    await writeFile(netrc, 'machine h login other password p-other\nmachine h login alice password p-alice\n', { mode: 0o600 });
    const credentials = await resolve('sftp://alice@h:2222/x', { RUN_PRODUCTION_SFTP_USER: 'envuser' });
    expect(credentials).toMatchObject({ username: 'alice', usernameSource: 'url', port: 2222 });
    const password = credentials.methods[0];
    expect(password?.kind === 'password' && password.password.reveal()).toBe('p-alice');

    const stranger = await resolve('sftp://bob@h/x');
    expect(stranger.methods).toEqual([]);
  });

  it('falls back on the environment, then on the system user', async () => {
    const fromEnv = await resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_USER: 'envuser', RUN_PRODUCTION_SFTP_PASSWORD: 'pw' });
    expect(fromEnv).toMatchObject({ username: 'envuser', usernameSource: 'env' });
    expect(fromEnv.methods[0]).toMatchObject({ kind: 'password', source: 'env' });

    const system = await resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_PASSWORD: 'pw' });
    expect(system).toMatchObject({ username: 'systemuser', usernameSource: 'system' });
    expect(system.methods[0]).toMatchObject({ kind: 'password', source: 'env' });
  });

  it.skipIf(skipKeygen)('offers netrc password, env key and ssh-agent in that order', async () => {
    await writeFile(netrc, 'machine h login u password p\n', { mode: 0o600 });
    const key = join(dir, 'id');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const credentials = await resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_KEY: key, SSH_AUTH_SOCK: '/tmp/agent.sock' });
    expect(credentials.methods.map((method) => method.kind)).toEqual(['password', 'key', 'agent']);
    expect(credentials.methods[2]).toEqual({ kind: 'agent', socket: '/tmp/agent.sock' });
  });

  it('refuses a loose .netrc with the chmod advice', async () => {
    await writeFile(netrc, 'machine h login u password p\n', { mode: 0o644 });
    await expect(resolve('sftp://h/x')).rejects.toThrow(NetrcError);
    await expect(resolve('sftp://h/x')).rejects.toThrow(`chmod 600 ${netrc}`);
  });

  it('explains an unreadable key file', async () => {
    await expect(resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_KEY: join(dir, 'nope') })).rejects.toThrow(CredentialsError);
    await writeFile(join(dir, 'garbage'), 'not a key');
    await expect(resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_KEY: join(dir, 'garbage') })).rejects.toThrow(/not a private key/);
  });

  it.skipIf(skipKeygen)('explains a missing or wrong passphrase, without printing it', async () => {
    const key = join(dir, 'id_encrypted');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'correct horse', '-f', key]);
    await expect(resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_KEY: key })).rejects.toThrow(/RUN_PRODUCTION_SFTP_PASSPHRASE/);
    const wrong = await resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_KEY: key, RUN_PRODUCTION_SFTP_PASSPHRASE: 'battery staple' }).catch(
      (error: unknown) => error as Error,
    );
    expect(wrong).toBeInstanceOf(CredentialsError);
    expect((wrong as Error).message).toContain('RUN_PRODUCTION_SFTP_PASSPHRASE');
    expect((wrong as Error).message).not.toContain('battery staple');
    const good = await resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_KEY: key, RUN_PRODUCTION_SFTP_PASSPHRASE: 'correct horse' });
    expect(good.methods[0]).toMatchObject({ kind: 'key', path: key });
  });

  it('rejects a strict-host-key switch it does not understand instead of guessing', async () => {
    await expect(resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_STRICT_HOST_KEY: 'maybe' })).rejects.toThrow(/yes or no/);
    expect((await resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_STRICT_HOST_KEY: 'no' })).hostKeys.strict).toBe(false);
    expect((await resolve('sftp://h/x', { RUN_PRODUCTION_SFTP_STRICT_HOST_KEY: 'yes' })).hostKeys.strict).toBe(true);
    expect((await resolve('sftp://h/x')).hostKeys.strict).toBe(true);
  });
});

describe('secrets stay out of messages', () => {
  it.skipIf(skipKeygen)('describeCredentials, JSON and inspect never show a password, passphrase or key', async () => {
    await writeFile(netrc, 'machine h login u password netrc-secret\n', { mode: 0o600 });
    const key = join(dir, 'id_encrypted');
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'phrase-secret', '-f', key]);
    const keyText = await readFile(key, 'utf8');
    const keyBody = keyText.split('\n')[1]!;
    const credentials = await resolve('sftp://u@h/x', {
      RUN_PRODUCTION_SFTP_PASSWORD: 'env-secret',
      RUN_PRODUCTION_SFTP_KEY: key,
      RUN_PRODUCTION_SFTP_PASSPHRASE: 'phrase-secret',
      SSH_AUTH_SOCK: '/tmp/agent.sock',
    });
    const description = describeCredentials(credentials);
    expect(description).toContain('u@h');
    expect(description).toContain(`password from ${netrc}`);
    expect(description).toContain('RUN_PRODUCTION_SFTP_PASSWORD');
    expect(description).toContain(`key ${key}`);
    expect(description).toContain('ssh-agent');
    for (const shown of [description, JSON.stringify(credentials), inspect(credentials, { depth: 10 }), String(credentials.methods[0] && 'password' in credentials.methods[0] ? credentials.methods[0].password : '')]) {
      for (const secret of ['netrc-secret', 'env-secret', 'phrase-secret', keyBody]) expect(shown).not.toContain(secret);
    }
  });
});
