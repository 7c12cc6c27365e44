import type { Command } from 'commander';
import { ExpectedError } from '../core/errors.js';
import { positiveInt } from './parse.js';

/** Flags the bookkeeping commands share, so they read and fail the same way. */

export interface ProductionFlags {
  production: string;
  version?: number;
}

export function addProductionFlags(command: Command, required = true): Command {
  return (required ? command.requiredOption('--production <type>', 'production type') : command.option('--production <type>', 'production type')).option(
    '--version <n>',
    'version (default: the highest)',
    positiveInt,
  );
}

export type OutputStyle = 'text' | 'json' | 'markdown';

export function outputStyle(options: { json?: boolean; markdown?: boolean }): OutputStyle {
  if (options.json && options.markdown) throw new ExpectedError('--json and --markdown exclude each other; give one.', 64);
  return options.json ? 'json' : options.markdown ? 'markdown' : 'text';
}
