import { mkdir, statfs } from 'node:fs/promises';
import type { QuotaConfig } from '../config/config.js';
import { parseSize } from '../config/size.js';
import { firstLine, runCommand } from '../grids/command.js';

/** A quota command that takes longer than this is given up on; the pass measures again next time. */
const QUOTA_TIMEOUT_MS = 30_000;

/**
 * How full the staging area is, in percent: `statfs` of its filesystem by
 * default, or the site's quota command (mmlsquota, lfs quota, quota -w) parsed
 * with the config's pattern (named groups `used` and `limit`, same unit).
 */
export interface SpaceReading {
  usedPercent: number;
  source: string;
  /** Bytes used and the capacity they are measured against (df's used + available, or the quota limit). */
  usedBytes: number;
  totalBytes: number;
}

export async function measureStaging(stagingDir: string, quota: QuotaConfig | null): Promise<SpaceReading> {
  await mkdir(stagingDir, { recursive: true });
  if (quota) return measureWithQuota(quota);
  const s = await statfs(stagingDir);
  const used = (s.blocks - s.bfree) * s.bsize;
  const available = s.bavail * s.bsize;
  // As df computes it: used / (used + available to unprivileged users).
  const usedPercent = used + available > 0 ? (used / (used + available)) * 100 : 0;
  return { usedPercent, source: 'statfs', usedBytes: used, totalBytes: used + available };
}

export async function measureWithQuota(quota: QuotaConfig): Promise<SpaceReading> {
  // Through the scheduler commands' runner: its timeout holds (the whole process group is killed), a
  // banner can name it while it hangs, and Ctrl-C interrupts it.
  const result = await runCommand(['/bin/sh', '-c', quota.command], { timeoutMs: QUOTA_TIMEOUT_MS, label: 'quota command' });
  if (result.code !== 0) throw new Error(`quota command "${quota.command}" failed with exit code ${result.code}: ${firstLine(result.stderr) || firstLine(result.stdout)}`);
  const stdout = result.stdout;
  const match = new RegExp(quota.pattern, 'm').exec(stdout);
  const used = match?.groups?.used;
  const limit = match?.groups?.limit;
  if (!used || !limit) {
    throw new Error(`quota.pattern did not match the output of "${quota.command}" (first line: ${stdout.split('\n')[0]?.slice(0, 120) ?? ''})`);
  }
  const usedN = parseSize(used, quota.unit);
  const limitN = parseSize(limit, quota.unit);
  if (!(limitN > 0) || !Number.isFinite(usedN)) {
    throw new Error(`quota command "${quota.command}" gave used "${used}" and limit "${limit}", not sizes with a positive limit`);
  }
  return { usedPercent: (usedN / limitN) * 100, source: `quota: ${quota.command}`, usedBytes: usedN, totalBytes: limitN };
}
