import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { DEFAULT_INPUT_BYTES, type ArchiveOptions } from '../archives/archive-config.js';
import { ExpectedError } from '../core/errors.js';
import { checkJobEnvironment, checkJobOptions } from '../grids/index.js';
import { BACKENDS, type Backend, type JobSection } from '../grids/job-options.js';
import { jsonErrorLocation } from './json-position.js';
import { parseSize } from './size.js';
import { checkTemplate, fillSome, TemplateError } from './templates.js';

/**
 * run-production.json: where data goes and what each production type runs.
 * `new` validates it and freezes the chosen type's section, resolved to
 * absolute paths, into the production row, so every shifter of a production
 * runs the identical definition whatever their local file says.
 */

// Re-exported: the sections' types live with the layer that uses them (grids, archives).
export { BACKENDS, type Backend, type JobSection } from '../grids/job-options.js';
export { DEFAULT_INPUT_BYTES, type ArchiveOptions } from '../archives/archive-config.js';

export interface QuotaConfig {
  /** Shell command printing the usage of the staging area, e.g. `mmlsquota -j staging gpfs0`. */
  command: string;
  /** Regular expression with named groups `used` and `limit` (same unit). */
  pattern: string;
  /** Unit of bare numbers in the output: B (default), K, M, G or T (powers of 1024); e.g. K for `lfs quota`. */
  unit: 'B' | 'K' | 'M' | 'G' | 'T';
}

export type InputConfig = { kind: 'archive'; source: string } | { kind: 'parent'; output: string };

/** A production type as frozen into productions.config: every path absolute. */
export interface FrozenType {
  type: string;
  configFile: string;
  parent: string | null;
  dataDir: string;
  stagingDir: string;
  input: InputConfig;
  archive: ArchiveOptions;
  job: JobSection;
  outputs: Record<string, string>;
  maxAttempts: number;
  /**
   * failures: consecutive failed job attempts that pause the production. infrastructure: consecutive
   * downloads that failed on the archive or the staging disk (not the run's fault) that pause it;
   * absent from configs frozen before it existed (DEFAULT_INFRASTRUCTURE_FAILURES).
   */
  autoPause: { failures: number; infrastructure?: number };
  quota: QuotaConfig | null;
}

export const DEFAULT_INFRASTRUCTURE_FAILURES = 5;

export interface LoadedConfig {
  file: string;
  database: string | null;
  types: Record<string, FrozenType>;
}

export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? env.RUN_PRODUCTION_CONFIG ?? 'run-production.json');
}

/** Reads and validates the config file; an error names the file and the bad field's path. */
export async function loadConfig(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ExpectedError(
      code === 'ENOENT'
        ? `No configuration file at ${file}. Create run-production.json in this directory, or name one with --config FILE or RUN_PRODUCTION_CONFIG (the README shows an example).`
        : `Cannot read ${file}: ${(error as Error).message}`,
      code === 'ENOENT' ? 66 : 1,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ExpectedError(`${file}: not valid JSON at ${jsonErrorWhere(text)} (${(error as Error).message.split('\n')[0]!.slice(0, 80)}).`, 65);
  }
  return validateConfig(raw, file);
}

function jsonErrorWhere(text: string): string {
  const where = jsonErrorLocation(text);
  return `line ${where.line}, column ${where.column}: expected ${where.expected}`;
}

