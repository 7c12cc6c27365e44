import type { Command } from 'commander';
import { addProductionFlags, type ProductionFlags } from '../command-options.js';
import { retryFailedRuns } from '../../admin/retry.js';
import { findProduction } from '../../state/productions.js';
import { printableLine, terminalJson } from '../../core/sanitize.js';
import { withContext, type GlobalOptions } from '../context.js';
import { datasetName, nonNegativeInt, positiveInt, runList } from '../parse.js';

export function registerRetry(program: Command): void {
  addProductionFlags(program.command('retry').description('return failed runs to new (attempts reset, or --max-attempts raised)'))
    .option('--runs <list>', 'only these runs (2091,2092 or 2091-2100)', runList)
    .option('--exit-code <n>', 'only runs whose last job exited with this code', nonNegativeInt)
    .option('--dataset <set>', 'only runs of this dataset', datasetName)
    .option('--max-attempts <n>', "raise the production's max attempts to N instead of resetting the runs' attempt counts", positiveInt)
    .option('--json', 'print JSON')
    .action(
      async (
        options: ProductionFlags & { runs?: number[]; exitCode?: number; dataset?: string; maxAttempts?: number; json?: boolean },
        command: Command,
      ) => {
        await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
          const production = await findProduction(context.handle.db, options.production, options.version);
          const outcome = await retryFailedRuns(
            context.handle.db,
            production,
            { runs: options.runs, exitCode: options.exitCode, dataset: options.dataset },
            context.actor,
            options.maxAttempts,
          );
          if (options.json) {
            console.log(terminalJson(outcome));
            return;
          }
          for (const s of outcome.skipped) console.error(printableLine(`run-production: run ${s.run} is ${s.status ?? 'not selected'}, not failed; not retried.`));
          if (outcome.retried.length === 0) {
            console.log(`No failed runs of ${production.type} v${production.version} match; nothing retried.`);
            return;
          }
          const how =
            outcome.mode.kind === 'reset'
              ? 'attempt counts reset to 0'
              : `max attempts raised from ${outcome.mode.from} to ${outcome.mode.to}, attempt counts kept`;
          console.log(`Retried ${outcome.retried.length} run(s) of ${production.type} v${production.version} (${how}): ${outcome.retried.join(', ')}`);
          if (production.status !== 'active') console.log(`Note: the production is ${production.status}; nobody claims them until it is resumed.`);
        });
      },
    );
}
