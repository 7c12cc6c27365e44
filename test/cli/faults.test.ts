import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { filesUnder, finishedEventsPerRun, RUN, scenario, statusCounts } from '../helpers/scenario.js';

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