class Fields {
  constructor(readonly file: string) {}
  fail(path: string, expected: string, got: unknown): never {
    throw new ExpectedError(`${this.file}: ${path}: expected ${expected}, got ${JSON.stringify(got) ?? 'nothing'}.`, 65);
  }
  object(value: unknown, path: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(path, 'an object', value);
    return value as Record<string, unknown>;
  }
  string(value: unknown, path: string): string {
    if (typeof value !== 'string' || value.trim() === '') this.fail(path, 'a non-empty string', value);
    return value;
  }
  optionalString(value: unknown, path: string): string | null {
    return value === undefined || value === null ? null : this.string(value, path);
  }
  positiveInt(value: unknown, path: string, fallback: number): number {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) this.fail(path, 'a positive whole number', value);
    return value;
  }
  /** A size: a whole number of bytes, or text such as "2G" or "800M" (powers of 1024). */
  size(value: unknown, path: string, fallback: number): number {
    if (value === undefined) return fallback;
    const bytes = typeof value === 'number' ? value : typeof value === 'string' && /^\s*\d+(\.\d+)?\s*[KMGTP]?i?B?\s*$/i.test(value) ? parseSize(value) : NaN;
    if (!Number.isFinite(bytes) || bytes <= 0) this.fail(path, 'a size such as 2G, 800M or a number of bytes', value);
    return Math.round(bytes);
  }
  template(value: unknown, path: string): string {
    const text = this.string(value, path);
    try {
      checkTemplate(text);
    } catch (error) {
      if (error instanceof TemplateError) throw new ExpectedError(`${this.file}: ${path}: ${error.message}.`, 65);
      throw error;
    }
    return text;
  }
  onlyKeys(value: Record<string, unknown>, path: string, keys: string[]): void {
    for (const key of Object.keys(value)) {
      if (!keys.includes(key)) this.fail(`${path}.${key}`, `one of the known fields (${keys.join(', ')})`, key);
    }
  }
}

/**
 * Whether an archive URL (`sftp://USER:PASSWORD@HOST/...`) carries a password. It would be frozen
 * into productions.config, shown by --dry-run and passed on command lines; the text is never shown.
 */
export function sourceHasPassword(source: string): boolean {
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/]*)/i.exec(source.trim())?.[1];
  if (authority === undefined) return false;
  const at = authority.lastIndexOf('@');
  return at >= 0 && authority.slice(0, at).includes(':');
}

/** The refusal of a source URL with a password (config input.source, a catalogue's source column). */
export const SOURCE_PASSWORD_REFUSED =
  'a password in the URL is refused: it would be stored in the shared database and shown on command lines. ' +
  'Write sftp://USER@HOST/..., and put the password in ~/.netrc (machine HOST login USER password ..., chmod 600) ' +
  'or in RUN_PRODUCTION_SFTP_PASSWORD in .env (chmod 600), or use a key through ssh-agent.';

/** Resolves a path or path template against the config file's directory (URLs are left alone). */
function absolute(base: string, template: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(template) || template.startsWith('{')) return template;
  return isAbsolute(template) ? template : resolve(base, template);
}

/** Where a type's relative paths are resolved, and the shared directories its templates may name. */
interface TypeContext {
  f: Fields;
  base: string;
  dataDir: string;
  stagingDir: string;
  quota: QuotaConfig | null;
  /** Every type's raw section, to check a `parent` names one. */
  typesRaw: Record<string, unknown>;
}

export function validateConfig(raw: unknown, file: string): LoadedConfig {
  const f = new Fields(file);
  const base = dirname(file);
  const root = f.object(raw, '(top level)');
  f.onlyKeys(root, '(top level)', ['dataDir', 'stagingDir', 'database', 'quota', 'types', '$comment']);
  const dataDir = resolve(base, root.dataDir === undefined ? './data' : f.string(root.dataDir, 'dataDir'));
  const stagingDir = resolve(base, root.stagingDir === undefined ? './staging' : f.string(root.stagingDir, 'stagingDir'));
  const database = f.optionalString(root.database, 'database');
  const quota = root.quota === undefined ? null : quotaFrom(f, root.quota);
  const typesRaw = f.object(root.types, 'types');
  if (Object.keys(typesRaw).length === 0) f.fail('types', 'at least one production type', typesRaw);
  const context: TypeContext = { f, base, dataDir, stagingDir, quota, typesRaw };
  const types: Record<string, FrozenType> = {};
  for (const [name, value] of Object.entries(typesRaw)) types[name] = typeFrom(context, name, value);
  checkParentOutputs(f, types);
  return { file, database, types };
}

