import { constants } from 'node:fs';
import { open, readdir, readlink, realpath, rm, stat, type FileHandle } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
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
 *
 * Only files under `root` are read: a catalogue row's `source` is written by whoever imported the
 * catalogue, and a session copies what it names into the shared staging area, so a source such as
 * `/home/shifter/.netrc` (or a symlink in the archive pointing there) would publish the running
 * shifter's private file. The real path (symlinks resolved) of the source must be under the real
 * path of the root, checked before the file is opened and again on the opened file itself; else
 * the download fails as the run's fault (SourceOutsideArchiveError). Without a root nothing is read.
 */
export function createFileArchive(options: { parallel?: number; root?: string } = {}): Archive {
  const sizeOf = async (path: string): Promise<number> => {
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        const unmounted = options.root === undefined ? null : await rootProblem(options.root);
        if (unmounted) throw new ArchiveUnavailableError(`the archive ${options.root} ${unmounted} (is it mounted?); ${path} cannot be read`);
        throw new MissingInputError(`${path} does not exist in the archive`);
      }
      throw new ArchiveTransientError(`${path}: ${(error as Error).message}`, { cause: error });
    }
    await requireUnderRoot(path, await realpath(path).catch(() => resolve(path)), options.root);
    return size;
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
      let source: FileHandle | undefined;
      let destination: FileHandle | undefined;
      try {
        source = await open(path, 'r');
        // Checked again on the open file: a symlink swapped in since the check above is caught here.
        await requireUnderRoot(path, await openedPath(source, path), options.root);
        destination = await createStagingFile(request.destination);
        const reader = source.createReadStream();
        const writer = destination.createWriteStream();
        source = destination = undefined; // the streams close them
        await pipeline(reader, progress, writer, { signal: request.signal });
      } catch (error) {
        await source?.close().catch(() => undefined);
        await destination?.close().catch(() => undefined);
        if (error instanceof SourceOutsideArchiveError) throw error;
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

/**
 * A source that is not under the archive root (or a file archive without a root): the run's fault,
 * counted like a missing input, and the file is never read.
 */
export class SourceOutsideArchiveError extends MissingInputError {}

async function requireUnderRoot(path: string, real: string, root: string | undefined): Promise<void> {
  if (root === undefined) {
    throw new SourceOutsideArchiveError(`${path} is refused: the production's input.source names no local archive, so no local file is read`);
  }
  const realRoot = await realpath(root).catch(() => resolve(root));
  const inside = realRoot === sep ? real !== sep : real.startsWith(realRoot + sep);
  if (!inside) {
    throw new SourceOutsideArchiveError(
      `${path} is refused: it is ${real === resolve(path) ? '' : `(through a symlink) ${real}, `}outside the archive root ${root}; only files under the root are read`,
    );
  }
}

/** The real path of an open file (Linux: /proc/self/fd), or of its name where /proc is not there. */
async function openedPath(handle: FileHandle, path: string): Promise<string> {
  return readlink(`/proc/self/fd/${handle.fd}`).catch(() => realpath(path));
}

/** Mode of staged inputs and partial downloads: the owner writes, the group (the jobs' account) reads. */
export const STAGING_FILE_MODE = 0o640;

/**
 * Creates a file in the shared staging area to write a download to: a new file only
 * (O_CREAT | O_EXCL), never through a symlink (O_NOFOLLOW), mode 0640. The partial-download name
 * is unique per run, session and attempt, so anything already at it was not left by this
 * download but planted (a symlink to a victim file, a file of someone else's): opening fails
 * with EEXIST instead of writing through it, and the try fails (the caller removes the name,
 * which unlinks a symlink without following it, and tries again).
 */
export async function createStagingFile(destination: string): Promise<FileHandle> {
  return open(destination, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, STAGING_FILE_MODE);
}

/** Why the archive root cannot serve files ("does not exist", "is empty"), or null when it can. */
async function rootProblem(root: string): Promise<string | null> {
  try {
    return (await readdir(root)).length === 0 ? 'is empty' : null;
  } catch (error) {
    return `cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
}
