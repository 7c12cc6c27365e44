import { printableLine } from '../core/sanitize.js';

/**
 * Plain text tables for human output; markdown tables for pasting into a logbook. Cells hold what
 * others wrote (tags, dataset names, reasons, host names, errors): each is made printable, on one
 * line, so that no control sequence reaches the terminal and no cell can break the table's rows.
 */
export type Cell = string | number | null | undefined;

const text = (c: Cell): string => (c === null || c === undefined ? '' : printableLine(String(c)));

export function textTable(header: string[], rows: Cell[][], options: { rightAlign?: number[] } = {}): string {
  const cells = [header.map(text), ...rows.map((r) => r.map(text))];
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
  const esc = (c: Cell) => text(c).replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}
