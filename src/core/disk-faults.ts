import { constants } from 'node:fs';
import { access } from 'node:fs/promises';

/**
 * File-system errors that are the disk's fault, not a run's: full, over quota, read-only. They
 * pause the work that needs that disk (downloads for the staging area, submissions for the output
 * area) with a banner; they never cost a run an attempt.
 */
const DISK_CODES = new Set(['ENOSPC', 'EDQUOT', 'EROFS']);

/** Refusals that are the disk's fault when they name a file on it (the staging area), a run's otherwise. */
const PERMISSION_CODES = new Set(['EACCES', 'EPERM']);

type ErrnoChain = NodeJS.ErrnoException & { cause?: unknown };

/** The first error in the cause chain with one of these codes, described; or null. */
function findFault(error: unknown, matches: (e: ErrnoChain) => boolean): string | null {
  let e = error as ErrnoChain | undefined;
  for (let depth = 0; e && depth < 5; e = e.cause as ErrnoChain | undefined, depth++) {
    if (e.code && matches(e)) return `${e.code}: ${e.message}`;
  }
  return null;
}

/** A full, over-quota or read-only file system, anywhere in the error's causes. */
export function diskFault(error: unknown): string | null {
  return findFault(error, (e) => DISK_CODES.has(e.code!));
}

/** diskFault, or a permission refusal naming a file under `dir`. */
export function diskFaultUnder(error: unknown, dir: string): string | null {
  return findFault(error, (e) => DISK_CODES.has(e.code!) || (PERMISSION_CODES.has(e.code!) && typeof e.path === 'string' && e.path.startsWith(dir)));
}

/**
 * Why a directory under `root` could not be made: a recursive mkdir on a read-only file system
 * says ENOENT, so the root itself is asked (EROFS, EACCES); the original error when the root is fine.
 */
export async function whyNotCreated(root: string, error: NodeJS.ErrnoException): Promise<NodeJS.ErrnoException> {
  return access(root, constants.W_OK).then(
    () => error,
    (rootError: NodeJS.ErrnoException) => rootError,
  );
}
