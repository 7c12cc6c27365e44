/**
 * Issue 13, paths: names are names, outputs stay under dataDir and staged inputs under
 * stagingDir, a download never writes through a name someone planted in the shared staging area,
 * and a local source is read only under the archive root. Real files and real CLI processes.
 */
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { createFileArchive, SourceOutsideArchiveError } from '../../src/archives/file.js';
import { MissingInputError } from '../../src/archives/archive.js';
import { isSafeName } from '../../src/outputs/confine.js';
import { RUN, scenario, sessionOf, statusCounts, type Scenario } from '../helpers/scenario.js';

const productions = async (s: Scenario) =>
  (await sql<{ n: number }>`SELECT count(*)::int AS n FROM productions`.execute(s.database.handle.db)).rows[0]!.n;

async function filesWith(dir: string, needle: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    if ((await readFile(path, 'utf8').catch(() => '')).includes(needle)) found.push(path);
  }
  return found;
}

describe('names', () => {
  it('tags and dataset names of the tests and the demo are names; paths are not', () => {
    for (const name of ['v1', 't', 'v5-r2', 'v1-test', 'ra-1', 'fifo', 'pass2', 'SiR2', 'Al50b', 'Al100', 'run2015a', 'A', 'v2.1', 'rootana_v2.1', 'g4+fix']) {
      expect(isSafeName(name), name).toBe(true);
    }
    for (const name of ['', '.', '..', '../x', 'a/b', '/abs', 'a..b', '.hidden', '-x', '_x', 'a b', 'a\x1b[2J', 'tab\t', 'é', 'x'.repeat(201)]) {
      expect(isSafeName(name), JSON.stringify(name)).toBe(false);
    }
  });

  it('new --tag ../../x is refused with exit 65, and nothing is created', async () => {
    const s = await scenario(3, {}, { newArgs: null });
    const made = await s.cli(['new', '--production', 'alcapana', '--tag', '../../x']);
    expect(made.code, made.stderr).toBe(65);
    expect(made.stderr).toMatch(/--tag "\.\.\/\.\.\/x": a software tag is a letter or digit/);
    const viaRun = await s.cli(['run', '--production', 'alcapana', '--plain', '--new', '../../../victim/x']);
    expect(viaRun.code, viaRun.stderr).toBe(65);
    expect(viaRun.stderr).toMatch(/--tag/);
    expect(await productions(s)).toBe(0);
    expect(existsSync(join(s.fixture.dir, 'data'))).toBe(false);
    // A good tag still works.
    expect((await s.cli(['new', '--production', 'alcapana', '--tag', 'v5-r2'])).code).toBe(0);
  });

  it('datasets import refuses a dataset name that is a path, and imports nothing', async () => {
    const s = await scenario(3, {}, { newArgs: null });
    for (const bad of ['..', '../x', 'a/b', '.hidden']) {
      const file = join(s.fixture.dir, 'bad.csv');
      await writeFile(file, `run,dataset,quality\n8001,SiR2,gold\n8002,${bad},gold\n`);
      const result = await s.cli(['datasets', 'import', file]);
      expect(result.code, bad).toBe(65);
      expect(result.stderr).toMatch(/line 3, field dataset: expected a dataset name/);
    }
    const rows = await s.database.handle.db.selectFrom('runs').select('run_number').where('run_number', '>=', 8000).execute();
    expect(rows).toEqual([]);
  });

  it('--datasets and --dataset take names only (usage error 64 naming the flag)', async () => {
    const s = await scenario(3, {}, { newArgs: null });
    const result = await s.cli(['new', '--production', 'alcapana', '--tag', 'v1', '--datasets', 'SiR2,../x']);
    expect(result.code).toBe(64);
    expect(result.stderr).toMatch(/--datasets.*expected dataset names/);
    const run = await s.cli(['run', '--production', 'alcapana', '--dataset', '..', '--dry-run']);
    expect(run.code).toBe(64);
    expect(run.stderr).toMatch(/--dataset.*expected dataset names/);
    expect(await productions(s)).toBe(0);
  });
});

