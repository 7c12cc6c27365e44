import { InvalidArgumentError } from 'commander';
import { isSafeName, NAME_RULE } from '../outputs/confine.js';
import { terminalJson } from '../core/sanitize.js';

/**
 * Argument parsers for commander: a bad value becomes a usage error naming the flag (exit 64).
 *
 * Every number has an upper bound. Without one, `--nproc 99999999999999999999` reached the
 * database and ended in a stack trace ("out of range for type bigint"), and `--pause 2147484`
 * became a timer above 2^31-1 ms, which Node fires after 1 ms: a busy loop. The bounds, by flag:
 */
export const INT32_MAX = 2_147_483_647;

export const FLAG_MAXIMA: Readonly<Record<string, number>> = {
  /** Jobs of one session on the grid, and inputs staged ahead of them. */
  '--nproc': 10_000,
  '--nprep': 10_000,
  /** Seconds between loop passes: an hour. */
  '--pause': 3_600,
  /** Seconds of a session lease and of the watchdog: a day. */
  '--lease': 86_400,
  '--watchdog': 86_400,
  /** Runs in flight across all sessions of a production. */
  '--max-running': 1_000_000,
  /** Attempts of a run. */
  '--max-attempts': 1_000,
  /** Claims of one session; versions; run numbers; exit codes: the database's integer. */
  '--limit': INT32_MAX,
  '--version': INT32_MAX,
  '--from-version': INT32_MAX,
  '--run': INT32_MAX,
  '--exit-code': INT32_MAX,
};

/** Rows `events --limit` prints at most (its --limit counts rows, not claims). */
export const EVENTS_LIMIT_MAX = 1_000_000;
/** `--since` at most ten years back. */
export const DURATION_MAX_SECONDS = 3_650 * 86_400;
/** Runs one `--runs` list may name (ranges expanded). */
export const RUN_LIST_MAX = 1_000_000;

/**
 * The bound of the flag being parsed: commander calls a parser as a method of the option
 * (`option.parseArg(value, previous)`), so `this.long` names the flag. A direct call, or a flag
 * without an entry in FLAG_MAXIMA, gets the database's integer as bound.
 */
function maximumFor(self: unknown): number {
  const flag = (self as { long?: unknown } | undefined)?.long;
  return typeof flag === 'string' ? (FLAG_MAXIMA[flag] ?? INT32_MAX) : INT32_MAX;
}

function wholeNumber(value: string, min: 0 | 1, max: number): number {
  const text = value.trim();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(min === 1 ? `expected a positive whole number up to ${max}.` : `expected a whole number from 0 to ${max}.`);
  }
  return n;
}

/** 1 .. the flag's bound in FLAG_MAXIMA (the database's integer for other flags). */
export function positiveInt(this: unknown, value: string): number {
  return wholeNumber(value, 1, maximumFor(this));
}

/** 0 .. the flag's bound in FLAG_MAXIMA (the database's integer for other flags). */
export function nonNegativeInt(this: unknown, value: string): number {
  return wholeNumber(value, 0, maximumFor(this));
}

/** A parser for 1 .. max, for a flag whose bound is not the one FLAG_MAXIMA gives its name. */
export function positiveIntUpTo(max: number): (value: string) => number {
  return (value) => wholeNumber(value, 1, max);
}

export function percent(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || n <= 0 || n > 100) throw new InvalidArgumentError('expected a percentage between 0 and 100.');
  return n;
}

/** Flags whose list items are dataset names: commaList checks them as names (see NAME_PATTERN). */
const NAME_LIST_FLAGS = new Set(['--dataset', '--datasets']);

export function commaList(this: unknown, value: string, previous: string[] = []): string[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('expected a comma-separated list.');
  const flag = (this as { long?: unknown } | undefined)?.long;
  if (typeof flag === 'string' && NAME_LIST_FLAGS.has(flag)) checkNames(items, 'dataset');
  return [...previous, ...items];
}

/** One dataset name (retry --dataset). */
export function datasetName(value: string): string {
  checkNames([value.trim()], 'dataset');
  return value.trim();
}

function checkNames(items: string[], what: string): void {
  for (const item of items) {
    if (!isSafeName(item)) throw new InvalidArgumentError(`expected ${what} names: ${NAME_RULE}; got ${terminalJson(item)}.`);
  }
}

export function runList(value: string): number[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  const runs: number[] = [];
  const runNumber = (text: string): number => {
    const n = Number(text);
    if (n > INT32_MAX) throw new InvalidArgumentError(`run numbers go up to ${INT32_MAX}, got ${text}.`);
    return n;
  };
  for (const item of items) {
    const range = /^(\d+)-(\d+)$/.exec(item);
    if (range) {
      const [low, high] = [runNumber(range[1]!), runNumber(range[2]!)];
      if (high - low + 1 + runs.length > RUN_LIST_MAX) throw new InvalidArgumentError(`at most ${RUN_LIST_MAX} runs in one list, got the range ${item}.`);
      for (let r = low; r <= high; r++) runs.push(r);
    } else if (/^\d+$/.test(item)) runs.push(runNumber(item));
    else throw new InvalidArgumentError(`expected run numbers such as 2091,2092 or 2091-2100, got "${item}".`);
  }
  if (runs.length > RUN_LIST_MAX) throw new InvalidArgumentError(`at most ${RUN_LIST_MAX} runs in one list.`);
  return runs;
}

/** "2h", "30m", "45s", "1d" → seconds, at most DURATION_MAX_SECONDS. */
export function duration(value: string): number {
  const match = /^(\d+)([smhd])$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError('expected a duration such as 30m, 2h or 1d.');
  const seconds = Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as 's' | 'm' | 'h' | 'd'];
  if (!(seconds <= DURATION_MAX_SECONDS)) throw new InvalidArgumentError(`expected a duration up to ${DURATION_MAX_SECONDS / 86_400}d.`);
  return seconds;
}
