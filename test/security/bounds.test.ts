/**
 * Issue 13, numbers without bounds: every numeric flag has an upper bound, a value past it is a
 * usage error (exit 64) naming the flag, and a value at the bound is accepted. `--nproc
 * 99999999999999999999` used to end in a stack trace ("out of range for type bigint") and
 * `--pause 2147484` in a 1 ms busy loop (a timer above 2^31-1 ms fires at once).
 */
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addLoopOptions } from '../../src/cli/commands/run.js';
import { duration, FLAG_MAXIMA, INT32_MAX, nonNegativeInt, positiveInt, runList } from '../../src/cli/parse.js';
import { runCli } from '../helpers/cli.js';
import { scenario } from '../helpers/scenario.js';

describe('the parsers', () => {
  it('take their bound from the flag they parse (as commander calls them), the database integer otherwise', () => {
    const parse = (args: string[]) => {
      const command = addLoopOptions(new Command('run').exitOverride().configureOutput({ writeErr: () => undefined }));
      command.parse(args, { from: 'user' });
      return command.opts();
    };
    expect(parse(['--nproc', '10000', '--nprep', '0', '--pause', '3600', '--lease', '86400', '--watchdog', '86400'])).toMatchObject({
      nproc: 10_000,
      nprep: 0,
      pause: 3_600,
      lease: 86_400,
      watchdog: 86_400,
    });
    for (const [flag, value] of [['--nproc', '10001'], ['--nprep', '10001'], ['--pause', '2147484'], ['--lease', '86401'], ['--watchdog', '86401'], ['--nproc', '99999999999999999999']]) {
      expect(() => parse([flag!, value!]), `${flag} ${value}`).toThrow(new RegExp(`option '${flag} <[a-z]+>' argument '${value}' is invalid. expected a (positive )?whole number.* ${FLAG_MAXIMA[flag!]}`));
    }
    expect(positiveInt('2147483647')).toBe(INT32_MAX);
    expect(() => positiveInt('2147483648')).toThrow(/up to 2147483647/);
    expect(() => nonNegativeInt('1e3')).toThrow();
    expect(() => positiveInt('0')).toThrow();
  });

  it('no bounded value makes a timer longer than 2^31-1 ms', () => {
    for (const flag of ['--pause', '--lease', '--watchdog']) expect(FLAG_MAXIMA[flag]! * 1000).toBeLessThanOrEqual(INT32_MAX);
  });

  it('run lists and durations are bounded too', () => {
    expect(runList('2147483646-2147483647,5')).toEqual([2_147_483_646, 2_147_483_647, 5]);
    expect(() => runList('1-99999999999')).toThrow(/up to 2147483647/);
    expect(() => runList('1-2000000')).toThrow(/at most 1000000 runs/);
    expect(duration('3650d')).toBe(3650 * 86_400);
    expect(() => duration('99999999999999999999d')).toThrow(/up to 3650d/);
  });
});

describe('the CLI refuses values past the bounds with exit 64, naming the flag', () => {
  const refused: [string[], string, RegExp][] = [
    [['run', '--production', 'alcapana', '--nproc', '99999999999999999999'], '--nproc', /up to 10000/],
    [['run', '--production', 'alcapana', '--nprep', '10001'], '--nprep', /from 0 to 10000/],
    [['run', '--production', 'alcapana', '--pause', '2147484'], '--pause', /up to 3600/],
    [['run', '--production', 'alcapana', '--lease', '86401'], '--lease', /up to 86400/],
    [['run', '--production', 'alcapana', '--watchdog', '86401'], '--watchdog', /up to 86400/],
    [['run', '--production', 'alcapana', '--limit', '2147483648'], '--limit', /up to 2147483647/],
    [['run', '--production', 'alcapana', '--version', '2147483648'], '--version', /up to 2147483647/],
    [['run', '--production', 'alcapana', '--new', 'v2', '--max-running', '1000001'], '--max-running', /up to 1000000/],
    [['new', '--production', 'alcapana', '--tag', 'v2', '--max-running', '1000001'], '--max-running', /up to 1000000/],
    [['new', '--production', 'alcapana', '--tag', 'v2', '--from-version', '2147483648'], '--from-version', /up to 2147483647/],
    [['status', '--production', 'alcapana', '--version', '99999999999999999999'], '--version', /up to 2147483647/],
    [['pause', '--production', 'alcapana', '--version', '2147483648', '--reason', 'x'], '--version', /up to 2147483647/],
    [['events', '--run', '2147483648'], '--run', /up to 2147483647/],
    [['events', '--limit', '1000001'], '--limit', /up to 1000000/],
    [['events', '--since', '99999999999999999999d'], '--since', /up to 3650d/],
    [['retry', '--production', 'alcapana', '--runs', '1-99999999999'], '--runs', /up to 2147483647/],
    [['retry', '--production', 'alcapana', '--exit-code', '2147483648'], '--exit-code', /from 0 to 2147483647/],
    [['retry', '--production', 'alcapana', '--max-attempts', '1001'], '--max-attempts', /up to 1000/],
    [['limits', '--production', 'alcapana', '--max-running', '1000001'], '--max-running', /up to 1000000, or none/],
  ];
  it.each(refused)('%j', async (args, flag, expected) => {
    // No database is needed: the value is refused before any connection.
    const result = await runCli(args, { env: { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' } });
    expect(result.code, result.stderr).toBe(64);
    expect(result.stderr).toContain(`option '${flag} <`);
    expect(result.stderr).toMatch(expected);
    expect(result.stderr).toMatch(/Usage: run-production/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('values at the bounds are accepted', () => {
  it('run --dry-run, events, retry and limits at their largest values', async () => {
    const s = await scenario(3);
    const run = await s.cli(['run', '--production', 'alcapana', '--dry-run', '--nproc', '10000', '--nprep', '10000', '--pause', '3600', '--lease', '86400', '--watchdog', '86400', '--limit', '2147483647']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/Would claim 3 run\(s\)/);
    const events = await s.cli(['events', '--production', 'alcapana', '--run', '2147483647', '--since', '3650d', '--limit', '1000000']);
    expect(events.code, events.stderr).toBe(0);
    expect(events.stdout).toMatch(/No events match/);
    const retry = await s.cli(['retry', '--production', 'alcapana', '--runs', '2147483640-2147483647', '--exit-code', '2147483647']);
    expect(retry.code, retry.stderr).toBe(0);
    const limits = await s.cli(['limits', '--production', 'alcapana', '--max-running', '1000000']);
    expect(limits.code, limits.stderr).toBe(0);
    const status = await s.cli(['status', '--production', 'alcapana', '--version', '2147483647']);
    // No such version: the one-line "not found" (64), not a database error.
    expect(status.code, status.stderr).toBe(64);
    expect(status.stderr).toMatch(/^run-production: /);
    expect(status.stderr).not.toMatch(/out of range/);
  });
});
