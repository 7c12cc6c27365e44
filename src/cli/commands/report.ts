import type { Command } from 'commander';
import { buildReport } from '../../admin/report.js';
import { renderReport } from '../render-report.js';
import { addProductionFlags, outputStyle, type ProductionFlags } from '../command-options.js';
import { findProduction } from '../../state/productions.js';
import { printable, terminalJson } from '../../core/sanitize.js';
import { withContext, type GlobalOptions } from '../context.js';

export function registerReport(program: Command): void {
  addProductionFlags(
    program
      .command('report')
      .description('close-out report of a production: runs, jobs, failures by exit code and host, data volumes, time, shifters'),
  )
    .option('--json', 'print one JSON object')
    .option('--markdown', 'print markdown for the production logbook')
    .action(async (options: ProductionFlags & { json?: boolean; markdown?: boolean }, command: Command) => {
      const style = outputStyle(options);
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        const production = await findProduction(context.handle.db, options.production, options.version);
        const report = await buildReport(context.handle.db, production);
        // Tags, reasons, hosts and errors in it were written by others: printable (tables: src/cli/table.ts).
        process.stdout.write(style === 'json' ? terminalJson(report) + '\n' : printable(renderReport(report, style)));
      });
    });
}
