import type { Command } from 'commander';
import { readCounts } from '../../state/counts.js';
import { findProduction, listProductions } from '../../state/productions.js';
import { RUN_STATUSES, STATUS_LETTERS } from '../../core/statuses.js';
import { readParentWait, readThroughput } from '../../admin/throughput.js';
import { formatEta } from '../../display/format.js';
import { printableLine, terminalJson } from '../../core/sanitize.js';
import { withContext, type GlobalOptions } from '../context.js';
import { positiveInt } from '../parse.js';
import { textTable } from '../table.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('counts per status and per dataset of a production')
    .requiredOption('--production <type>', 'production type')
    .option('--version <n>', 'version (default: the highest)', positiveInt)
    .option('--json', 'print one JSON object')
    .action(async (options: { production: string; version?: number; json?: boolean }, command: Command) => {
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        const production = await findProduction(context.handle.db, options.production, options.version);
        const counts = await readCounts(context.handle.db, production.id);
        const [throughput, waitingOnParent] = await Promise.all([
          readThroughput(context.handle.db, production, counts),
          readParentWait(context.handle.db, production),
        ]);
        if (options.json) {
          console.log(
            terminalJson({
              production: { type: production.type, version: production.version, tag: production.tag, status: production.status },
              total: counts.total,
              counts: counts.counts,
              datasets: counts.datasets,
              throughput,
              waitingOnParent,
            }),
          );
          return;
        }
        console.log(
          printableLine(
            `${production.type} v${production.version} (tag ${production.tag}) ${production.status}${production.statusReason ? `: ${production.statusReason}` : ''} — ${counts.total} runs`,
          ),
        );
        const header = ['dataset', ...RUN_STATUSES.map((s) => `${STATUS_LETTERS[s]} ${s}`), 'total'];
        const rows = Object.entries(counts.datasets).map(([dataset, c]) => [dataset, ...RUN_STATUSES.map((s) => c[s]), RUN_STATUSES.reduce((a, s) => a + c[s], 0)]);
        rows.push(['all', ...RUN_STATUSES.map((s) => counts.counts[s]), counts.total]);
        console.log(textTable(header, rows, { rightAlign: header.map((_, i) => i).slice(1) }));
        console.log(
          `Throughput: ${throughput.runsPerHour15m} runs/h over the last 15 min (${throughput.finishedLast15m} finished), ` +
            `${throughput.runsPerHour24h} runs/h over the last 24 h (${throughput.finishedLast24h}); ` +
            `${throughput.remaining} to go, ETA ${throughput.remaining === 0 ? 'done' : formatEta(throughput.etaSeconds)}`,
        );
        if (waitingOnParent) {
          console.log(
            `Waiting on parent ${waitingOnParent.parent}: ${waitingOnParent.waiting} run(s) not yet finished there` +
              (waitingOnParent.parentFailed ? `, ${waitingOnParent.parentFailed} whose parent run failed (retry it there)` : ''),
          );
        }
      });
    });
}

export function registerProductions(program: Command): void {
  const productions = program.command('productions').description('the productions in the database');
  productions
    .command('list')
    .description('every production with its version, tag, status and progress')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        const list = await listProductions(context.handle.db);
        const withCounts = await Promise.all(list.map(async (p) => ({ p, c: await readCounts(context.handle.db, p.id) })));
        if (options.json) {
          console.log(
            terminalJson(
              withCounts.map(({ p, c }) => ({
                id: p.id,
                type: p.type,
                version: p.version,
                tag: p.tag,
                status: p.status,
                statusReason: p.statusReason,
                parentId: p.parentId,
                maxRunning: p.maxRunning,
                createdBy: p.createdBy,
                startedAt: p.startedAt,
                stoppedAt: p.stoppedAt,
                total: c.total,
                counts: c.counts,
              })),
            ),
          );
          return;
        }
        if (list.length === 0) {
          console.log('No productions yet. Create one with: run-production new --production TYPE --tag TAG');
          return;
        }
        const bar = (done: number, total: number, width = 20) => {
          const filled = total ? Math.round((done / total) * width) : 0;
          return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
        };
        console.log(
          textTable(
            ['type', 'version', 'tag', 'status', 'progress', 'finished', 'failed', 'total', 'by', 'started'],
            withCounts.map(({ p, c }) => [
              p.type,
              p.version,
              p.tag,
              p.status,
              bar(c.counts.finished, c.total),
              c.counts.finished,
              c.counts.failed,
              c.total,
              p.createdBy,
              p.startedAt.toISOString().slice(0, 16).replace('T', ' '),
            ]),
            { rightAlign: [1, 5, 6, 7] },
          ),
        );
      });
    });
}
