import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { typeFromConfig } from '../../config/config.js';
import { createProduction, type Production } from '../../coordinator/productions.js';
import { requireConfig, withContext, type Context, type GlobalOptions } from '../context.js';
import { ExpectedError } from '../errors.js';
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
  const config = await requireConfig(globals);
  const type = typeFromConfig(config, options.production);
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
