import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/**
 * What test/architecture/layers.test.ts checks, as plain functions over a source tree, so that
 * the test can also run them on a small tree of its own and see each rule fail.
 */

/** One source file: its path relative to the project root (always with `/`), its text and syntax tree. */
export interface SourceFile {
  path: string;
  text: string;
  tree: ts.SourceFile;
}

/** One import, export-from, `import type`, `import()` or `typeof import()` naming a local file. */
export interface LocalImport {
  from: string;
  to: string;
  line: number;
  specifier: string;
}

/**
 * An import the graph cannot follow: a relative path that is not a file in the tree, or an
 * `import()` of a computed expression (specifier null), whose target no reader can see.
 */
export interface UnresolvedImport {
  from: string;
  line: number;
  specifier: string | null;
}

export function toPosix(path: string): string {
  return path.split(sep).join('/');
}

/** Every .ts and .tsx file under `dir`, parsed; paths relative to `root`. */
export function readSources(root: string, dir: string): SourceFile[] {
  const files: SourceFile[] = [];
  const walk = (at: string): void => {
    for (const name of readdirSync(at).sort()) {
      const full = join(at, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (/\.tsx?$/.test(name) && !name.endsWith('.d.ts')) {
        const text = readFileSync(full, 'utf8');
        const kind = name.endsWith('.tsx') ? ts.ScriptKind.TSX : ts.ScriptKind.TS;
        const tree = ts.createSourceFile(full, text, ts.ScriptTarget.Latest, true, kind);
        files.push({ path: toPosix(relative(root, full)), text, tree });
      }
    }
  };
  walk(join(root, dir));
  return files;
}

/** 1-based line of a position in a file. */
export function lineOf(file: SourceFile, pos: number): number {
  return file.tree.getLineAndCharacterOfPosition(pos).line + 1;
}

/** Every module specifier in the file with the position it is written at, however it is imported. */
function specifiersOf(file: SourceFile): { specifier: string | null; pos: number }[] {
  const found: { specifier: string | null; pos: number }[] = [];
  const add = (node: ts.Node | undefined): void => {
    if (node) found.push({ specifier: ts.isStringLiteralLike(node) ? node.text : null, pos: node.getStart() });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal);
    }
    ts.forEachChild(node, visit);
  };
  visit(file.tree);
  return found;
}

/**
 * The local file a relative specifier names: ESM imports say `./x.js` for `./x.ts` or `./x.tsx`.
 * Package imports (`node:fs`, `kysely`) are not local and give null.
 */
function resolveLocal(root: string, from: string, specifier: string, known: Set<string>): string | null | undefined {
  if (!specifier.startsWith('.')) return null;
  const base = toPosix(relative(root, resolve(root, dirname(from), specifier)));
  const stem = base.replace(/\.(js|jsx|ts|tsx|mjs)$/, '');
  for (const candidate of [base, `${stem}.ts`, `${stem}.tsx`, `${base}/index.ts`, `${base}/index.tsx`]) {
    if (known.has(candidate)) return candidate;
  }
  return existsSync(join(root, base)) ? null : undefined;
}

/** The local imports of every file, and the relative imports that name no file of the tree. */
export function localImports(root: string, files: SourceFile[]): { imports: LocalImport[]; unresolved: UnresolvedImport[] } {
  const known = new Set(files.map((f) => f.path));
  const imports: LocalImport[] = [];
  const unresolved: UnresolvedImport[] = [];
  for (const file of files) {
    for (const { specifier, pos } of specifiersOf(file)) {
      const line = lineOf(file, pos);
      if (specifier === null) {
        unresolved.push({ from: file.path, line, specifier });
        continue;
      }
      const to = resolveLocal(root, file.path, specifier, known);
      if (to === undefined) unresolved.push({ from: file.path, line, specifier });
      else if (to !== null) imports.push({ from: file.path, to, line, specifier });
    }
  }
  return { imports, unresolved };
}

/** A group of files that all reach each other through imports, and one closed path through it. */
export interface ImportCycle {
  /** Starts and ends with the same file. */
  cycle: string[];
  group: string[];
}

