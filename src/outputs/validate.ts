import { open, stat } from 'node:fs/promises';
import { LOG_OUTPUTS } from './paths.js';

/**
 * A finished job's outputs are trusted only when each declared output exists
 * and is not empty (logs may be empty), and each `.root` file starts with the
 * ROOT magic and is at least as long as the end offset (fEND) its header
 * records: a job killed while writing leaves a file shorter than that.
 */

export type Validation = { ok: true; bytes: number } | { ok: false; problems: string[] };

/** ROOT file header: "root", fVersion (int32 BE), fBEGIN (int32), fEND (int32, or int64 when fVersion >= 1000000). */
export async function rootFileProblem(path: string, size: number): Promise<string | null> {
  const handle = await open(path, 'r');
  try {
    const header = Buffer.alloc(24);
    const { bytesRead } = await handle.read(header, 0, 24, 0);
    if (bytesRead < 4 || header.toString('latin1', 0, 4) !== 'root') return `${path}: not a ROOT file (no "root" magic at the start)`;
    if (bytesRead < 16) return `${path}: truncated ROOT header (${bytesRead} bytes)`;
    const version = header.readInt32BE(4);
    const end = version >= 1_000_000 ? (bytesRead >= 20 ? Number(header.readBigInt64BE(12)) : NaN) : header.readInt32BE(12);
    if (!Number.isFinite(end)) return `${path}: truncated ROOT header`;
    if (size < end) return `${path}: truncated ROOT file (${size} bytes, its header says ${end})`;
    return null;
  } finally {
    await handle.close();
  }
}

export async function validateOutputs(outputs: Record<string, string>): Promise<Validation> {
  const problems: string[] = [];
  let bytes = 0;
  for (const [name, path] of Object.entries(outputs)) {
    let size: number;
    try {
      const info = await stat(path);
      if (!info.isFile()) {
        problems.push(`${name}: ${path} is not a file`);
        continue;
      }
      size = info.size;
    } catch {
      problems.push(`${name}: ${path} is missing`);
      continue;
    }
    const isLog = (LOG_OUTPUTS as readonly string[]).includes(name);
    if (size === 0 && !isLog) {
      problems.push(`${name}: ${path} is empty`);
      continue;
    }
    if (path.endsWith('.root')) {
      const problem = await rootFileProblem(path, size);
      if (problem) {
        problems.push(`${name}: ${problem}`);
        continue;
      }
    }
    bytes += size;
  }
  return problems.length ? { ok: false, problems } : { ok: true, bytes };
}
