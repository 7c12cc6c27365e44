import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NetrcError, findNetrcEntry, parseNetrc, readNetrc } from '../../src/archives/netrc.js';

describe('parseNetrc', () => {
  it('reads machine entries written on one line or spread over several', () => {
    const entries = parseNetrc(
      [
        'machine archive.example.org login shifter password s3cret',
        'machine other.example.org',
        '    login  bob',
        '    password',
        '      "two words"',
        '    account physics',
      ].join('\n'),
    );
    expect(entries).toEqual([
      { machine: 'archive.example.org', login: 'shifter', password: 's3cret' },
      { machine: 'other.example.org', login: 'bob', password: 'two words', account: 'physics' },
    ]);
  });

  it('skips comments and macdef bodies up to the next blank line', () => {
    const entries = parseNetrc(
      [
        '# archive credentials',
        'machine a.example.org login alice password pa # trailing comment',
        'macdef init',
        'cd /pub',
        'machine fake.example.org login mallory password inside-macro',
        '',
        'machine b.example.org login bert password pb',
      ].join('\n'),
    );
    expect(entries.map((entry) => entry.machine)).toEqual(['a.example.org', 'b.example.org']);
    expect(entries[0]).toEqual({ machine: 'a.example.org', login: 'alice', password: 'pa' });
  });

  it('keeps the default entry and unescapes quoted tokens', () => {
    const entries = parseNetrc('default login anon password "say \\"hi\\""\n');
    expect(entries).toEqual([{ machine: undefined, login: 'anon', password: 'say "hi"' }]);
  });

  it('ignores unknown keywords and complains about a keyword without its value', () => {
    expect(parseNetrc('machine h port 2222 login u password p').at(0)).toMatchObject({ machine: 'h', login: 'u', password: 'p' });
    expect(() => parseNetrc('machine h login', '/x/.netrc')).toThrow(NetrcError);
    expect(() => parseNetrc('machine h login', '/x/.netrc')).toThrow(/\/x\/\.netrc/);
  });
});

describe('findNetrcEntry', () => {
  const entries = parseNetrc(
    ['machine h login alice password pa', 'machine h login bob password pb', 'default login anon password pd'].join('\n'),
  );

  it('takes the first entry for the host, case-insensitively', () => {
    expect(findNetrcEntry(entries, 'H')?.login).toBe('alice');
  });

  it('prefers the entry of the requested login', () => {
    expect(findNetrcEntry(entries, 'h', 'bob')?.password).toBe('pb');
  });

  it('falls back on default, and on nothing when there is no default', () => {
    expect(findNetrcEntry(entries, 'elsewhere')?.login).toBe('anon');
    expect(findNetrcEntry(entries.slice(0, 2), 'elsewhere')).toBeUndefined();
  });
});

describe('readNetrc', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rp-netrc-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('returns undefined when the file does not exist', async () => {
    await expect(readNetrc(join(dir, 'missing'))).resolves.toBeUndefined();
  });

  it('reads a file only its owner can access', async () => {
    const path = join(dir, '.netrc');
    await writeFile(path, 'machine h login u password p\n', { mode: 0o600 });
    await expect(readNetrc(path)).resolves.toEqual([{ machine: 'h', login: 'u', password: 'p' }]);
  });

  it.each([0o644, 0o640, 0o604, 0o660, 0o602])('refuses mode %o with the chmod advice, like ssh with a loose key', async (mode) => {
    const path = join(dir, '.netrc');
    await writeFile(path, 'machine h login u password p\n');
    await chmod(path, mode);
    const error = await readNetrc(path).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(NetrcError);
    expect((error as NetrcError).message).toContain(`chmod 600 ${path}`);
    expect((error as NetrcError).message).not.toContain('password p');
    expect((error as NetrcError).path).toBe(path);
  });
});
