import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { ArchiveTransientError, ArchiveUnavailableError, MissingInputError, type Archive, type FetchRequest, type FetchResult } from './archive.js';

/**
 * A local (or network-mounted) archive: file:///path or a plain absolute path.
 *
 * `root` is the archive's top directory (the fixed part of the source template). A missing file
 * under a root that is there and not empty is the run's fault (MissingInputError); a root that is
 * gone, or an empty directory (a mount point with nothing mounted), is the archive's
 * (ArchiveUnavailableError), and must not cost any run an attempt.
 */
export function createFileArchive(options: { parallel?: number; root?: string } = {}): Archive {
  const sizeOf = async (path: string): Promise<number> => {
    try {
      return (await stat(path)).size;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        const unmounted = options.root === undefined ? null : await rootProblem(options.root);
        if (unmounted) throw new ArchiveUnavailableError(`the archive ${options.root} ${unmounted} (is it mounted?); ${path} cannot be read`);
        throw new MissingInputError(`${path} does not exist in the archive`);
      }
      throw new ArchiveTransientError(`${path}: ${(error as Error).message}`, { cause: error });
    }
  };
  return {
    scheme: 'file',
    parallel: options.parallel ?? 2,
    size: (url) => sizeOf(fileURLToPath(url)),
    async fetch(request: FetchRequest): Promise<FetchResult> {
      const path = fileURLToPath(request.url);
      const total = await sizeOf(path);
      let done = 0;
      let lastReport = 0;
      const progress = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          done += chunk.length;
          const now = Date.now();
          if (now - lastReport > 200) {
            lastReport = now;
            request.onProgress?.(done, total);
          }
          callback(null, chunk);
        },
      });
      try {
        await pipeline(createReadStream(path), progress, createWriteStream(request.destination), { signal: request.signal });
      } catch (error) {
        await rm(request.destination, { force: true });
        if (request.signal.aborted) throw error;
        // The cause keeps the error code: ENOSPC or EROFS writing the destination is the staging disk's fault.
        throw new ArchiveTransientError(`copying ${path}: ${(error as Error).message}`, { cause: error });
      }
      request.onProgress?.(done, total);
      return { bytes: done };
    },
    async close() {},
  };
}

/** Why the archive root cannot serve files ("does not exist", "is empty"), or null when it can. */
async function rootProblem(root: string): Promise<string | null> {
  try {
    return (await readdir(root)).length === 0 ? 'is empty' : null;
  } catch (error) {
    return `cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
}
