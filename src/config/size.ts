/** "12.5G", "800M", "1024" → bytes; K/M/G/T/P are powers of 1024, a bare number is in `unit`. */
export function parseSize(text: string, unit: 'B' | 'K' | 'M' | 'G' | 'T' = 'B'): number {
  const match = /^([\d.]+)\s*([KMGTP]?)i?B?$/i.exec(text.trim());
  if (!match) return Number(text);
  const suffix = match[2]!.toUpperCase() || (unit === 'B' ? '' : unit);
  return Number(match[1]) * 1024 ** Math.max(' KMGTP'.indexOf(suffix || ' '), 0);
}
