/**
 * Text that others wrote, made safe to put on a shifter's terminal.
 *
 * Job stderr (it becomes last_error and event messages), `pause --reason`, software tags, dataset
 * names, host and user names of other sessions all come from someone else, and a terminal obeys
 * the control sequences in what it prints: ESC [ 2 J clears the screen, ESC ] 52 writes the
 * clipboard, a carriage return overwrites the line before it, a bidi override makes a line read
 * backwards. Everything that reaches a terminal (the plain log, the live display, events, status,
 * sessions, report and the other tables) goes through one of these functions, which show such
 * characters as visible escapes instead:
 *
 * - C0 controls (except \n and \t in printable), DEL and C1 controls as `\x1b`, `\x7f`, `\x9b`:
 *   an ESC sequence keeps its printable rest, so `ESC[31m` is shown as `\x1b[31m`;
 * - the Unicode bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the
 *   line and paragraph separators (U+2028, U+2029) as `\u202e` etc.
 *
 * Backslashes are left as they are: the output is for reading, not for unescaping.
 */

/** What printable() replaces: everything below except \t (0x09) and \n (0x0a). */
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** What printableLine() replaces: the same, and \t and \n too. */
const UNSAFE_IN_LINE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const ANY_UNSAFE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

function visible(char: string): string {
  const code = char.charCodeAt(0);
  if (char === '\n') return '\\n';
  if (char === '\t') return '\\t';
  if (char === '\r') return '\\r';
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** Whether the text holds anything printable() or printableLine() would change. */
export function needsEscaping(text: string): boolean {
  return ANY_UNSAFE.test(text);
}

/** Text with its control characters shown as escapes; newlines and tabs stay (multi-line output). */
export function printable(text: string): string {
  return needsEscaping(text) ? text.replace(UNSAFE, visible) : text;
}

/**
 * One row of output (a table cell, a display row, an event line): like printable, and newlines and
 * tabs shown as `\n` and `\t` too, so that one value can never make or fake another line.
 */
export function printableLine(text: string): string {
  return needsEscaping(text) ? text.replace(UNSAFE_IN_LINE, visible) : text;
}

/**
 * JSON for a terminal. JSON.stringify escapes the C0 controls but leaves DEL, the C1 controls (a
 * UTF-8 terminal may take U+009B for CSI) and the bidi controls raw; they are written as \uXXXX
 * escapes here, so the output parses to exactly the same value.
 */
export function terminalJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return 'null';
  return text.replace(/[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * The plain log's form of an event text: printable, and every line after the first indented by
 * two spaces, so that a newline in someone else's text (a pause reason, an error) can never start
 * a line that looks like one of the log's own (`Finished run: 2091`).
 */
export function printableLogText(text: string): string {
  const safe = printable(text);
  return safe.includes('\n') ? safe.replace(/\n/g, '\n  ') : safe;
}
