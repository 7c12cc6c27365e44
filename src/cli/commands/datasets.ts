import type { Command } from 'commander';
import { resolve } from 'node:path';
import { importCatalogue } from '../../admin/catalogue.js';
import { withContext, type GlobalOptions } from '../context.js';

export function registerDatasets(program: Command): void {
  const datasets = program.command('datasets').description('the run catalogue');
  datasets
    .command('import')
    .description('import runs from a CSV file (run,dataset,quality[,size_bytes,checksum,source]); all or nothing')
    .argument('<file>', 'CSV file with a header line')
    .option('--update', 'change rows that differ from the catalogue (refused otherwise)')
    .action(async (file: string, options: { update?: boolean }, command: Command) => {
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        const result = await importCatalogue(context.handle.db, resolve(file), { update: options.update === true, actor: context.actor });
        console.log(`Imported ${file}: ${result.inserted} new, ${result.updated} updated, ${result.unchanged} unchanged.`);
      });
    });
}
