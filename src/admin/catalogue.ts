import { readFile } from 'node:fs/promises';
import { sql, type Kysely } from 'kysely';
import { ExpectedError } from '../core/errors.js';
import { SOURCE_PASSWORD_REFUSED, sourceHasPassword } from '../config/config.js';
import { isSafeName, NAME_RULE } from '../outputs/confine.js';
import { terminalJson } from '../core/sanitize.js';
import type { Database } from '../db/schema.js';
import { parseCsv } from './csv.js';
import { recordEvent, type Actor } from '../state/transition.js';

/**
 * `datasets import FILE.csv`: the run catalogue. All or nothing: every line is
 * checked before anything is written, and the write is one transaction.
 * Re-importing identical rows changes nothing; a changed row is refused unless
 * the shifter says --update.
 */

export interface CatalogueRow {
  line: number;
  run: number;
  dataset: string;
  quality: string;
  sizeBytes: number | null;
  checksum: string | null;
  source: string | null;
}

const REQUIRED = ['run', 'dataset', 'quality'] as const;
const OPTIONAL = ['size_bytes', 'checksum', 'source'] as const;

export function parseCatalogue(text: string, file: string): CatalogueRow[] {
  const rows = parseCsv(text);
  if (rows.length === 0) throw new ExpectedError(`${file}: empty; expected a header line "run,dataset,quality[,size_bytes,checksum,source]".`, 65);
  const header = rows[0]!.fields.map((h) => h.trim().toLowerCase());
  for (const name of header) {
    if (![...REQUIRED, ...OPTIONAL].includes(name as never)) {
      throw new ExpectedError(`${file} line 1: unknown column "${name}"; expected run,dataset,quality and optionally size_bytes,checksum,source.`, 65);
    }
  }
  for (const name of REQUIRED) {
    if (!header.includes(name)) throw new ExpectedError(`${file} line 1: the header has no "${name}" column; expected run,dataset,quality[,size_bytes,checksum,source].`, 65);
  }
  const at = (name: string) => header.indexOf(name);
  const seen = new Map<number, number>();
  return rows.slice(1).map(({ line, fields }) => {
    const where = `${file} line ${line}`;
    if (fields.length !== header.length) throw new ExpectedError(`${where}: ${fields.length} fields, the header has ${header.length}.`, 65);
    const get = (name: string) => (at(name) >= 0 ? fields[at(name)]!.trim() : '');
    const runText = get('run');
    if (!/^\d+$/.test(runText) || Number(runText) > 2_147_483_647) throw new ExpectedError(`${where}, field run: expected a run number, got "${runText}".`, 65);
    const run = Number(runText);
    if (seen.has(run)) throw new ExpectedError(`${where}, field run: run ${run} is already on line ${seen.get(run)}.`, 65);
    seen.set(run, line);
    const dataset = get('dataset');
    // A dataset name becomes a directory or file name ({dataset} in output templates): one path segment.
    if (!isSafeName(dataset)) throw new ExpectedError(`${where}, field dataset: expected a dataset name (${NAME_RULE}), got ${terminalJson(dataset)}.`, 65);
    const quality = get('quality');
    if (!/^[\w.-]+$/.test(quality)) throw new ExpectedError(`${where}, field quality: expected a quality flag such as gold or silver, got "${quality}".`, 65);
    const sizeText = get('size_bytes');
    if (sizeText !== '' && !/^\d+$/.test(sizeText)) throw new ExpectedError(`${where}, field size_bytes: expected a whole number of bytes, got "${sizeText}".`, 65);
    const checksum = get('checksum');
    if (checksum !== '' && !/^((md5|sha1|sha256|adler32):)?[0-9a-fA-F]+$/.test(checksum)) {
      throw new ExpectedError(`${where}, field checksum: expected hex digits, optionally prefixed md5:, sha1:, sha256: or adler32:, got "${checksum}".`, 65);
    }
    // Never echoed: the field holds a password.
    if (sourceHasPassword(get('source'))) throw new ExpectedError(`${where}, field source: ${SOURCE_PASSWORD_REFUSED}`, 65);
    return {
      line,
      run,
      dataset,
      quality,
      sizeBytes: sizeText === '' ? null : Number(sizeText),
      checksum: checksum === '' ? null : checksum.toLowerCase(),
      source: get('source') || null,
    };
  });
}

