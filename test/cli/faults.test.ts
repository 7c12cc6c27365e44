import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sql } from 'kysely';
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

describe('--until-done means the production is done', () => {
  it('a replacement started at once after a SIGKILL waits for the lease, adopts the runs and exits 0 only when every run is finished', async () => {
    const s = await scenario(6, { firstRun: 1500 });
    await writeFile(s.fixture.holdFile, '');
    const first = s.start([...RUN, '--nproc', '6', '--nprep', '0', '--lease', '4']);
    await until(async () => (await statusCounts(s)).running === 6, 'six runs running under the first session');
    first.child.kill('SIGKILL');
    await first.done;
    const replacement = s.start([...RUN, '--until-done', '--lease', '4']);
    await rm(s.fixture.holdFile);
    const result = await replacement.done;
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/production done: every run finished or failed/);
    expect(await statusCounts(s)).toEqual({ finished: 6 });
    expect([...(await finishedEventsPerRun(s)).values()].every((n) => n === 1)).toBe(true);
    // The adopted jobs were judged, not run again.
    expect((await readFile(s.fixture.executionsLog, 'utf8')).trim().split('\n')).toHaveLength(6);
  });

  it('--until-done waits on a paused production and says so; --until-idle keeps the old meaning', async () => {
    const s = await scenario(3, { firstRun: 1600 });
    expect((await s.cli(['pause', '--production', 'alcapana', '--reason', 'calibration not ready'])).code).toBe(0);
    await writeFile(s.fixture.holdFile, '');
    const done = s.start([...RUN, '--until-done']);
    await done.waitFor(/Not done yet: production paused \(calibration not ready\); waiting for resume/);
    expect((await s.cli(['resume', '--production', 'alcapana'])).code).toBe(0);
    await until(async () => (await statusCounts(s)).running === 3, 'every run running under the first session');
    // Nothing left to claim and nothing held: --until-idle ends although the production is not done.
    const idle = await s.cli([...RUN, '--until-idle']);
    expect(idle.code, idle.stdout + idle.stderr).toBe(0);
    expect(idle.stdout).toMatch(/ended: nothing left to claim/);
    expect(done.child.exitCode).toBeNull();
    await rm(s.fixture.holdFile);
    const result = await done.done;
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 3 });
    expect((await s.cli([...RUN, '--until-done', '--until-idle'])).code).toBe(64);
  });
});

/** A quota command that answers after $RP_TEST_QUOTA_DELAY seconds (each session's own environment). */
const SLOW_QUOTA = {
  quota: { command: 'sleep ${RP_TEST_QUOTA_DELAY:-0}; echo used=0 limit=1000000000', pattern: 'used=(?<used>\\d+) limit=(?<limit>\\d+)' },
};

async function reapEvents(s: Scenario): Promise<number> {
  const row = await sql<{ n: number }>`SELECT count(*)::int AS n FROM events WHERE kind = 'reap'`.execute(s.database.handle.db);
  return row.rows[0]!.n;
}