describe('outputs stay under dataDir', () => {
  it('an output template that leaves dataDir is refused at new, naming the field', async () => {
    const s = await scenario(3, { typeExtra: { outputs: { tree: '{dataDir}/tree/tree{run:05d}.root', hist: '{dataDir}/../escape/hist{run:05d}.txt' } } }, { newArgs: null });
    const made = await s.cli(['new', '--production', 'alcapana', '--tag', 'v1']);
    expect(made.code, made.stderr).toBe(65);
    expect(made.stderr).toMatch(/types\.alcapana\.outputs\.hist: for run \d+ .* outside dataDir .*\/data; outputs must stay under dataDir/);
    expect(await productions(s)).toBe(0);
  });

  it('a dataset name already in the catalogue that escapes through {dataset} is refused at new', async () => {
    const s = await scenario(3, { typeExtra: { outputs: { tree: '{dataDir}/{dataset}/tree{run:05d}.root', hist: '{dataDir}/hist/hist{run:05d}.txt' } } }, { newArgs: null });
    // A catalogue imported before names were checked (or written by hand in SQL).
    await sql`UPDATE runs SET dataset = '..' WHERE run_number = 5001`.execute(s.database.handle.db);
    const made = await s.cli(['new', '--production', 'alcapana', '--tag', 'v1']);
    expect(made.code, made.stderr).toBe(65);
    expect(made.stderr).toMatch(/types\.alcapana\.outputs\.tree: for run 5001 \(dataset "\.\."/);
    expect(await productions(s)).toBe(0);
    // Without that dataset the same templates are fine.
    const ok = await s.cli(['new', '--production', 'alcapana', '--tag', 'v1', '--datasets', 'SiR2,Al100']);
    expect(ok.code, ok.stderr).toBe(0);
  });
});

describe('the shared staging area', () => {
  it('a symlink planted at the partial-download name is never written through: the victim is untouched', async () => {
    // The quota command holds the first downloads until the test has planted its symlinks: by then
    // the session exists (its id is part of the partial name) and has claimed the runs.
    const s = await scenario(3, {
      extraConfig: { quota: { command: 'while [ ! -e ./go ]; do sleep 0.1; done; echo used=0 limit=1000000000', pattern: 'used=(?<used>\\d+) limit=(?<limit>\\d+)' } },
    });
    const victim = join(s.fixture.dir, 'victim.txt');
    await writeFile(victim, 'precious\n');
    const session = s.start([...RUN, '--until-done']);
    await session.waitFor(/Claimed run: 5002/);
    const id = await sessionOf(s, session.child.pid!);
    expect(id).toBeDefined();
    const dir = join(s.fixture.dir, 'staging', 'alcapana', 'v1');
    await mkdir(dir, { recursive: true });
    const partial = (run: number) => join(dir, `run${run}.run0${run}.mid.part-${id!.slice(0, 8)}-a1`);
    await symlink(victim, partial(5000));
    await symlink(victim, partial(5001));
    // A regular file planted at the name is not written into either.
    await writeFile(partial(5002), 'planted\n');
    await writeFile(join(s.fixture.dir, 'go'), '');
    const result = await session.done;
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(await readFile(victim, 'utf8')).toBe('precious\n');
    expect((await lstat(victim)).isFile()).toBe(true);
    // Each planted name failed its try (EEXIST), the name was removed and the download tried again.
    for (const run of [5000, 5001, 5002]) expect(result.stdout).toMatch(new RegExp(`Download of run ${run} failed \\(try 1\\): .*EEXIST`));
    expect(await statusCounts(s)).toEqual({ finished: 3 });
  });

  it('a catalogue source outside the archive root (a 0600 .netrc, directly or through a symlink) is not copied', async () => {
    const secret = 'machine archive login shifter password s3cret-of-the-victim\n';
    const s = await scenario(3, { typeExtra: { maxAttempts: 1 } }, {
      async prepare(fixture) {
        const home = join(fixture.dir, 'home');
        await mkdir(home);
        const netrc = join(home, '.netrc');
        await writeFile(netrc, secret);
        await chmod(netrc, 0o600);
        // A symlink inside the archive pointing out of it counts as outside.
        await symlink(netrc, join(fixture.dir, 'archive', 'innocent.mid'));
        const size = Buffer.byteLength(secret);
        await writeFile(
          fixture.catalogue,
          'run,dataset,quality,size_bytes,source\n' +
            `5000,SiR2,gold,${(await stat(join(fixture.dir, 'archive', 'run05000.mid'))).size},\n` +
            `5001,SiR2,gold,${size},${netrc}\n` +
            `5002,SiR2,gold,${size},${join(fixture.dir, 'archive', 'innocent.mid')}\n`,
        );
      },
    });
    const result = await s.cli([...RUN, '--until-done']);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 1, failed: 2 });
    const failed = await s.database.handle.db.selectFrom('production_runs').select(['run_number', 'last_error']).where('status', '=', 'failed').orderBy('run_number').execute();
    expect(failed[0]!.last_error).toMatch(/home\/\.netrc is refused: it is outside the archive root .*\/archive/);
    expect(failed[1]!.last_error).toMatch(/innocent\.mid is refused: it is \(through a symlink\) .*\.netrc, outside the archive root/);
    expect(await filesWith(join(s.fixture.dir, 'staging'), 's3cret')).toEqual([]);
    expect(await filesWith(join(s.fixture.dir, 'data'), 's3cret')).toEqual([]);
  });
});

