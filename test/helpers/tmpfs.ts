import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A small tmpfs of its own, for a staging area that fills up or turns read-only under a running
 * session: real ENOSPC and EROFS from the kernel, not a simulated error. Needs root (as these
 * machines and CI are); a test that needs one fails when it cannot be mounted.
 */
export interface Tmpfs {
  dir: string;
  /** Fills it to the last byte with a file named `filler`. */
  fill(): Promise<void>;
  /** Removes the filler again. */
  empty(): Promise<void>;
  readOnly(): Promise<void>;
  writable(): Promise<void>;
  unmount(): Promise<void>;
}

export async function mountTmpfs(size = '256k'): Promise<Tmpfs> {
  const dir = await mkdtemp(join(tmpdir(), 'rp-tmpfs-'));
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0777`, 'tmpfs', dir]);
  const filler = join(dir, 'filler');
  return {
    dir,
    async fill() {
      // Larger than the file system: the write stops at ENOSPC with every block taken.
      await writeFile(filler, Buffer.alloc(64 * 1024 * 1024)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOSPC') throw error;
      });
    },
    async empty() {
      await rm(filler, { force: true });
    },
    async readOnly() {
      await run('mount', ['-o', 'remount,ro', dir]);
    },
    async writable() {
      await run('mount', ['-o', 'remount,rw', dir]);
    },
    async unmount() {
      await run('umount', ['-l', dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
