import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { filesUnder, finishedEventsPerRun, RUN, scenario, statusCounts, until, type Scenario } from '../helpers/scenario.js';
import { mountTmpfs, type Tmpfs } from '../helpers/tmpfs.js';

/**
 * Faults a shifter meets at night (issue 12), each with real CLI processes, the real database and
 * the local grid: inputs whose names collide, an archive that goes away, a full or read-only disk,
 * a session killed under --until-done, a job that cannot be prepared.
 */

/** Makes the job script log the checksum of the input it was given, as `RUN MD5`, to inputs.log. */
async function logInputChecksums(dir: string): Promise<string> {
  const script = join(dir, 'job.sh');
  const text = await readFile(script, 'utf8');
  const hold = 'while [ -e "$D/hold" ]; do sleep 0.2; done\n';
  if (!text.includes(hold)) throw new Error('the fixture job script has changed: no hold loop');
  // After the hold: the input as the job reads it, once every run has been staged.
  await writeFile(script, text.replace(hold, hold + 'echo "$RUN $(md5sum < "$INPUT" | cut -d" " -f1)" >> ' + JSON.stringify(join(dir, 'inputs.log')) + '\n'));
  return join(dir, 'inputs.log');
}

const md5 = (bytes: Buffer) => createHash('md5').update(bytes).digest('hex');

describe('inputs whose file names collide', () => {
  it('runs whose sources share a basename each get their own bytes', async () => {
    const runs = [401, 402, 403, 404, 405, 406];
    const expected = new Map<number, string>();
    const s = await scenario(runs.length, { firstRun: 401 }, {
      // Sources laid out as run00401/raw.mid, named by the catalogue's source column; every file the
      // same size (so a size check alone cannot tell them apart) and no checksum.
      async prepare(fixture) {
        const lines = ['run,dataset,quality,size_bytes,source'];
        for (const run of runs) {
          const bytes = Buffer.alloc(4096, run % 251);
          const source = join(fixture.dir, 'archive', `run${String(run).padStart(5, '0')}`, 'raw.mid');
          await mkdir(join(source, '..'), { recursive: true });
          await writeFile(source, bytes);
          expected.set(run, md5(bytes));
          lines.push(`${run},SiR2,gold,${bytes.length},${source}`);
        }
        await writeFile(fixture.catalogue, lines.join('\n') + '\n');
      },
    });
    const inputsLog = await logInputChecksums(s.fixture.dir);
    // Every input is staged before any job reads its input: the jobs wait while the hold file exists.
    await writeFile(s.fixture.holdFile, '');
    const session = s.start([...RUN, '--until-done', '--nproc', '6', '--nprep', '6']);
    await session.waitFor(/Submitting run: 406/);
    await rm(s.fixture.holdFile);
    const result = await session.done;
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: runs.length });
    const seen = new Map((await readFile(inputsLog, 'utf8')).trim().split('\n').map((line) => line.split(' ') as [string, string]).map(([run, sum]) => [Number(run), sum]));
    for (const run of runs) expect(seen.get(run), `run ${run} was given another run's input`).toBe(expected.get(run));
    expect([...(await finishedEventsPerRun(s)).values()].every((n) => n === 1)).toBe(true);
    expect(await filesUnder(join(s.fixture.dir, 'staging'))).toEqual([]);
  });
});

/** Every run of the production as the database has it: status and attempts counted. */
async function runRows(s: Scenario) {
  return s.database.handle.db.selectFrom('production_runs').select(['run_number', 'status', 'attempts', 'last_error']).orderBy('run_number').execute();
}

async function productionRow(s: Scenario) {
  return s.database.handle.db.selectFrom('productions').select(['status', 'status_reason']).where('type', '=', 'alcapana').executeTakeFirstOrThrow();
}

/** Each job script started once, on attempt 1. */
async function everyRunRanOnceOnAttempt1(s: Scenario, runs: number): Promise<void> {
  const starts = (await readFile(s.fixture.executionsLog, 'utf8')).trim().split('\n');
  expect(starts).toHaveLength(runs);
  expect(starts.every((line) => line.endsWith(' 1'))).toBe(true);
  expect((await runRows(s)).every((r) => r.status === 'finished' && r.attempts === 1)).toBe(true);
}

