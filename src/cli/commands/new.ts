import type { Command } from 'commander';
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { sql } from 'kysely';
import { typeFromConfig } from '../../config/config.js';
import { checkConfined, isSafeName, NAME_RULE, type SampleRun } from '../../outputs/confine.js';
import { terminalJson } from '../../core/sanitize.js';
import { createProduction, type Production } from '../../state/productions.js';
import { requireConfig, withContext, type Context, type GlobalOptions } from '../context.js';
import { ExpectedError } from '../../core/errors.js';
import { commaList, positiveInt } from '../parse.js';

export interface NewOptions {
  production: string;
  tag: string;
  fromVersion?: number;
  modules?: string;
  datasets?: string[];
  quality?: string;
  maxRunning?: number;
}

/** Shared by `new` and `run --new`: validates the config, freezes the type, creates the next version. */
export async function startNewProduction(context: Context, globals: GlobalOptions, options: NewOptions): Promise<Production> {
  // The tag and the dataset names become parts of paths ({tag}, {dataset}): names, never paths.
  if (!isSafeName(options.tag)) throw new ExpectedError(`--tag ${terminalJson(options.tag)}: a software tag is ${NAME_RULE}. Nothing was created.`, 65);
  for (const dataset of options.datasets ?? []) {
    if (!isSafeName(dataset)) throw new ExpectedError(`--datasets ${terminalJson(dataset)}: a dataset name is ${NAME_RULE}. Nothing was created.`, 65);
  }
  const config = await requireConfig(globals);
  const type = typeFromConfig(config, options.production);
  await requireRunnableScript(config.file, `types.${type.type}.job.script`, type.job.script);
  checkConfined(type, { type: type.type, version: 1, tag: options.tag, user: context.user }, await sampleRuns(context, options));
  let modules: string | null = null;
  if (options.modules) {
    try {
      modules = await readFile(resolve(options.modules), 'utf8');
    } catch (error) {
      throw new ExpectedError(`--modules ${options.modules}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).`, 66);
    }
  }
  const { production, runs } = await createProduction(context.handle.db, {
    type,
    tag: options.tag,
    fromVersion: options.fromVersion,
    modules,
    datasets: options.datasets,
    quality: options.quality,
    maxRunning: options.maxRunning,
    actor: context.actor,
  });
  console.log(`INFO: Starting new production, version ${production.version}`);
  console.log(`INFO: ${production.type} v${production.version} (tag ${production.tag}) has ${runs} runs`);
  return production;
}

/**
 * One run of each dataset the production will hold (the first by number), with its catalogue
 * source: what checkConfined fills the templates for. For a child production the catalogue's runs
 * stand for the parent's, of which they are a superset.
 */
async function sampleRuns(context: Context, options: NewOptions): Promise<SampleRun[]> {
  const datasets = options.datasets?.length ? options.datasets : null;
  const quality = options.quality ?? null;
  const rows = await sql<{ run_number: number; dataset: string; source: string | null }>`
    SELECT DISTINCT ON (dataset) run_number, dataset, source FROM runs
     WHERE (${datasets}::text[] IS NULL OR dataset = ANY(${datasets}::text[]))
       AND (${quality}::text IS NULL OR quality = ${quality}::text)
     ORDER BY dataset, run_number`.execute(context.handle.db);
  return rows.rows.map((r) => ({ run: r.run_number, dataset: r.dataset, source: r.source }));
}

/**
 * A job script that is missing or cannot be read would fail every attempt of every run, on the
 * grid, one after another: refused here, where the shifter can fix it. (The wrapper runs a script
 * without the execute bit through bash, so readable is enough.)
 */
async function requireRunnableScript(configFile: string, field: string, script: string): Promise<void> {
  let problem: string | null = null;
  try {
    const info = await stat(script);
    if (!info.isFile()) problem = 'is not a file';
    else await access(script, constants.R_OK).catch(() => (problem = 'cannot be read'));
  } catch (error) {
    problem = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read (${(error as NodeJS.ErrnoException).code})`;
  }
  if (problem) throw new ExpectedError(`${configFile}: ${field}: the job script ${script} ${problem}; fix the path (relative paths are relative to the config file) or create the script.`, 65);
}

export function registerNew(program: Command): void {
  program
    .command('new')
    .description('create the next version of a production type from the config file')
    .requiredOption('--production <type>', 'production type (a key of "types" in the config)')
    .requiredOption('--tag <software-tag>', 'software tag the jobs run with')
    .option('--from-version <n>', "parent production's version to read from (default: its highest)", positiveInt)
    .option('--modules <file>', 'modules file; its text is frozen into the production')
    .option('--datasets <list>', 'only these datasets (comma-separated)', commaList)
    .option('--quality <flag>', 'only runs of this quality (e.g. gold)')
    .option('--max-running <n>', 'cap on runs in flight across all sessions', positiveInt)
    .action(async (options: NewOptions, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      await withContext(globals, (context) => startNewProduction(context, globals, options));
    });
}
