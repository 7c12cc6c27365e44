import { exec } from 'node:child_process';
import { mkdir, statfs } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { QuotaConfig } from '../config/config.js';
import { parseSize } from '../config/size.js';

const execAsync = promisify(exec);

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
  const { stdout } = await execAsync(quota.command, { timeout: 30_000 });
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