/**
 * The import cycles: one cycle, as a closed path of files, for each strongly connected group of
 * files (Tarjan's algorithm). A file importing itself is a cycle of one.
 */
export function importCycles(files: SourceFile[], imports: LocalImport[]): ImportCycle[] {
  const edges = new Map<string, string[]>(files.map((f) => [f.path, []]));
  for (const i of imports) edges.get(i.from)?.push(i.to);
  for (const targets of edges.values()) targets.sort();

  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const groups: string[][] = [];
  let next = 0;
  const connect = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next += 1;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1 || (edges.get(v) ?? []).includes(v)) groups.push(group.sort());
    }
  };
  for (const f of [...edges.keys()].sort()) if (!index.has(f)) connect(f);

  return groups.map((group) => ({ cycle: cycleWithin(group, edges), group }));
}

/** A shortest closed path through the group's first file, staying inside the group (breadth first). */
function cycleWithin(group: string[], edges: Map<string, string[]>): string[] {
  const members = new Set(group);
  const start = group[0]!;
  const cameFrom = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of edges.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let at = v; at !== start; at = cameFrom.get(at)!) path.splice(1, 0, at);
        return [...path, start];
      }
      if (!cameFrom.has(w)) {
        cameFrom.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/** A function of any form: declaration, method, constructor, accessor, arrow or function expression. */
export interface FunctionSpan {
  name: string;
  line: number;
  lines: number;
  /** The comment directly above it (or above the statement it starts on), or '' if none. */
  comment: string;
}

function isFunction(node: ts.Node): node is ts.FunctionLikeDeclaration {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isMethodDeclaration(node) ||
    ts.isConstructorDeclaration(node) ||
    ts.isGetAccessorDeclaration(node) ||
    ts.isSetAccessorDeclaration(node) ||
    ts.isArrowFunction(node) ||
    ts.isFunctionExpression(node)
  );
}

/** The function's own name, or the name of what it is assigned to, or 'anonymous function'. */
function nameOf(node: ts.FunctionLikeDeclaration): string {
  if (node.name && (ts.isIdentifier(node.name) || ts.isStringLiteral(node.name))) return node.name.text;
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if ((ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) && ts.isIdentifier(parent.name)) {
    return parent.name.text;
  }
  return 'anonymous function';
}

/**
 * The node whose leading comment speaks for the function: the function itself, or the outermost
 * node around it that starts on the same line (`export const f = () => {`, `useEffect(() => {`).
 */
function commentedNode(file: SourceFile, node: ts.Node): ts.Node {
  const line = lineOf(file, node.getStart());
  let at: ts.Node = node;
  while (at.parent && !ts.isSourceFile(at.parent) && lineOf(file, at.parent.getStart()) === line) at = at.parent;
  return at;
}

/** The last comment before the node if it ends on the line just above the node's first line. */
function commentDirectlyAbove(file: SourceFile, node: ts.Node): string {
  const ranges = ts.getLeadingCommentRanges(file.text, node.getFullStart()) ?? [];
  const last = ranges[ranges.length - 1];
  if (!last) return '';
  if (lineOf(file, last.end) !== lineOf(file, node.getStart()) - 1) return '';
  return file.text.slice(last.pos, last.end);
}

export function functionsOf(file: SourceFile): FunctionSpan[] {
  const spans: FunctionSpan[] = [];
  const visit = (node: ts.Node): void => {
    if (isFunction(node) && node.body) {
      const line = lineOf(file, node.getStart());
      const lines = lineOf(file, node.getEnd()) - line + 1;
      spans.push({ name: nameOf(node), line, lines, comment: commentDirectlyAbove(file, commentedNode(file, node)) });
    }
    ts.forEachChild(node, visit);
  };
  visit(file.tree);
  return spans;
}

/** Lines in the file, not counting the newline at its very end. */
export function lineCount(file: SourceFile): number {
  if (file.text === '') return 0;
  return file.text.replace(/\r?\n$/, '').split('\n').length;
}
