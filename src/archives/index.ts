import type { Archive } from './archive.js';
import type { ArchiveOptions } from './archive-config.js';
import { createFileArchive } from './file.js';
import { createSftpArchive } from './sftp.js';

/**
 * The archive for a production's inputs, by the scheme of a resolved source URL (plain paths are
 * file://). `sourceTemplate` is the type's input.source: a file archive's root is its fixed part.
 */
export async function createArchive(scheme: string, options: ArchiveOptions, sourceTemplate?: string): Promise<Archive> {
  switch (scheme) {
    case 'file':
      return createFileArchive({ parallel: options.parallel, root: sourceTemplate === undefined ? undefined : fileArchiveRoot(sourceTemplate) });
    case 'sftp':
      return createSftpArchive({ parallel: options.parallel, operationTimeoutSeconds: options.timeoutSeconds, env: process.env });
    default:
      throw new Error(`no archive for ${scheme}:// URLs in this build`);
  }
}

/** A source template filled for a run → URL (absolute paths become file:// URLs). */
export function sourceUrl(source: string): URL {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) return new URL(source);
  return new URL(`file://${source.split('/').map(encodeURIComponent).join('/')}`);
}

/**
 * The top directory of a file archive: the source template's directories up to the first
 * placeholder (`/data/midas/run{run:05d}/raw.mid` → `/data/midas`), or undefined for a URL of
 * another scheme.
 */
export function fileArchiveRoot(sourceTemplate: string): string | undefined {
  const url = sourceTemplate.replace(/\{.*$/s, '');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && !/^file:\/\//i.test(url)) return undefined;
  const path = url.replace(/^file:\/\//i, '');
  const root = path.slice(0, path.lastIndexOf('/'));
  return root === '' ? '/' : root;
}