describe('the file archive on real files', () => {
  async function world() {
    const dir = await mkdtemp(join(tmpdir(), 'rp-confine-'));
    const root = join(dir, 'archive');
    const staging = join(dir, 'staging');
    await mkdir(root);
    await mkdir(staging);
    await writeFile(join(root, 'run1.mid'), 'raw bytes of run 1\n');
    const archive = createFileArchive({ root });
    const fetch = (source: string, destination: string) =>
      archive.fetch({ run: 1, url: new URL(`file://${source}`), destination, signal: new AbortController().signal });
    return { dir, root, staging, archive, fetch };
  }

  it('writes a new file of mode 0640', async () => {
    const w = await world();
    const destination = join(w.staging, 'run1.part');
    await expect(w.fetch(join(w.root, 'run1.mid'), destination)).resolves.toEqual({ bytes: 19 });
    expect((await stat(destination)).mode & 0o777).toBe(0o640 & ~process.umask());
    expect(await readFile(destination, 'utf8')).toBe('raw bytes of run 1\n');
  });

  it('fails instead of writing through a symlink or into a file at the destination', async () => {
    const w = await world();
    const victim = join(w.dir, 'victim');
    await writeFile(victim, 'precious');
    const link = join(w.staging, 'link.part');
    await symlink(victim, link);
    await expect(w.fetch(join(w.root, 'run1.mid'), link)).rejects.toThrow(/EEXIST/);
    expect(await readFile(victim, 'utf8')).toBe('precious');
    const planted = join(w.staging, 'planted.part');
    await writeFile(planted, 'planted');
    await expect(w.fetch(join(w.root, 'run1.mid'), planted)).rejects.toThrow(/EEXIST/);
  });

  it('reads only under its root, symlinks resolved; a symlink within the root is fine', async () => {
    const w = await world();
    const outside = join(w.dir, 'secret');
    await writeFile(outside, 'secret');
    await symlink(outside, join(w.root, 'escape.mid'));
    await mkdir(join(w.root, 'sub'));
    await symlink(join(w.root, 'run1.mid'), join(w.root, 'sub', 'alias.mid'));
    const destination = join(w.staging, 'x.part');
    for (const source of [outside, join(w.root, 'escape.mid'), join(w.root, '..', 'secret')]) {
      const error = await w.fetch(source, destination).catch((e: unknown) => e);
      expect(error, source).toBeInstanceOf(SourceOutsideArchiveError);
      expect(error).toBeInstanceOf(MissingInputError);
      expect(existsSync(destination)).toBe(false);
    }
    await expect(w.archive.size(new URL(`file://${outside}`), new AbortController().signal)).rejects.toBeInstanceOf(SourceOutsideArchiveError);
    await expect(w.fetch(join(w.root, 'sub', 'alias.mid'), destination)).resolves.toEqual({ bytes: 19 });
    // Without a root (the type's input.source is not a local archive) no local file is read.
    const rootless = createFileArchive({});
    await expect(
      rootless.fetch({ run: 1, url: new URL(`file://${join(w.root, 'run1.mid')}`), destination: join(w.staging, 'y.part'), signal: new AbortController().signal }),
    ).rejects.toBeInstanceOf(SourceOutsideArchiveError);
  });
});
