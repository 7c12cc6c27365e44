/**
 * Where the first JSON syntax error is, as line and column. Node 20's
 * JSON.parse messages no longer carry a position, and a shifter editing the
 * config at 2 am needs the line. A small recursive-descent scan, used only
 * after JSON.parse has failed.
 */
export function jsonErrorLocation(text: string): { line: number; column: number; expected: string } {
  let i = 0;
  const fail = (expected: string): never => {
    throw Object.assign(new Error('json'), { at: i, expected });
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const literal = (word: string) => {
    if (text.startsWith(word, i)) i += word.length;
    else fail('a value');
  };
  const string = () => {
    if (text[i] !== '"') fail('a string in double quotes');
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\n') fail('a closing " before the end of the line');
      i += text[i] === '\\' ? 2 : 1;
    }
    if (text[i] !== '"') fail('a closing "');
    i++;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') return void i++;
      for (;;) {
        ws();
        string();
        ws();
        if (text[i] !== ':') fail('":" after a key');
        i++;
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') return void i++;
        fail('"," or "}"');
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') return void i++;
      for (;;) {
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') return void i++;
        fail('"," or "]"');
      }
    } else if (c === '"') string();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else if (c !== undefined && /[-0-9]/.test(c)) {
      const match = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
      if (!match) fail('a number');
      i += match![0].length;
    } else fail('a value');
  };
  try {
    value();
    ws();
    if (i < text.length) fail('the end of the file');
  } catch (error) {
    const found = error as { at?: number; expected?: string };
    if (found.at === undefined) throw error;
    i = found.at;
    const before = text.slice(0, i);
    const line = before.split('\n').length;
    return { line, column: i - before.lastIndexOf('\n'), expected: found.expected ?? 'valid JSON' };
  }
  return { line: 1, column: 1, expected: 'valid JSON' };
}
