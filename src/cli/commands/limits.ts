import { InvalidArgumentError, type Command } from 'commander';
import { addProductionFlags, type ProductionFlags } from '../command-options.js';
import { setMaxRunning } from '../../admin/production-control.js';
import { findProduction } from '../../state/productions.js';
import { withContext, type GlobalOptions } from '../context.js';
import { printable } from '../../core/sanitize.js';
import { FLAG_MAXIMA, positiveIntUpTo } from '../parse.js';

/**
 * "none" lifts the cap; anything else must be a positive whole number. The parser returns the
 * word rather than null because commander replaces a parsed null with ''.
 */
const MAX_RUNNING = FLAG_MAXIMA['--max-running']!;

function maxRunningValue(value: string): number | 'none' {
  if (value.trim().toLowerCase() === 'none') return 'none';
  try {
    return positiveIntUpTo(MAX_RUNNING)(value);
  } catch {
    throw new InvalidArgumentError(`expected a positive whole number up to ${MAX_RUNNING}, or none to lift the cap.`);
  }
}

export function registerLimits(program: Command): void {
  addProductionFlags(program.command('limits').description("change a production's cap on runs in flight across all sessions"))
    .requiredOption('--max-running <n>', 'cap on runs claimed..running across all sessions, or none', maxRunningValue)
    .action(async (options: ProductionFlags & { maxRunning: number | 'none' }, command: Command) => {
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        const production = await findProduction(context.handle.db, options.production, options.version);
        console.log(printable((await setMaxRunning(context.handle.db, production, options.maxRunning === 'none' ? null : options.maxRunning, context.actor)).message));
      });
    });
}
