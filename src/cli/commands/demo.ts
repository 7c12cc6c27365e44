import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { importCatalogue } from '../../admin/catalogue.js';
import { readCounts } from '../../state/counts.js';
import { embeddedPaths } from '../../db/embedded.js';
import { RUN_STATUSES, STATUS_LETTERS } from '../../core/statuses.js';
import { findProduction } from '../../state/productions.js';
import { openContext, type GlobalOptions } from '../context.js';
import { addLoopOptions, runProduction, type RunOptions } from './run.js';

/**
 * `npm start`: a small AlCap-like production from nothing but `npm ci`. On the
 * embedded PostgreSQL it imports a catalogue of 30 runs (SiR2, Al50b, Al100)
 * with generated raw files in a local archive, writes a config with the
 * file:// archive and the local grid, creates the next alcapana version and
 * runs it to completion, then prints the status. Run 3105 fails once to show
 * a retry. Everything it writes stays under the demo directory it names.
 */

const DATASETS: { name: string; first: number; quality: string }[] = [
  { name: 'SiR2', first: 2091, quality: 'gold' },
  { name: 'Al50b', first: 3101, quality: 'gold' },
  { name: 'Al100', first: 4201, quality: 'silver' },
];
const RUNS_PER_DATASET = 10;
export const DEMO_FLAKY_RUN = 3105;

/** A minimal valid ROOT file: magic, version, fBEGIN, and fEND equal to the file length. */
const JOB_SCRIPT = `#!/bin/bash
# Demo job: reads its staged raw file and writes tree, hist, odb and logs, as alcapana would.
set -euo pipefail
echo "alcapana demo: run $RUN ($DATASET), attempt $ATTEMPT, tag $SOFTWARE_TAG"
echo "input: $INPUT ($(wc -c <"$INPUT") bytes, md5 $(md5sum "$INPUT" | cut -c1-32))"
echo "modules: $(wc -l <"$MODULES_FILE") line(s) from $MODULES_FILE"
if [ "$RUN" = "${DEMO_FLAKY_RUN}" ] && [ "$ATTEMPT" = "1" ]; then
  echo "ERROR: MIDAS bank ADC0 corrupt in event 1234 (demo: fails on the first attempt)" >&2
  exit 3
fi
be32() { printf "\\x$(printf %02x $(( ($1 >> 24) & 255 )))\\x$(printf %02x $(( ($1 >> 16) & 255 )))\\x$(printf %02x $(( ($1 >> 8) & 255 )))\\x$(printf %02x $(( $1 & 255 )))"; }
write_root() { # path, total size: written to a temporary name, then renamed
  { printf 'root'; be32 62400; be32 100; be32 "$2"; head -c $(( $2 - 16 )) /dev/zero; } >"$1.tmp"
  mv "$1.tmp" "$1"
}
sleep $(( 1 + RUN % 3 ))
write_root "$OUTPUT_TREE" 8192
write_root "$OUTPUT_HIST" 4096
printf '[/Runinfo]\\nRun number = INT : %s\\nDataset = STRING : %s\\n' "$RUN" "$DATASET" >"$OUTPUT_ODB"
echo "processed $(( RUN % 1000 + 5000 )) events"
`;

const MODULES = `# alcapana modules (demo)
MDQ_IslandCounter
TAnalysedPulseMapGenerator
TDetectorPulseGenerator
`;

function demoConfig(dir: string): object {
  return {
    $comment: 'Written by `run-production demo`. Paths are relative to this file.',
    dataDir: './data',
    stagingDir: './staging',
    types: {
      alcapana: {
        input: { source: './archive/run{run:05d}.mid' },
        job: { backend: 'local', script: './jobs/alcapana.sh' },
        outputs: {
          tree: '{dataDir}/tree/v{version}/tree{run:05d}.root',
          hist: '{dataDir}/hist/v{version}/hist{run:05d}.root',
          odb: '{dataDir}/dump/v{version}/dump{run:05d}.odb',
          olog: '{dataDir}/log/v{version}/alcapana.run{run:05d}.out',
          elog: '{dataDir}/log/v{version}/alcapana.run{run:05d}.err',
        },
        maxAttempts: 3,
      },
    },
    dir,
  };
}

