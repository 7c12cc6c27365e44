import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  functionsOf,
  importCycles,
  lineCount,
  localImports,
  readSources,
  type LocalImport,
  type SourceFile,
  type UnresolvedImport,
} from './source-graph.js';

/**
 * The shape of src/, as rules that fail here when a change breaks them.
 *
 * Every import counts: `import`, `import type`, `export … from`, `import()` and `typeof import()`.
 * A file's directory is the first directory under src/ (src/cli/commands is cli, src/display/ink
 * is display).
 *
 * 1. Layers. An import from one src/ directory to another goes to a lower layer:
 *      core 0 < db, grids, archives 1 < config 2 < outputs 3 < state 4 < session 5 < admin 6
 *      < bench 7 < cli 8
 *    Directories of one layer do not import each other (db does not import grids). Inside one
 *    directory imports are free (but see rule 2).
 *    src/display imports only src/core, src/session/snapshot.ts and src/display itself: it shows a
 *    Snapshot and knows nothing else. It sits beside src/cli at the top: only src/cli imports it.
 *    Nothing outside src/cli imports src/cli.
 *    A new directory under src/ gets its place in LAYERS below before it can be imported.
 * 2. No import cycle anywhere in src/, between files, type imports included.
 * 3. No file in src/ over 400 lines.
 * 4. No function over 80 lines (a declaration, method, constructor, accessor, arrow function or
 *    function expression, counted from its first line to its last). A function that is clearer in
 *    one piece says why in the comment directly above it, which must contain the words
 *    "long because" or "one piece" (any case). "Directly above" is the last comment before the
 *    function, or before the statement it starts on (`const f = () => {`, `useEffect(() => {`),
 *    ending on the line just above it, with no blank line between.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const LAYERS: Record<string, number> = {
  core: 0,
  db: 1,
  grids: 1,
  archives: 1,
  config: 2,
  outputs: 3,
  state: 4,
  session: 5,
  admin: 6,
  bench: 7,
  cli: 8,
};
/** What src/display may import, besides itself. */
const DISPLAY_SEES = ['src/core/', 'src/session/snapshot.ts'];
const MAX_FILE_LINES = 400;
const MAX_FUNCTION_LINES = 80;
const LONG_FUNCTION_REASON = /long because|one piece/i;

/** The directory under src/ a file is in: src/cli/commands/run.ts is in 'cli'. '' for a file in src/ itself. */
function directoryOf(path: string): string {
  const parts = path.split('/');
  return parts.length > 2 ? parts[1]! : '';
}

function lowerLayers(layer: number): string {
  const below = Object.keys(LAYERS).filter((d) => LAYERS[d]! < layer);
  return below.length > 0 ? below.join(', ') : 'no other directory';
}

/** What is wrong with one import, or null if the layers allow it. */
function layerViolation(i: LocalImport): string | null {
  const from = directoryOf(i.from);
  const to = directoryOf(i.to);
  const at = `${i.from}:${i.line}: imports ${i.to}`;
  if (from === to) return null;
  if (to === 'cli') {
    return `${at}, but nothing outside src/cli imports src/cli: move what it needs (an error type, a formatter) down to src/core or to the layer that owns it.`;
  }
  if (from === 'display') {
    if (DISPLAY_SEES.some((allowed) => i.to === allowed || (allowed.endsWith('/') && i.to.startsWith(allowed)))) return null;
    return `${at}, but src/display sees only src/core and src/session/snapshot.ts: carry what it shows in the Snapshot (or a type in src/session/snapshot.ts), or move the type to src/core.`;
  }
  if (to === 'display') {
    if (from === 'cli') return null;
    return `${at}, but only src/cli imports src/display: let the command hand the display what it needs, or move the shared helper to src/core.`;
  }
  const fromLayer = LAYERS[from];
  const toLayer = LAYERS[to];
  if (fromLayer === undefined || toLayer === undefined) return null; // reported once per file by unplacedFiles
  if (toLayer < fromLayer) return null;
  return `${at}: src/${from} (layer ${fromLayer}) may import only lower layers (${lowerLayers(fromLayer)}), and src/${to} is layer ${toLayer}: move the piece both need down to a layer below src/${from}, or pass it in from above.`;
}

