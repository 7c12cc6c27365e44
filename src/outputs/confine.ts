import { resolve, sep } from 'node:path';
import { ExpectedError } from '../core/errors.js';
import { printable, terminalJson } from '../core/sanitize.js';
import { outputPaths, stagedInputPath, templateValues, type RunIdentity } from './paths.js';
import { sourceUrl } from '../archives/index.js';
import type { FrozenType } from '../config/config.js';
import { fillTemplate } from '../config/templates.js';

/**
 * Paths stay under their roots: a run's outputs under dataDir, its staged input under stagingDir.
 *
 * Names that others choose go into paths: the software tag (`{tag}`), dataset names
 * (`{dataset}`), a catalogue row's source (its file name becomes part of the staged name). Before
 * this, `--tag ../../../victim/x` wrote outputs outside dataDir, deleting and replacing a file
 * there. Two rules close it: names are names (one path segment, isSafeName), and `new` fills the
 * templates for a run of every dataset of the production and refuses (exit 65, naming the field)
 * any path that leaves its root, whatever the template's structure (`{dataDir}/../x` too).
 */

/** A letter or digit first, then letters, digits and . _ + -, no `..`: one path segment of printable ASCII. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
export const NAME_RULE = 'a letter or digit, then letters, digits and . _ + - (no "/", no "..")';
export const NAME_MAX_LENGTH = 200;

export function isSafeName(name: string): boolean {
  return name.length <= NAME_MAX_LENGTH && NAME_PATTERN.test(name) && !name.includes('..');
}

/** Whether `path`, made absolute, is strictly inside `root` (not root itself). */
export function isUnder(path: string, root: string): boolean {
  const base = resolve(root);
  const full = resolve(path);
  if (base === sep) return full !== sep;
  return full.startsWith(base + sep);
}

/** A run standing for its dataset in the check: its number, dataset and catalogue source. */
export interface SampleRun {
  run: number;
  dataset: string;
  source: string | null;
}

/**
 * Refuses (ExpectedError 65, naming the config field or the catalogue row) a production whose
 * filled output paths leave dataDir or whose staged inputs leave stagingDir, for the given runs
 * (one per dataset is enough: the other placeholders are digits, the type name or checked names).
 */
export function checkConfined(type: FrozenType, identity: Omit<RunIdentity, 'run' | 'dataset'>, samples: readonly SampleRun[]): void {
  const field = (name: string) => `${type.configFile}: types.${type.type}.${name}`;
  for (const sample of samples) {
    const id: RunIdentity = { ...identity, run: sample.run, dataset: sample.dataset };
    const of = `run ${sample.run} (dataset ${terminalJson(sample.dataset)}, tag ${terminalJson(identity.tag)})`;
    let outputs: Record<string, string>;
    try {
      outputs = outputPaths(type, id);
    } catch (error) {
      throw new ExpectedError(`${field('outputs')}: ${(error as Error).message}.`, 65);
    }
    for (const [name, path] of Object.entries(outputs)) {
      if (!isUnder(path, type.dataDir)) {
        throw new ExpectedError(
          `${field(`outputs.${name}`)}: for ${of} it is ${printable(resolve(path))}, outside dataDir ${type.dataDir}; outputs must stay under dataDir. Nothing was created.`,
          65,
        );
      }
    }
    if (type.input.kind !== 'archive') continue;
    let source: string;
    try {
      source = sample.source ?? fillTemplate(type.input.source, templateValues(type, id));
    } catch (error) {
      throw new ExpectedError(`${field('input.source')}: ${(error as Error).message}.`, 65);
    }
    const staged = stagedInputPath(type, id, sourceUrl(source).pathname);
    if (!isUnder(staged, type.stagingDir)) {
      const where = sample.source === null ? field('input.source') : `the catalogue's source of run ${sample.run}`;
      throw new ExpectedError(`${where}: the staged input of ${of} would be ${printable(resolve(staged))}, outside stagingDir ${type.stagingDir}. Nothing was created.`, 65);
    }
  }
}
