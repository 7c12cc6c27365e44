import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { ArchiveTransientError, MissingInputError, type Archive, type FetchRequest, type FetchResult } from './archive.js';

/** A local (or network-mounted) archive: file:///path or a plain absolute path. */
export function createFileArchive(options: { parallel?: number } = {}): Archive {
  return {
    scheme: 'file',
    parallel: options.parallel ?? 2,
    async size(url) {
      const path = fileURLToPath(url);
      try {
        return (await stat(path)).size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingInputError(`${path} does not exist in the archive`);
        throw new ArchiveTransientError(`${path}: ${(error as Error).message}`);
      }
    },
    async fetch(request: FetchRequest): Promise<FetchResult> {
      const path = fileURLToPath(request.url);
      let total: number;
      try {
        total = (await stat(path)).size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingInputError(`${path} does not exist in the archive`);
        throw new ArchiveTransientError(`${path}: ${(error as Error).message}`);
      }
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
        throw new ArchiveTransientError(`copying ${path}: ${(error as Error).message}`);
      }
      request.onProgress?.(done, total);
      return { bytes: done };
    },
    async close() {},
  };
}