describe('slow and hung passes', () => {
  it('a pass longer than the lease no longer costs a live session its lease, and the command that hangs is named', async () => {
    const s = await scenario(6, { firstRun: 1700, extraConfig: SLOW_QUOTA });
    // The slow session's every pass waits 10 s for the quota command; the other's answers at once.
    const slow = s.start([...RUN, '--until-done', '--lease', '4', '--nproc', '3', '--nprep', '0'], { RP_TEST_QUOTA_DELAY: '10' });
    await slow.waitFor(/Claimed run/);
    const quick = s.start([...RUN, '--until-done', '--lease', '4', '--nproc', '3', '--nprep', '0']);
    await slow.waitFor(/quota command has not answered for \d+s/);
    const results = await Promise.all([slow.done, quick.done]);
    for (const r of results) expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await reapEvents(s)).toBe(0);
    expect(await statusCounts(s)).toEqual({ finished: 6 });
    expect([...(await finishedEventsPerRun(s)).values()].every((n) => n === 1)).toBe(true);
  });

  it('Ctrl-C during a command that hangs rolls back at once, without waiting for the command', async () => {
    const s = await scenario(2, { firstRun: 1800, extraConfig: SLOW_QUOTA });
    const session = s.start([...RUN, '--lease', '30'], { RP_TEST_QUOTA_DELAY: '60' });
    await session.waitFor(/quota command has not answered/, 30_000);
    const sent = Date.now();
    session.child.kill('SIGINT');
    const result = await session.done;
    expect(result.code, result.stdout + result.stderr).toBe(130);
    expect(Date.now() - sent, 'the rollback waited for the hung command').toBeLessThan(8_000);
    expect(await statusCounts(s)).toEqual({ new: 2 });
  });

  it('a pass stuck beyond the watchdog stops heartbeating and says why; once it moves, the session goes on', async () => {
    const s = await scenario(3, { firstRun: 1900 });
    // A DBA's long transaction: every run move waits on the status counters' table lock.
    const blocker = await s.database.handle.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE production_status_counts IN EXCLUSIVE MODE');
      const session = s.start([...RUN, '--until-done', '--lease', '4', '--watchdog', '2']);
      await session.waitFor(/No progress for \d+s while claiming; not heartbeating/);
      await until(async () => {
        const age = await sql<{ age: number }>`SELECT extract(epoch FROM now() - heartbeat_at)::float8 AS age FROM sessions WHERE ended_at IS NULL`.execute(s.database.handle.db);
        return (age.rows[0]?.age ?? 0) > 4;
      }, 'the stuck session let its lease run out');
      await blocker.query('ROLLBACK');
      const result = await session.done;
      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(result.stdout).toMatch(/The loop moves again/);
      expect(await statusCounts(s)).toEqual({ finished: 3 });
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
  });
});


describe('one bad run, one bad setting', () => {
  it('a job that cannot be prepared fails that attempt only; the healthy jobs go on', async () => {
    const s = await scenario(6, {
      firstRun: 2000,
      typeExtra: { maxAttempts: 2, outputs: { tree: '{dataDir}/tree/{dataset}/tree{run:05d}.root', hist: '{dataDir}/hist/hist{run:05d}.txt' } },
    });
    // Al50b's output directory cannot be made: a file stands where it should be.
    await mkdir(join(s.fixture.dir, 'data', 'tree'), { recursive: true });
    await writeFile(join(s.fixture.dir, 'data', 'tree', 'Al50b'), 'not a directory');
    const result = await s.cli([...RUN, '--until-done']);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const rows = await s.database.handle.db.selectFrom('production_runs').select(['run_number', 'dataset', 'status', 'attempts', 'last_error']).orderBy('run_number').execute();
    for (const row of rows) {
      if (row.dataset === 'Al50b') {
        expect(row).toMatchObject({ status: 'failed', attempts: 2 });
        expect(row.last_error).toMatch(/could not be prepared/);
      } else expect(row).toMatchObject({ status: 'finished', attempts: 1 });
    }
    expect(result.stdout).not.toMatch(/Aborting|Cancelling job/);
  });

  it('a read-only dataDir is a one-line error, and leaves no session behind', async () => {
    const disk = await mountTmpfs('1m');
    try {
      const s = await scenario(2, { firstRun: 2100, extraConfig: { dataDir: disk.dir } });
      await disk.readOnly();
      const result = await s.cli([...RUN, '--until-done']);
      expect(result.code).toBe(73);
      expect(result.stderr).toMatch(new RegExp(`Cannot write to the production's dataDir ${disk.dir} \\(EROFS`));
      expect(result.stderr).not.toMatch(/\n\s+at /);
      expect(await s.database.handle.db.selectFrom('sessions').select('id').where('ended_at', 'is', null).execute()).toEqual([]);
    } finally {
      await disk.unmount();
    }
  });

  it('new refuses a job script that does not exist or is not a file, naming it', async () => {
    const s = await scenario(2, { firstRun: 2200, typeExtra: { job: { backend: 'local', script: './no-such-job.sh' } } }, { newArgs: null });
    const missing = await s.cli(['new', '--production', 'alcapana', '--tag', 'v1']);
    expect(missing.code).toBe(65);
    expect(missing.stderr).toMatch(/types\.alcapana\.job\.script: the job script \S+\/no-such-job\.sh does not exist/);
    await mkdir(join(s.fixture.dir, 'no-such-job.sh'));
    const directory = await s.cli(['new', '--production', 'alcapana', '--tag', 'v1']);
    expect(directory.code).toBe(65);
    expect(directory.stderr).toMatch(/no-such-job\.sh is not a file/);
    expect(await s.database.handle.db.selectFrom('productions').select('id').execute()).toEqual([]);
  });
});
