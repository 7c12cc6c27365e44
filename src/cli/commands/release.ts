import type { Command } from 'commander';
import { releaseSession } from '../../admin/release.js';
import { findSession } from '../../admin/sessions.js';
import { withContext, type GlobalOptions } from '../context.js';

export function registerRelease(program: Command): void {
  program
    .command('release')
    .description("return another session's runs to new (refused while its lease is live, unless --force)")
    .requiredOption('--session <id>', 'session id, or its first 8 characters or more')
    .option('--force', 'also a live session: cancel its jobs and take its runs now')
    .option('--json', 'print JSON')
    .action(async (options: { session: string; force?: boolean; json?: boolean }, command: Command) => {
      await withContext(command.optsWithGlobals<GlobalOptions>(), async (context) => {
        const session = await findSession(context.handle.db, options.session);
        const outcome = await releaseSession(context.handle.db, session, { force: options.force === true, actor: context.actor });
        if (options.json) {
          console.log(JSON.stringify({ session: session.id, ...outcome }));
          return;
        }
        console.log(
          `Released session ${session.id.slice(0, 8)} (${session.user}@${session.host}): returned runs [${outcome.returned.join(', ')}]` +
            (outcome.cancelledJobs.length ? `; cancelled jobs ${outcome.cancelledJobs.join(', ')}` : ''),
        );
        if (outcome.unreachableJobs.length) {
          console.error(
            `run-production: WARNING: jobs ${outcome.unreachableJobs.join(', ')} run where this host cannot cancel them; ` +
              `their releases were revoked, which stops them within seconds if ${session.host} sees this filesystem, but ` +
              `cancel them on ${session.host} before their runs are redone, or their outputs may be overwritten twice.`,
          );
        }
      });
    });
}