function layerViolations(imports: LocalImport[]): string[] {
  return imports.map(layerViolation).filter((v): v is string => v !== null);
}

/** Files in a directory that has no layer (or in src/ itself). */
function unplacedFiles(files: SourceFile[]): string[] {
  return files
    .filter((f) => directoryOf(f.path) !== 'display' && LAYERS[directoryOf(f.path)] === undefined)
    .map((f) => `${f.path}:1: is in a directory with no layer: move it into one of src/{${Object.keys(LAYERS).join(',')},display}, or give its directory a place in LAYERS in test/architecture/layers.test.ts.`);
}

function unresolvedMessages(unresolved: UnresolvedImport[]): string[] {
  return unresolved.map((u) =>
    u.specifier === null
      ? `${u.from}:${u.line}: import() of a computed path, which no reader (nor this test) can follow: name the module in a string literal.`
      : `${u.from}:${u.line}: imports '${u.specifier}', which names no .ts or .tsx file: fix the path.`,
  );
}

function cycleMessages(files: SourceFile[], imports: LocalImport[]): string[] {
  const lineOfEdge = (from: string, to: string): number => imports.find((i) => i.from === from && i.to === to)!.line;
  return importCycles(files, imports).map(({ cycle, group }) => {
    const steps = cycle.slice(0, -1).map((file, n) => `${file}:${lineOfEdge(file, cycle[n + 1]!)}`);
    const others = group.filter((file) => !cycle.includes(file));
    const knot = others.length > 0 ? ` (tangled in the same knot: ${others.join(', ')})` : '';
    return `import cycle: ${[...steps, cycle[cycle.length - 1]].join(' -> ')}${knot}: break it by moving what both sides need into a module that imports neither, so that imports go one way.`;
  });
}

function longFiles(files: SourceFile[]): string[] {
  return files
    .filter((f) => lineCount(f) > MAX_FILE_LINES)
    .map((f) => `${f.path}:${MAX_FILE_LINES + 1}: ${lineCount(f)} lines, over ${MAX_FILE_LINES}: split it into modules with one job each.`);
}

function longFunctions(files: SourceFile[]): string[] {
  return files.flatMap((f) =>
    functionsOf(f)
      .filter((fn) => fn.lines > MAX_FUNCTION_LINES && !LONG_FUNCTION_REASON.test(fn.comment))
      .map(
        (fn) =>
          `${f.path}:${fn.line}: ${fn.name} is ${fn.lines} lines, over ${MAX_FUNCTION_LINES}: split it, or if it reads better in one piece, say why in a comment directly above it containing "long because" or "one piece".`,
      ),
  );
}

describe('the layers of src/', () => {
  const files = readSources(ROOT, 'src');
  const { imports, unresolved } = localImports(ROOT, files);

  it('reads every source file and its local imports', () => {
    expect(files.some((f) => f.path.startsWith('src/cli/'))).toBe(true);
    expect(imports.some((i) => directoryOf(i.from) !== directoryOf(i.to))).toBe(true);
    expect(unresolvedMessages(unresolved)).toEqual([]);
  });

  it('puts every file in a directory that has a layer', () => {
    expect(unplacedFiles(files)).toEqual([]);
  });

  it('imports only downwards: to a lower layer, never src/cli, and src/display sees only the snapshot', () => {
    expect(layerViolations(imports)).toEqual([]);
  });

  it('has no import cycle', () => {
    expect(cycleMessages(files, imports)).toEqual([]);
  });

  it(`has no file over ${MAX_FILE_LINES} lines`, () => {
    expect(longFiles(files)).toEqual([]);
  });

  it(`has no function over ${MAX_FUNCTION_LINES} lines without a comment saying why`, () => {
    expect(longFunctions(files)).toEqual([]);
  });
});

