import type { Command } from 'commander';
import { addProductionFlags, type ProductionFlags } from '../command-options.js';
import { closeProduction, pauseProduction, resumeProduction, type ControlOutcome } from '../../admin/production-control.js';
import { findProduction } from '../../state/productions.js';
import { printable } from '../../core/sanitize.js';
import { withContext, type GlobalOptions } from '../context.js';

/** pause / resume / close: a production's switch, shared by every shifter's session. */
export function registerControl(program: Command): void {
  const act = (work: (context: Parameters<Parameters<typeof withContext>[1]>[0], options: ProductionFlags & { reason?: string }) => Promise<ControlOutcome>) =>
    async (options: ProductionFlags & { reason?: string }, command: Command) => {
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        const outcome = await work(context, options);
        // The message quotes the reason, which anyone may have written.
        console.log(printable(outcome.message));
      });
    };

  addProductionFlags(program.command('pause').description('stop all sessions claiming and submitting for a production (running jobs go on)'))
    .requiredOption('--reason <text>', 'why: shown to every shifter and kept in the events')
    .action(
      act(async (context, options) =>
        pauseProduction(context.handle.db, await findProduction(context.handle.db, options.production, options.version), options.reason!, context.actor),
      ),
    );

  addProductionFlags(program.command('resume').description('let sessions claim and submit again (also reopens a closed production)')).action(
    act(async (context, options) => resumeProduction(context.handle.db, await findProduction(context.handle.db, options.production, options.version), context.actor)),
  );

  addProductionFlags(program.command('close').description('mark a production done (refused while runs are in flight)'))
    .option('--reason <text>', 'note kept with the production (default: its final counts)')
    .action(
      act(async (context, options) =>
        closeProduction(context.handle.db, await findProduction(context.handle.db, options.production, options.version), options.reason ?? null, context.actor),
      ),
    );
}
