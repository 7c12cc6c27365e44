/**
 * Path templates of the config file: `{run}`, `{run:05d}`, `{version}`,
 * `{type}`, `{tag}`, `{dataset}`, `{user}`, `{dataDir}`, `{stagingDir}`.
 * They are checked when a production is created (`new`), so a typo never
 * surfaces at job time, and filled per run by the loop.
 */

export const PLACEHOLDERS = ['run', 'version', 'type', 'tag', 'dataset', 'user', 'dataDir', 'stagingDir'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];
export type TemplateValues = Partial<Record<Placeholder, string | number>>;

const TOKEN = /\{([^{}]*)\}/g;
const FORMAT = /^0?(\d+)d$/;

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

interface Token {
  name: string;
  width?: number;
  zeroPad: boolean;
}

function parseToken(body: string): Token {
  const [name, format] = body.split(':', 2) as [string, string | undefined];
  if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
    throw new TemplateError(`unknown placeholder {${body}}; known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(', ')} (and {run:05d} style widths)`);
  }
  if (format === undefined) return { name, zeroPad: false };
  const match = FORMAT.exec(format);
  if (!match) throw new TemplateError(`bad format in {${body}}: expected a width such as {${name}:05d}`);
  return { name, width: Number(match[1]), zeroPad: format.startsWith('0') };
}

/** Throws TemplateError for an unknown placeholder or a bad format. */
export function checkTemplate(template: string): Placeholder[] {
  const used: Placeholder[] = [];
  for (const match of template.matchAll(TOKEN)) used.push(parseToken(match[1]!).name as Placeholder);
  return used;
}

export function fillTemplate(template: string, values: TemplateValues): string {
  return template.replace(TOKEN, (_whole, body: string) => {
    const token = parseToken(body);
    const value = values[token.name as Placeholder];
    if (value === undefined) throw new TemplateError(`no value for {${token.name}} in "${template}"`);
    const text = String(value);
    return token.width ? text.padStart(token.width, token.zeroPad ? '0' : ' ') : text;
  });
}

/** Fills only the given placeholders, leaving the others for later (freezing dataDir and stagingDir at `new`). */
export function fillSome(template: string, values: TemplateValues): string {
  return template.replace(TOKEN, (whole, body: string) => {
    const token = parseToken(body);
    return values[token.name as Placeholder] === undefined ? whole : fillTemplate(whole, values);
  });
}
