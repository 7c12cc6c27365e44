/** Plain text tables for human output; markdown tables for pasting into a logbook. */
export type Cell = string | number | null | undefined;

export function textTable(header: string[], rows: Cell[][], options: { rightAlign?: number[] } = {}): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '' : String(c))))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const right = new Set(options.rightAlign ?? []);
  return cells
    .map((row) =>
      row
        .map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function markdownTable(header: string[], rows: Cell[][]): string {
  const esc = (c: Cell) => (c === null || c === undefined ? '' : String(c).replace(/\|/g, '\\|'));
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}