describe('the checks, on a small tree of their own', () => {
  const root = mkdtempSync(join(tmpdir(), 'rp-layers-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const write = (path: string, text: string): void => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  };
  const body = (n: number): string => Array.from({ length: n }, (_, k) => `  const v${k} = ${k};`).join('\n');

  write('src/core/errors.ts', `export class Oops extends Error {}\n`);
  write('src/cli/errors.ts', `export class CliError extends Error {}\n`);
  write('src/db/pool.ts', `import { Oops } from '../core/errors.js';\nimport type { CliError } from '../cli/errors.js';\nexport type Both = Oops | CliError;\n`);
  write('src/grids/a.ts', `import type { B } from './b.js';\nexport type A = { b?: B };\n`);
  write('src/grids/b.ts', `export type B = { a?: import('./a.js').A };\nexport const later = () => import('../config/config.js');\n`);
  write('src/config/config.ts', `export * from '../grids/a.js';\n`);
  write('src/session/snapshot.ts', `export interface Snapshot { n: number }\n`);
  write('src/session/loop.ts', `export interface Line { text: string }\n`);
  write('src/display/plain.tsx', `import type { Snapshot } from '../session/snapshot.js';\nimport type { Line } from '../session/loop.js';\nexport type Shown = Snapshot | Line;\n`);
  write('src/state/show.ts', `export { type Shown } from '../display/plain.js';\n`);
  write('src/misc/thing.ts', `export const x = 1;\n`);
  write('src/outputs/missing.ts', `import { y } from './nowhere.js';\nexport const z = y;\nexport const w = (name: string) => import(name);\n`);
  write(
    'src/outputs/long.ts',
    [
      `export function tooLong(): void {\n${body(80)}\n}`,
      `/** Long because it is one list. */\nexport const explained = (): void => {\n${body(80)}\n};`,
      `/** Long because this comment is not directly above. */\n\nexport function notExplained(): void {\n${body(80)}\n}`,
      `export class K {\n  method(): void {\n${body(78)}\n  }\n}`,
      `// padding\n`.repeat(120),
    ].join('\n'),
  );
  const files = readSources(root, 'src');
  const { imports, unresolved } = localImports(root, files);

  it('finds upward imports, imports of src/cli, and what src/display may not see, type imports included', () => {
    expect(layerViolations(imports)).toEqual([
      expect.stringMatching(/^src\/db\/pool\.ts:2: imports src\/cli\/errors\.ts, but nothing outside src\/cli/),
      expect.stringMatching(/^src\/display\/plain\.tsx:2: imports src\/session\/loop\.ts, but src\/display sees only/),
      expect.stringMatching(/^src\/grids\/b\.ts:2: imports src\/config\/config\.ts: src\/grids \(layer 1\) may import only lower layers \(core\)/),
      expect.stringMatching(/^src\/state\/show\.ts:1: imports src\/display\/plain\.tsx, but only src\/cli imports src\/display/),
    ]);
  });

  it('names a file outside any layer and an import of no file', () => {
    expect(unplacedFiles(files)).toEqual([expect.stringMatching(/^src\/misc\/thing\.ts:1: is in a directory with no layer/)]);
    expect(unresolvedMessages(unresolved)).toEqual([
      expect.stringMatching(/^src\/outputs\/missing\.ts:1: imports '\.\/nowhere\.js', which names no/),
      expect.stringMatching(/^src\/outputs\/missing\.ts:3: import\(\) of a computed path/),
    ]);
  });

  it('prints each cycle with the line of every import in it, through type imports and import()', () => {
    expect(cycleMessages(files, imports)).toEqual([
      expect.stringMatching(/^import cycle: src\/config\/config\.ts:1 -> src\/grids\/a\.ts:1 -> src\/grids\/b\.ts:2 -> src\/config\/config\.ts: break it/),
    ]);
  });

  it('names long files and long functions that do not say why', () => {
    expect(longFiles(files)).toEqual([expect.stringMatching(/^src\/outputs\/long\.ts:401: \d+ lines, over 400/)]);
    expect(longFunctions(files)).toEqual([
      expect.stringMatching(/^src\/outputs\/long\.ts:1: tooLong is 82 lines, over 80/),
      expect.stringMatching(/^src\/outputs\/long\.ts:\d+: notExplained is 82 lines, over 80/),
    ]);
  });
});