export interface ImportResult {
  inserted: number;
  updated: number;
  unchanged: number;
}

export async function importCatalogue(
  db: Kysely<Database>,
  file: string,
  options: { update: boolean; actor: Actor },
): Promise<ImportResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ExpectedError(`Cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}.`, 66);
  }
  const rows = parseCatalogue(text, file);
  return db.transaction().execute(async (tx) => {
    const existing = new Map(
      (rows.length
        ? await tx.selectFrom('runs').selectAll().where('run_number', 'in', rows.map((r) => r.run)).forUpdate().execute()
        : []
      ).map((r) => [r.run_number, r]),
    );
    const fresh: CatalogueRow[] = [];
    const changed: { row: CatalogueRow; what: string }[] = [];
    for (const row of rows) {
      const old = existing.get(row.run);
      if (!old) {
        fresh.push(row);
        continue;
      }
      const diffs: string[] = [];
      if (old.dataset !== row.dataset) diffs.push(`dataset ${old.dataset} → ${row.dataset}`);
      if (old.quality !== row.quality) diffs.push(`quality ${old.quality} → ${row.quality}`);
      if (old.size_bytes !== row.sizeBytes) diffs.push(`size_bytes ${old.size_bytes ?? '(none)'} → ${row.sizeBytes ?? '(none)'}`);
      if (old.checksum !== row.checksum) diffs.push(`checksum ${old.checksum ?? '(none)'} → ${row.checksum ?? '(none)'}`);
      if (old.source !== row.source) diffs.push(`source ${old.source ?? '(none)'} → ${row.source ?? '(none)'}`);
      if (diffs.length) changed.push({ row, what: diffs.join(', ') });
    }
    if (changed.length && !options.update) {
      const shown = changed.slice(0, 5).map((c) => `line ${c.row.line}: run ${c.row.run} (${c.what})`);
      throw new ExpectedError(
        `${file}: ${changed.length} row(s) differ from the catalogue: ${shown.join('; ')}${changed.length > 5 ? '; …' : ''}. ` +
          'Nothing was imported. Re-run with --update to change them.',
        65,
      );
    }
    const write = async (list: CatalogueRow[], mode: 'insert' | 'update') => {
      if (!list.length) return;
      const cols = {
        runs: list.map((r) => r.run),
        datasets: list.map((r) => r.dataset),
        qualities: list.map((r) => r.quality),
        sizes: list.map((r) => r.sizeBytes),
        checksums: list.map((r) => r.checksum),
        sources: list.map((r) => r.source),
      };
      const input = sql`unnest(${cols.runs}::int[], ${cols.datasets}::text[], ${cols.qualities}::text[], ${cols.sizes}::bigint[], ${cols.checksums}::text[], ${cols.sources}::text[])
                        AS i (run_number, dataset, quality, size_bytes, checksum, source)`;
      if (mode === 'insert') {
        await sql`INSERT INTO runs (run_number, dataset, quality, size_bytes, checksum, source) SELECT * FROM ${input}`.execute(tx);
      } else {
        await sql`UPDATE runs AS r SET dataset = i.dataset, quality = i.quality, size_bytes = i.size_bytes, checksum = i.checksum,
                         source = i.source, imported_at = now()
                    FROM ${input} WHERE r.run_number = i.run_number`.execute(tx);
      }
    };
    await write(fresh, 'insert');
    await write(
      changed.map((c) => c.row),
      'update',
    );
    if (fresh.length || changed.length) {
      await recordEvent(tx, {
        productionId: null,
        actor: options.actor,
        kind: 'import',
        reason: 'catalogue_imported',
        message: `${file}: ${fresh.length} new run(s), ${changed.length} updated`,
      });
    }
    return { inserted: fresh.length, updated: changed.length, unchanged: rows.length - fresh.length - changed.length };
  });
}
