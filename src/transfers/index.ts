import type { FrozenType } from '../config/config.js';
import type { Archive } from './archive.js';
import { createFileArchive } from './file.js';
import { createSftpArchive } from './sftp.js';

/** The archive for a resolved source URL's scheme (plain paths are file://). */
export async function createArchive(scheme: string, options: FrozenType['archive']): Promise<Archive> {
  switch (scheme) {
    case 'file':
      return createFileArchive({ parallel: options.parallel });
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