describe('infrastructure faults are not failures of runs', () => {
  const mounts: Tmpfs[] = [];
  afterEach(async () => {
    while (mounts.length) await mounts.pop()!.unmount();
  });

  it('an archive that is gone pauses downloads with a banner, then the production; no attempt is counted', async () => {
    const s = await scenario(4, { firstRun: 1100, typeExtra: { autoPause: { infrastructure: 2 } } });
    const archive = join(s.fixture.dir, 'archive');
    await rename(archive, `${archive}.unmounted`);
    await mkdir(archive); // an empty mount point, as an unmounted file system leaves it
    const session = s.start([...RUN, '--until-done']);
    await session.waitFor(/Archive unreachable/);
    await until(async () => (await productionRow(s)).status === 'paused', 'the production paused itself');
    expect((await productionRow(s)).status_reason).toMatch(/archive cannot be read/);
    expect((await runRows(s)).every((r) => r.attempts === 0 && r.status !== 'failed' && r.status !== 'new')).toBe(true);
    // The archive comes back; a coordinator resumes; every run is done once, on attempt 1.
    await rm(archive, { recursive: true });
    await rename(`${archive}.unmounted`, archive);
    expect((await s.cli(['resume', '--production', 'alcapana'])).code).toBe(0);
    const result = await session.done;
    expect(result.code, result.stdout + result.stderr).toBe(0);
    await everyRunRanOnceOnAttempt1(s, 4);
  });

  it('a single missing file in an archive that answers stays the run\'s fault', async () => {
    const s = await scenario(3, { firstRun: 1200, typeExtra: { maxAttempts: 2 } });
    await rm(join(s.fixture.dir, 'archive', 'run01201.mid'));
    const result = await s.cli([...RUN, '--until-done']);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const rows = await runRows(s);
    expect(rows.find((r) => r.run_number === 1201)).toMatchObject({ status: 'failed', attempts: 2 });
    expect(rows.find((r) => r.run_number === 1201)!.last_error).toMatch(/input missing/);
    expect(rows.filter((r) => r.status === 'finished').map((r) => r.run_number)).toEqual([1200, 1202]);
  });

  it('a full staging disk pauses downloads with a banner and no run loses an attempt', async () => {
    const disk = await mountTmpfs('64k');
    mounts.push(disk);
    await disk.fill();
    // The quota command says there is room: the disk fills up behind the session's back.
    const s = await scenario(3, {
      firstRun: 1300,
      extraConfig: { stagingDir: disk.dir, quota: { command: 'echo used=0 limit=1000000000', pattern: 'used=(?<used>\\d+) limit=(?<limit>\\d+)' } },
    });
    const session = s.start([...RUN, '--until-done']);
    await session.waitFor(/Staging area not writable/);
    expect(session.output().stdout).toMatch(/ENOSPC/);
    expect((await runRows(s)).every((r) => r.attempts === 0 && r.status !== 'failed')).toBe(true);
    await disk.empty();
    const result = await session.done;
    expect(result.code, result.stdout + result.stderr).toBe(0);
    await everyRunRanOnceOnAttempt1(s, 3);
  });

  it('a read-only staging area shows a banner and waits; once writable the runs go on', async () => {
    const disk = await mountTmpfs('1m');
    mounts.push(disk);
    await disk.readOnly();
    const s = await scenario(3, { firstRun: 1400, extraConfig: { stagingDir: disk.dir } });
    const session = s.start([...RUN, '--until-done']);
    await session.waitFor(/Staging area not writable/);
    expect(session.output().stdout).toMatch(/EROFS/);
    expect((await runRows(s)).every((r) => r.attempts === 0 && r.status !== 'failed')).toBe(true);
    await disk.writable();
    const result = await session.done;
    expect(result.code, result.stdout + result.stderr).toBe(0);
    await everyRunRanOnceOnAttempt1(s, 3);
  });
});
