import type { Command } from 'commander';
import { addProductionFlags, type ProductionFlags } from '../command-options.js';
import { checkFinishedRuns, returnDamagedRuns } from '../../admin/validate.js';
import { findProduction } from '../../state/productions.js';
import { EXIT } from '../../core/errors.js';
import { printableLine, terminalJson } from '../../core/sanitize.js';
import { withContext, type GlobalOptions } from '../context.js';

export function registerValidate(program: Command): void {
  addProductionFlags(program.command('validate').description('check finished runs against the disk (outputs present, sizes, ROOT files intact); --fix redoes damaged runs'))
    .option('--fix', 'return runs with damaged or missing outputs to new so that sessions redo them')
    .option('--json', 'print JSON')
    .action(async (options: ProductionFlags & { fix?: boolean; json?: boolean }, command: Command) => {
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        const production = await findProduction(context.handle.db, options.production, options.version);
        const report = await checkFinishedRuns(context.handle.db, production);
        const fixed = options.fix ? await returnDamagedRuns(context.handle.db, production, report.mismatches, context.actor) : [];
        const unfixed = report.mismatches.filter((m) => !fixed.includes(m.run));
        if (options.json) {
          console.log(terminalJson({ checked: report.checked, mismatches: report.mismatches, fixed }));
        } else {
          for (const m of report.mismatches) {
            console.log(printableLine(`run ${m.run} (${m.dataset}): ${m.problems.join('; ')}${fixed.includes(m.run) ? ' -> returned to new' : ''}`));
          }
          console.log(
            `Checked ${report.checked} finished run(s) of ${production.type} v${production.version}: ${report.mismatches.length} mismatch(es)` +
              (options.fix ? `, ${fixed.length} returned to new.` : report.mismatches.length ? '. Run again with --fix to redo them.' : '.'),
          );
          if (fixed.length && production.status !== 'active') console.log(`Note: the production is ${production.status}; resume it so that sessions redo them.`);
        }
        // Damage left in place is a failure for scripts; damage sent back for redoing is not.
        if (unfixed.length) process.exitCode = EXIT.error;
      });
    });
}