function quotaFrom(f: Fields, value: unknown): QuotaConfig {
  const q = f.object(value, 'quota');
  f.onlyKeys(q, 'quota', ['command', 'pattern', 'unit']);
  const unit = q.unit === undefined ? 'B' : f.string(q.unit, 'quota.unit');
  if (!['B', 'K', 'M', 'G', 'T'].includes(unit)) f.fail('quota.unit', 'one of B, K, M, G, T', unit);
  const pattern = f.string(q.pattern, 'quota.pattern');
  let compiled: RegExp;
  try {
    compiled = new RegExp(pattern);
  } catch (error) {
    return f.fail('quota.pattern', `a regular expression (${(error as Error).message})`, pattern);
  }
  if (!/\(\?<used>/.test(compiled.source) || !/\(\?<limit>/.test(compiled.source)) f.fail('quota.pattern', 'a regular expression with named groups (?<used>...) and (?<limit>...)', pattern);
  return { command: f.string(q.command, 'quota.command'), pattern, unit: unit as QuotaConfig['unit'] };
}

/** One production type, frozen: every path absolute, every default filled. */
function typeFrom(context: TypeContext, name: string, value: unknown): FrozenType {
  const { f, typesRaw } = context;
  const path = `types.${name}`;
  if (!/^[A-Za-z][\w-]*$/.test(name)) f.fail(path, 'a type name of letters, digits, - and _', name);
  const t = f.object(value, path);
  f.onlyKeys(t, path, ['parent', 'input', 'archive', 'job', 'outputs', 'maxAttempts', 'autoPause', '$comment']);
  const parent = f.optionalString(t.parent, `${path}.parent`);
  if (parent !== null && !(parent in typesRaw)) f.fail(`${path}.parent`, `the name of another type (${Object.keys(typesRaw).join(', ')})`, parent);
  // Checked in this order so that of several mistakes the same one is named first as ever.
  const input = inputFrom(context, t.input, `${path}.input`, parent);
  const archiveRaw = t.archive === undefined ? {} : f.object(t.archive, `${path}.archive`);
  f.onlyKeys(archiveRaw, `${path}.archive`, ['parallel', 'prestage', 'timeoutSeconds', 'retries', 'defaultSize']);
  const job = jobFrom(context, t.job, `${path}.job`);
  const outputs = outputsFrom(context, t.outputs, `${path}.outputs`);
  const autoPauseRaw = t.autoPause === undefined ? {} : f.object(t.autoPause, `${path}.autoPause`);
  return {
    type: name,
    configFile: f.file,
    parent,
    dataDir: context.dataDir,
    stagingDir: context.stagingDir,
    input,
    archive: archiveFrom(f, archiveRaw, `${path}.archive`),
    job,
    outputs,
    maxAttempts: f.positiveInt(t.maxAttempts, `${path}.maxAttempts`, 3),
    autoPause: {
      failures: f.positiveInt(autoPauseRaw.failures, `${path}.autoPause.failures`, 10),
      infrastructure: f.positiveInt(autoPauseRaw.infrastructure, `${path}.autoPause.infrastructure`, DEFAULT_INFRASTRUCTURE_FAILURES),
    },
    quota: context.quota,
  };
}

function inputFrom(context: TypeContext, value: unknown, path: string, parent: string | null): InputConfig {
  const { f } = context;
  const inputRaw = f.object(value, path);
  if (inputRaw.fromParent !== undefined) {
    if (parent === null) f.fail(`${path}.fromParent`, 'a "parent" type to read from', inputRaw.fromParent);
    return { kind: 'parent', output: f.string(inputRaw.fromParent, `${path}.fromParent`) };
  }
  const source = f.template(inputRaw.source, `${path}.source`);
  if (sourceHasPassword(source)) throw new ExpectedError(`${f.file}: ${path}.source: ${SOURCE_PASSWORD_REFUSED}`, 65);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(source)?.[1]?.toLowerCase();
  if (scheme && scheme !== 'file' && scheme !== 'sftp') f.fail(`${path}.source`, 'a file:// or sftp:// URL, or a path', source);
  return { kind: 'archive', source: absolute(context.base, fillSome(source, { dataDir: context.dataDir, stagingDir: context.stagingDir })) };
}

function archiveFrom(f: Fields, archiveRaw: Record<string, unknown>, path: string): ArchiveOptions {
  return {
    parallel: f.positiveInt(archiveRaw.parallel, `${path}.parallel`, 2),
    prestage: f.optionalString(archiveRaw.prestage, `${path}.prestage`),
    timeoutSeconds: f.positiveInt(archiveRaw.timeoutSeconds, `${path}.timeoutSeconds`, 120),
    retries: f.positiveInt(archiveRaw.retries, `${path}.retries`, 3),
    defaultBytes: f.size(archiveRaw.defaultSize, `${path}.defaultSize`, DEFAULT_INPUT_BYTES),
  };
}

function jobFrom(context: TypeContext, value: unknown, path: string): JobSection {
  const { f } = context;
  const jobRaw = f.object(value, path);
  f.onlyKeys(jobRaw, path, ['backend', 'script', 'options', 'environment']);
  const backend = f.string(jobRaw.backend, `${path}.backend`);
  if (!(BACKENDS as readonly string[]).includes(backend)) f.fail(`${path}.backend`, `one of ${BACKENDS.join(', ')}`, backend);
  const jobOptions = jobRaw.options === undefined ? {} : f.object(jobRaw.options, `${path}.options`);
  try {
    checkJobOptions(backend as Backend, jobOptions, `${path}.options`);
  } catch (error) {
    throw new ExpectedError(`${f.file}: ${(error as Error).message}`, 65);
  }
  let jobEnvironment: string[] | undefined;
  try {
    jobEnvironment = jobRaw.environment === undefined ? undefined : checkJobEnvironment(jobRaw.environment, `${path}.environment`);
  } catch (error) {
    throw new ExpectedError(`${f.file}: ${(error as Error).message}.`, 65);
  }
  return {
    backend: backend as Backend,
    script: absolute(context.base, f.string(jobRaw.script, `${path}.script`)),
    options: jobOptions,
    ...(jobEnvironment === undefined ? {} : { environment: jobEnvironment }),
  };
}

function outputsFrom(context: TypeContext, value: unknown, path: string): Record<string, string> {
  const { f } = context;
  const outputsRaw = f.object(value, path);
  if (Object.keys(outputsRaw).length === 0) f.fail(path, 'at least one output', outputsRaw);
  const outputs: Record<string, string> = {};
  for (const [key, template] of Object.entries(outputsRaw)) {
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(key)) f.fail(`${path}.${key}`, 'an output name of letters, digits and _ (it becomes OUTPUT_<NAME>)', key);
    outputs[key] = absolute(context.base, fillSome(f.template(template, `${path}.${key}`), { dataDir: context.dataDir, stagingDir: context.stagingDir }));
  }
  return outputs;
}

/** A child type's fromParent names an output its parent has (checked once every type is read). */
function checkParentOutputs(f: Fields, types: Record<string, FrozenType>): void {
  for (const type of Object.values(types)) {
    if (type.input.kind === 'parent') {
      const parentOutputs = types[type.parent!]!.outputs;
      if (!(type.input.output in parentOutputs)) {
        f.fail(`types.${type.type}.input.fromParent`, `an output of ${type.parent} (${Object.keys(parentOutputs).join(', ')})`, type.input.output);
      }
    }
  }
}

export function typeFromConfig(config: LoadedConfig, type: string): FrozenType {
  const found = config.types[type];
  if (!found) {
    throw new ExpectedError(`${config.file} has no production type "${type}"; it defines: ${Object.keys(config.types).join(', ')}.`, 64);
  }
  return found;
}
