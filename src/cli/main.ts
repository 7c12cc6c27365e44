import { Command, CommanderError } from 'commander';
import { registerDatasets } from './commands/datasets.js';
import { registerDb } from './commands/db.js';
import { registerNew } from './commands/new.js';
import { registerRun } from './commands/run.js';
import { registerDemo } from './commands/demo.js';
import { registerSessions } from './commands/sessions.js';
import { registerProductions, registerStatus } from './commands/status.js';
import { registerReport } from './commands/report.js';
import { registerRetry } from './commands/retry.js';
import { registerValidate } from './commands/validate.js';
import { registerRelease } from './commands/release.js';
import { registerControl } from './commands/control.js';
import { registerEvents } from './commands/events.js';
import { registerLimits } from './commands/limits.js';
import { loadDotenv } from './context.js';
import { EXIT, ExpectedError } from '../core/errors.js';
import { asRefusal, noteInvocation } from './roles.js';

function buildProgram(): Command {
  const program = new Command('run-production')
    .description('Claim-based coordinator for batch productions: several shifters, one shared PostgreSQL database.')
    .option('--database <url>', 'PostgreSQL URL (default: DATABASE_URL, the config file, else the embedded server)')
    .option('--config <file>', 'config file (default: RUN_PRODUCTION_CONFIG, else ./run-production.json)')
    .showSuggestionAfterError(true);
  registerRun(program);
  registerNew(program);
  registerDatasets(program);
  registerProductions(program);
  registerStatus(program);
  registerSessions(program);
  registerDb(program);
  registerDemo(program);
  registerReport(program);
  registerRetry(program);
  registerValidate(program);
  registerRelease(program);
  registerControl(program);
  registerEvents(program);
  registerLimits(program);
  configureUsageErrors(program);
  return program;
}

/** Every command: a usage error exits 64 and prints the command's usage line. */
function configureUsageErrors(command: Command): void {
  command.exitOverride();
  command.showHelpAfterError(`Usage: ${commandPath(command)} ${command.usage()}\n(see ${commandPath(command)} --help)`);
  for (const sub of command.commands) configureUsageErrors(sub);
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

export async function main(argv: string[]): Promise<number> {
  try {
    // .env in the current directory (variables already in the environment win); refused when others can read it.
    loadDotenv();
  } catch (error) {
    if (!(error instanceof ExpectedError)) throw error;
    console.error(`run-production: ${error.message}`);
    return error.exitCode;
  }
  const program = buildProgram();
  program.hook('preAction', (_program, action) => noteInvocation(action));
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.help' || error.code === 'commander.version') return EXIT.ok;
      return EXIT.usage;
    }
    const expected = error instanceof ExpectedError ? error : asRefusal(error);
    if (expected) {
      console.error(`run-production: ${expected.message}`);
      return expected.exitCode;
    }
    console.error('run-production: unexpected error:', error);
    return EXIT.error;
  }
}

const code = await main(process.argv);
// Commands that run loops end themselves; give stdout a chance to drain before exiting.
process.exitCode = code;
if (!process.env.RUN_PRODUCTION_NO_EXIT) setImmediate(() => process.exit(code));
