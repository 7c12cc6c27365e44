/**
 * Downloading one file over a pooled connection.
 *
 * Reads the remote file with several requests in flight, like ssh2's fastGet
 * (which matters on a long link to a remote archive), but with the local file
 * in our hands: fastGet cannot be cancelled and, when the connection dies, may
 * never call back nor close its local file.
 */
import type { FileHandle } from 'node:fs/promises';
import type { SFTPWrapper, Stats } from 'ssh2';
import { ArchiveTransientError } from '../archive.js';
import type { FetchRequest } from '../archive.js';
import { createStagingFile } from '../file.js';
import { call } from './connection.js';
import type { Connection } from './connection.js';
import { SFTP_EOF, isSftpStatus } from './errors.js';
import { guarded } from './guard.js';
import type { Guard } from './guard.js';

/** How often progress is reported at most: "a few times a second". */
const PROGRESS_INTERVAL_MS = 250;
/** Read requests in flight per download, and their size: 2 MiB in flight, enough for a long link. */
const READS_IN_FLIGHT = 32;
const CHUNK_BYTES = 64 * 1024;

/** Copies `path` to `request.destination`; the bytes written. A partial file is the caller's to remove. */
export function download(connection: Connection, path: string, request: FetchRequest, timeoutMs: number): Promise<number> {
  const what = `download of ${path} from ${connection.label} (run ${request.run})`;
  return guarded(connection, request.signal, timeoutMs, what, (guard) => downloadGuarded(connection, guard, path, request));
}

async function downloadGuarded(connection: Connection, guard: Guard, path: string, request: FetchRequest): Promise<number> {
  const { sftp } = connection;
  let remote: Buffer | undefined;
  let local: FileHandle | undefined;
  try {
    remote = await guard.race(call<Buffer>((done) => sftp.open(path, 'r', done)));
    const handle = remote;
    const size = (await guard.race(call<Stats>((done) => sftp.fstat(handle, done)))).size;
    // A new file only, never through a symlink planted at the partial name, mode 0640 (see file.ts).
    local = await createStagingFile(request.destination);
    const report = progressReporter(request.onProgress, size);
    const bytesDone = await copyChunks({ guard, sftp, handle, file: local, size, path, report });
    await local.close();
    local = undefined;
    await guard.race(call<void>((done) => sftp.close(handle, done)));
    remote = undefined;
    report(bytesDone, true);
    return bytesDone;
  } finally {
    await local?.close().catch(() => {});
    // Release the remote handle when the connection survives (a local write
    // error, a file that shrank): it stays in the pool.
    if (remote && connection.alive) {
      const handle = remote;
      await guard.race(call<void>((done) => sftp.close(handle, done))).catch(() => {});
    }
  }
}

type Report = (bytesDone: number, force: boolean) => void;

function progressReporter(onProgress: FetchRequest['onProgress'], size: number): Report {
  let lastReportAt = 0;
  return (bytesDone, force) => {
    const now = Date.now();
    // The first chunk is reported at once (lastReportAt is 0), later ones at
    // most every PROGRESS_INTERVAL_MS, and the end always.
    if (!onProgress || (!force && now - lastReportAt < PROGRESS_INTERVAL_MS)) return;
    lastReportAt = now;
    onProgress(bytesDone, size);
  };
}

interface Copy {
  guard: Guard;
  sftp: SFTPWrapper;
  handle: Buffer;
  file: FileHandle;
  size: number;
  path: string;
  report: Report;
}

/** READS_IN_FLIGHT workers take the next chunk, read it whole and write it at its offset; the bytes written. */
async function copyChunks({ guard, sftp, handle, file, size, path, report }: Copy): Promise<number> {
  let bytesDone = 0;
  let nextOffset = 0;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    while (failure === undefined && nextOffset < size) {
      const offset = nextOffset;
      const length = Math.min(CHUNK_BYTES, size - offset);
      nextOffset += length;
      for (let got = 0; got < length; ) {
        const read = await guard.race(readAt(sftp, handle, buffer, got, length - got, offset + got));
        if (read === 0) {
          throw new ArchiveTransientError(`${path} ended after ${offset + got} of ${size} bytes: it changed while being read`);
        }
        got += read;
      }
      await file.write(buffer, 0, length, offset);
      bytesDone += length;
      guard.touch();
      report(bytesDone, false);
    }
  };
  // allSettled, not all: every worker must have stopped writing before the
  // file is closed and removed.
  await Promise.allSettled(
    Array.from({ length: READS_IN_FLIGHT }, () =>
      worker().catch((error: unknown) => {
        failure ??= error;
      }),
    ),
  );
  if (failure !== undefined) throw failure;
  return bytesDone;
}

/** One SFTP read; 0 at end of file. */
function readAt(sftp: SFTPWrapper, handle: Buffer, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    sftp.read(handle, buffer, offset, length, position, (error, bytesRead) => {
      if (!error) resolve(bytesRead);
      else if (isSftpStatus(error) && error.code === SFTP_EOF) resolve(0);
      else reject(error);
    });
  });
}
