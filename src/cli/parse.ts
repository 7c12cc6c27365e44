import { InvalidArgumentError } from 'commander';

/** Argument parsers for commander: a bad value becomes a usage error naming the flag (exit 64). */
export function positiveInt(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) <= 0) throw new InvalidArgumentError('expected a positive whole number.');
  return Number(value);
}

export function nonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number (0 or more).');
  return Number(value);
}

export function percent(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || n <= 0 || n > 100) throw new InvalidArgumentError('expected a percentage between 0 and 100.');
  return n;
}

export function commaList(value: string, previous: string[] = []): string[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('expected a comma-separated list.');
  return [...previous, ...items];
}

export function runList(value: string): number[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  const runs: number[] = [];
  for (const item of items) {
    const range = /^(\d+)-(\d+)$/.exec(item);
    if (range) {
      for (let r = Number(range[1]); r <= Number(range[2]); r++) runs.push(r);
    } else if (/^\d+$/.test(item)) runs.push(Number(item));
    else throw new InvalidArgumentError(`expected run numbers such as 2091,2092 or 2091-2100, got "${item}".`);
  }
  return runs;
}

/** "2h", "30m", "45s", "1d" → seconds. */
export function duration(value: string): number {
  const match = /^(\d+)([smhd])$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError('expected a duration such as 30m, 2h or 1d.');
  return Number(match[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[match[2] as 's' | 'm' | 'h' | 'd'];
}
