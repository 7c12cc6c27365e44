/**
 * Where the first JSON syntax error is, as line and column. Node 20's
 * JSON.parse messages no longer carry a position, and a shifter editing the
 * config at 2 am needs the line. A small recursive-descent scan, used only
 * after JSON.parse has failed.
 */
export function jsonErrorLocation(text: string): { line: number; column: number; expected: string } {
  const scan = new JsonScan(text);
  try {
    scan.value();
    scan.ws();
    if (scan.i < text.length) scan.fail('the end of the file');
  } catch (error) {
    if (!(error instanceof JsonSyntax)) throw error;
    const before = text.slice(0, error.at);
    const line = before.split('\n').length;
    return { line, column: error.at - before.lastIndexOf('\n'), expected: error.expected };
  }
  return { line: 1, column: 1, expected: 'valid JSON' };
}

/** The first place the scan found that is not JSON, and what it expected there. */
class JsonSyntax extends Error {
  constructor(
    readonly at: number,
    readonly expected: string,
  ) {
    super('json');
  }
}

/** The scan: `i` is the position reached; each method reads one JSON element from there or throws JsonSyntax. */
class JsonScan {
  i = 0;
  constructor(private readonly text: string) {}

  fail(expected: string): never {
    throw new JsonSyntax(this.i, expected);
  }

  ws(): void {
    while (this.i < this.text.length && ' \t\n\r'.includes(this.text[this.i]!)) this.i++;
  }

  value(): void {
    this.ws();
    const c = this.text[this.i];
    if (c === '{') this.object();
    else if (c === '[') this.array();
    else if (c === '"') this.string();
    else if (c === 't') this.literal('true');
    else if (c === 'f') this.literal('false');
    else if (c === 'n') this.literal('null');
    else if (c !== undefined && /[-0-9]/.test(c)) this.number();
    else this.fail('a value');
  }

  private object(): void {
    this.i++;
    this.ws();
    if (this.text[this.i] === '}') return void this.i++;
    for (;;) {
      this.ws();
      this.string();
      this.ws();
      if (this.text[this.i] !== ':') this.fail('":" after a key');
      this.i++;
      this.value();
      if (this.endOfList('}')) return;
    }
  }

  private array(): void {
    this.i++;
    this.ws();
    if (this.text[this.i] === ']') return void this.i++;
    for (;;) {
      this.value();
      if (this.endOfList(']')) return;
    }
  }

  /** After an element of an object or array: true at its closing bracket, false after a comma. */
  private endOfList(close: '}' | ']'): boolean {
    this.ws();
    if (this.text[this.i] === ',') {
      this.i++;
      return false;
    }
    if (this.text[this.i] === close) {
      this.i++;
      return true;
    }
    return this.fail(`"," or "${close}"`);
  }

  private string(): void {
    const text = this.text;
    if (text[this.i] !== '"') this.fail('a string in double quotes');
    this.i++;
    while (this.i < text.length && text[this.i] !== '"') {
      if (text[this.i] === '\n') this.fail('a closing " before the end of the line');
      this.i += text[this.i] === '\\' ? 2 : 1;
    }
    if (text[this.i] !== '"') this.fail('a closing "');
    this.i++;
  }

  private literal(word: string): void {
    if (this.text.startsWith(word, this.i)) this.i += word.length;
    else this.fail('a value');
  }

  private number(): void {
    const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.text.slice(this.i));
    if (!match) this.fail('a number');
    this.i += match[0].length;
  }
}
