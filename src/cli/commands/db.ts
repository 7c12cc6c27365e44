import type { Command } from 'commander';
import { redactUrl } from '../../db/connection.js';
import { embeddedStatus, stopEmbeddedServer } from '../../db/embedded.js';
import { migrate, schemaVersion } from '../../db/migrate.js';
import { openContext, resolveDatabaseUrl, withContext, type GlobalOptions } from '../context.js';
import { ExpectedError } from '../../core/errors.js';

export function registerDb(program: Command): void {
  const db = program.command('db').description('the shared database: migrate, status, stop the embedded server');

  db.command('migrate')
    .description('apply pending schema migrations from sql/')
    .action(async (_options, command: Command) => {
      const context = await openContext(command.optsWithGlobals<GlobalOptions>(), { migrate: false });
      try {
        const result = await migrate(context.handle.pool);
        console.log(
          result.applied.length
            ? `Applied ${result.applied.map((m) => m.file).join(', ')}; schema version ${result.version}.`
            : `Schema is up to date (version ${result.version}).`,
        );
      } finally {
        await context.close();
      }
    });

  db.command('status')
    .description('where the database is, whether it answers, the schema version')
    .option('--json', 'print one JSON object')
    .action(async (options: { json?: boolean }, command: Command) => {
      const globals = command.optsWithGlobals<GlobalOptions>();
      const explicit = Boolean(globals.database || process.env.DATABASE_URL);
      const status: Record<string, unknown> = {};
      if (!explicit) {
        const embedded = await embeddedStatus();
        Object.assign(status, { kind: 'embedded', dataDir: embedded.paths.dataDir, port: embedded.paths.port, initialised: embedded.initialised });
        if (!embedded.running) {
          Object.assign(status, { url: embedded.url ? redactUrl(embedded.url) : null, answers: false, schemaVersion: null });
          print(status, options.json);
          return;
        }
      }
      let url: string;
      try {
        ({ url } = await resolveDatabaseUrl(globals));
      } catch (error) {
        // Refused (a key=value string, a password on the command line): shown redacted, never as given.
        if (!(error instanceof ExpectedError)) throw error;
        Object.assign(status, { url: redactUrl(globals.database ?? process.env.DATABASE_URL ?? ''), ...(explicit ? { kind: 'server' } : {}), answers: false, error: error.message });
        print(status, options.json);
        process.exitCode = error.exitCode;
        return;
      }
      status.url = redactUrl(url);
      if (explicit) status.kind = 'server';
      try {
        await withContext(globals, async (context) => {
          const version = await schemaVersion(context.handle.pool);
          Object.assign(status, { answers: true, schemaVersion: version.version, migrationsKnown: version.known, pending: version.pending });
        });
      } catch (error) {
        if (!(error instanceof ExpectedError)) throw error;
        Object.assign(status, { answers: false, error: error.message });
        print(status, options.json);
        process.exitCode = error.exitCode;
        return;
      }
      print(status, options.json);
    });

  db.command('stop')
    .description('stop the embedded PostgreSQL server (sessions using it lose their database)')
    .action(async () => {
      const stopped = await stopEmbeddedServer();
      console.log(stopped ? 'Embedded PostgreSQL stopped.' : 'The embedded PostgreSQL was not running.');
    });
}

function print(status: Record<string, unknown>, json: boolean | undefined): void {
  if (json) {
    console.log(JSON.stringify(status));
    return;
  }
  const width = Math.max(...Object.keys(status).map((k) => k.length));
  for (const [key, value] of Object.entries(status)) console.log(`${key.padEnd(width)}  ${value === null ? '-' : String(value)}`);
}
