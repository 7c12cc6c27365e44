/**
 * A small reader for ~/.netrc, the file curl, ftp and git already use for
 * archive passwords, so shifters do not have to put them anywhere new.
 *
 * Grammar (whitespace-separated tokens, newlines are not significant):
 *   machine HOST   starts an entry; `default` starts the catch-all entry
 *   login L, password P, account A   belong to the current entry
 *   macdef NAME    an ftp macro: its body runs until the next blank line and is skipped
 *   # ...          a comment up to the end of the line (when it starts a token)
 * Tokens may be double-quoted (`password "a b\"c"`), as curl allows.
 */
import { readFile, stat } from 'node:fs/promises';

export interface NetrcEntry {
  /** Host name; undefined for the `default` entry. */
  machine: string | undefined;
  login?: string;
  password?: string;
  account?: string;
}

/** The file exists but cannot be used: too open, unreadable, or malformed. */
export class NetrcError extends Error {
  override readonly name = 'NetrcError';
  constructor(
    message: string,
    readonly path: string,
  ) {
    super(message);
  }
}

/**
 * Reads and parses a netrc file. A missing file is not an error (undefined):
 * most shifters authenticate with a key. A file that group or others may read
 * or write is refused the way ssh refuses a loose private key, because it
 * holds passwords in clear text.
 */
export async function readNetrc(path: string): Promise<NetrcEntry[] | undefined> {
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (error) {
    if (isErrnoCode(error, 'ENOENT')) return undefined;
    throw new NetrcError(`cannot read ${path}: ${errnoMessage(error)}`, path);
  }
  if ((mode & 0o077) !== 0) {
    const shown = (mode & 0o777).toString(8).padStart(4, '0');
    throw new NetrcError(
      `refusing to use ${path}: it holds passwords but group or others have access (mode ${shown}); ` +
        `protect it with: chmod 600 ${path}`,
      path,
    );
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new NetrcError(`cannot read ${path}: ${errnoMessage(error)}`, path);
  }
  return parseNetrc(text, path);
}

/** Parses netrc text; `path` only names the file in error messages. */
export function parseNetrc(text: string, path = '.netrc'): NetrcEntry[] {
  const entries: NetrcEntry[] = [];
  let current: NetrcEntry | undefined;
  const lexer = new Lexer(text);

  const valueFor = (keyword: string): string => {
    const value = lexer.next();
    if (value === undefined) {
      throw new NetrcError(`${path}: '${keyword}' at the end of the file has no value`, path);
    }
    return value;
  };

  for (let token = lexer.next(); token !== undefined; token = lexer.next()) {
    switch (token) {
      case 'machine':
        current = { machine: valueFor(token) };
        entries.push(current);
        break;
      case 'default':
        current = { machine: undefined };
        entries.push(current);
        break;
      case 'login':
      case 'password':
      case 'account': {
        const value = valueFor(token);
        // Credentials outside any entry have no host to belong to; ignore them
        // like ftp does rather than guess.
        if (current) current[token] = value;
        break;
      }
      case 'macdef':
        valueFor(token);
        lexer.skipMacroBody();
        current = undefined;
        break;
      default:
        // Unknown keywords (e.g. curl's or other tools' extensions) are skipped
        // so one tool's addition does not break the file for us.
        break;
    }
  }
  return entries;
}

/**
 * The entry for a host: the first `machine` entry with that name (and that
 * login, when the caller already knows the user), else `default`.
 */
export function findNetrcEntry(
  entries: readonly NetrcEntry[],
  host: string,
  login?: string,
): NetrcEntry | undefined {
  const host_ = host.toLowerCase();
  const fits = (entry: NetrcEntry): boolean => login === undefined || entry.login === undefined || entry.login === login;
  return (
    entries.find((entry) => entry.machine?.toLowerCase() === host_ && fits(entry)) ??
    entries.find((entry) => entry.machine === undefined && fits(entry))
  );
}

class Lexer {
  private position = 0;
  constructor(private readonly text: string) {}

  next(): string | undefined {
    for (;;) {
      this.skipWhitespace();
      if (this.position >= this.text.length) return undefined;
      if (this.text[this.position] === '#') {
        this.skipToEndOfLine();
        continue;
      }
      return this.text[this.position] === '"' ? this.quoted() : this.bare();
    }
  }

  /** A macro body ends at the first empty line (two newlines in a row). */
  skipMacroBody(): void {
    this.skipToEndOfLine();
    const end = this.text.slice(this.position).search(/\n[ \t\r]*\n/);
    this.position = end === -1 ? this.text.length : this.position + end + 1;
  }

  private skipWhitespace(): void {
    while (this.position < this.text.length && /\s/.test(this.text[this.position]!)) this.position++;
  }

  private skipToEndOfLine(): void {
    const end = this.text.indexOf('\n', this.position);
    this.position = end === -1 ? this.text.length : end + 1;
  }

  private bare(): string {
    const start = this.position;
    while (this.position < this.text.length && !/\s/.test(this.text[this.position]!)) this.position++;
    return this.text.slice(start, this.position);
  }

  private quoted(): string {
    let value = '';
    this.position++; // opening quote
    while (this.position < this.text.length) {
      const char = this.text[this.position++]!;
      if (char === '"') return value;
      if (char === '\\' && this.position < this.text.length) {
        const escaped = this.text[this.position++]!;
        value += escaped === 'n' ? '\n' : escaped === 't' ? '\t' : escaped === 'r' ? '\r' : escaped;
      } else {
        value += char;
      }
    }
    return value; // unterminated quote: take the rest, as curl does
  }
}

function isErrnoCode(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as NodeJS.ErrnoException).code === code;
}

function errnoMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