function rawFile(run: number): Buffer {
  // Deterministic content, different per run; 32-96 KiB.
  const size = 32 * 1024 + (run % 5) * 16 * 1024;
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(`run ${run}`).digest();
  for (let i = 0; i < size; i += block.length) {
    block.copy(out, i);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export async function writeDemo(dir: string): Promise<{ configFile: string; catalogue: string }> {
  await mkdir(join(dir, 'archive'), { recursive: true });
  await mkdir(join(dir, 'jobs'), { recursive: true });
  const lines = ['run,dataset,quality,size_bytes,checksum'];
  for (const set of DATASETS) {
    for (let i = 0; i < RUNS_PER_DATASET; i++) {
      const run = set.first + i;
      const data = rawFile(run);
      await writeFile(join(dir, 'archive', `run${String(run).padStart(5, '0')}.mid`), data);
      lines.push(`${run},${set.name},${set.quality},${data.length},md5:${createHash('md5').update(data).digest('hex')}`);
    }
  }
  const catalogue = join(dir, 'catalogue.csv');
  await writeFile(catalogue, lines.join('\n') + '\n');
  const script = join(dir, 'jobs', 'alcapana.sh');
  await writeFile(script, JOB_SCRIPT);
  await chmod(script, 0o755);
  await writeFile(join(dir, 'modules.txt'), MODULES);
  const config = demoConfig(dir) as Record<string, unknown>;
  delete config.dir;
  const configFile = join(dir, 'run-production.json');
  await writeFile(configFile, JSON.stringify(config, null, 2) + '\n');
  return { configFile, catalogue };
}

export function registerDemo(program: Command): void {
  const command = program
    .command('demo')
    .description('run the demo production (30 AlCap-like runs, local archive and grid) on the embedded PostgreSQL')
    .option('--dir <path>', 'demo directory (default: RUN_PRODUCTION_HOME/demo)');
  addLoopOptions(command, { nproc: 4, nprep: 3, spacelim: 90, pause: 2 }).action(async (options: { dir?: string } & Partial<RunOptions>, cmd: Command) => {
    const globals = cmd.optsWithGlobals<GlobalOptions>();
    const dir = resolve(options.dir ?? join(embeddedPaths().home, 'demo'));
    console.log(`INFO: Demo directory: ${dir}`);
    const { configFile, catalogue } = await writeDemo(dir);
    // The demo never writes into a shared database named by DATABASE_URL; only an explicit --database.
    const demoGlobals: GlobalOptions = { database: globals.database, config: configFile };
    if (!globals.database) delete process.env.DATABASE_URL;
    const context = await openContext(demoGlobals);
    try {
      const result = await importCatalogue(context.handle.db, catalogue, { update: false, actor: context.actor });
      console.log(`INFO: Catalogue ${catalogue}: ${result.inserted} new, ${result.unchanged} unchanged`);
    } finally {
      await context.close();
    }
    const code = await runProduction(demoGlobals, {
      production: 'alcapana',
      new: 'demo-v1',
      modules: join(dir, 'modules.txt'),
      nproc: options.nproc!,
      nprep: options.nprep!,
      spacelim: options.spacelim!,
      pause: options.pause!,
      plain: options.plain,
      lease: options.lease,
      orphans: options.orphans ?? 'adopt',
      untilDone: true,
    });
    const after = await openContext(demoGlobals);
    try {
      const production = await findProduction(after.handle.db, 'alcapana');
      const counts = await readCounts(after.handle.db, production.id);
      console.log(`\nalcapana v${production.version}: ${counts.total} runs`);
      console.log('  ' + RUN_STATUSES.map((s) => `${STATUS_LETTERS[s]} ${s} ${counts.counts[s]}`).join('  '));
      console.log(`Outputs under ${join(dir, 'data')}; run again for the next version; query the bookkeeping with run-production status --production alcapana --config ${configFile}`);
    } finally {
      await after.close();
    }
    process.exitCode = code;
  });
}
