import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Runs the real CLI (bin/run-production, built dist/) as a separate OS process. */

export const BIN = fileURLToPath(new URL('../../bin/run-production', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliProcess {
  child: ChildProcess;
  output(): { stdout: string; stderr: string };
  /** Resolves when a line matching the pattern has been printed. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  done: Promise<CliResult>;
}

export function startCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd,
    env: { ...process.env, NO_COLOR: '1', RUN_PRODUCTION_NO_EXIT: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const check = () => {
    for (const w of [...waiters]) {
      if (w.pattern.test(stdout) || w.pattern.test(stderr)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    check();
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    check();
  });
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return {
    child,
    output: () => ({ stdout, stderr }),
    waitFor(pattern, timeoutMs = 60_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; stdout:\n${stdout}\nstderr:\n${stderr}`)), timeoutMs);
        waiters.push({
          pattern,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        check();
      });
    },
    done,
  };
}

export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return startCli(args, options).done;
}

export interface ProductionFixture {
  dir: string;
  configFile: string;
  catalogue: string;
  /** While this file exists, every job waits (lets a test catch sessions with jobs on the grid). */
  holdFile: string;
  /** One line `RUN ATTEMPT` per start of the job script. */
  executionsLog: string;
  env: NodeJS.ProcessEnv;
}

/**
 * A production directory: an archive of small raw files, a catalogue, a job
 * script, and a config with the file:// archive and the local grid. The job
 * script's behaviour per run is steered by files in the directory:
 * `fail-RUN` (exit 7 every attempt), `fail-once-RUN` (exit 5 on attempt 1),
 * `truncate-RUN` (a ROOT file shorter than its header says, exit 0),
 * `nooutput-RUN` (no tree, exit 0), and `hold` (wait while it exists). Every
 * time the script starts it appends `RUN ATTEMPT` to `executions.log`, so a test
 * can tell how often a run's job really ran.
 */
export async function createProductionFixture(options: { runs: number; firstRun?: number; extraConfig?: Record<string, unknown>; typeExtra?: Record<string, unknown>; jobSleep?: number }): Promise<ProductionFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'rp-fixture-'));
  const first = options.firstRun ?? 5000;
  await mkdir(join(dir, 'archive'), { recursive: true });
  const lines = ['run,dataset,quality,size_bytes'];
  const datasets = ['SiR2', 'Al50b', 'Al100'];
  for (let i = 0; i < options.runs; i++) {
    const run = first + i;
    const content = Buffer.alloc(2048 + (run % 7) * 100, run % 251);
    await writeFile(join(dir, 'archive', `run${String(run).padStart(5, '0')}.mid`), content);
    lines.push(`${run},${datasets[i % 3]},gold,${content.length}`);
  }
  const catalogue = join(dir, 'catalogue.csv');
  await writeFile(catalogue, lines.join('\n') + '\n');
  const script = join(dir, 'job.sh');
  await writeFile(
    script,
    `#!/bin/bash
set -u
D=${JSON.stringify(dir)}
echo "$RUN $ATTEMPT" >> "$D/executions.log"
while [ -e "$D/hold" ]; do sleep 0.2; done
sleep ${options.jobSleep ?? 0.05}
echo "run $RUN attempt $ATTEMPT input $INPUT"
if [ -e "$D/fail-$RUN" ]; then echo "failing on purpose (fail-$RUN)" >&2; exit 7; fi
if [ -e "$D/fail-once-$RUN" ] && [ "$ATTEMPT" = 1 ]; then echo "failing once (fail-once-$RUN)" >&2; exit 5; fi
be32() { printf "\\\\x$(printf %02x $(( ($1 >> 24) & 255 )))\\\\x$(printf %02x $(( ($1 >> 16) & 255 )))\\\\x$(printf %02x $(( ($1 >> 8) & 255 )))\\\\x$(printf %02x $(( $1 & 255 )))"; }
size=1024
[ -e "$D/truncate-$RUN" ] && size=600
if [ ! -e "$D/nooutput-$RUN" ]; then
  { printf 'root'; be32 62400; be32 100; be32 1024; head -c $(( size - 16 )) /dev/zero; } > "$OUTPUT_TREE"
fi
echo "hist of $RUN" > "$OUTPUT_HIST"
`,
  );
  await chmod(script, 0o755);
  const configFile = join(dir, 'run-production.json');
  await writeFile(
    configFile,
    JSON.stringify(
      {
        dataDir: './data',
        stagingDir: './staging',
        ...options.extraConfig,
        types: {
          alcapana: {
            input: { source: './archive/run{run:05d}.mid' },
            job: { backend: 'local', script: './job.sh' },
            outputs: {
              tree: '{dataDir}/tree/v{version}/tree{run:05d}.root',
              hist: '{dataDir}/hist/v{version}/hist{run:05d}.txt',
              olog: '{dataDir}/log/v{version}/alcapana.run{run:05d}.out',
              elog: '{dataDir}/log/v{version}/alcapana.run{run:05d}.err',
            },
            maxAttempts: 3,
            ...options.typeExtra,
          },
          rootana: {
            parent: 'alcapana',
            input: { fromParent: 'tree' },
            job: { backend: 'local', script: './job.sh' },
            outputs: {
              tree: '{dataDir}/rootana/v{version}/out{run:05d}.root',
              hist: '{dataDir}/rootana/v{version}/hist{run:05d}.txt',
            },
          },
        },
      },
      null,
      2,
    ),
  );
  return { dir, configFile, catalogue, holdFile: join(dir, 'hold'), executionsLog: join(dir, 'executions.log'), env: { RUN_PRODUCTION_CONFIG: configFile } };
}
