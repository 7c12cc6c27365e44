import { describe, expect, it } from 'vitest';
import { parseSize } from '../../src/config/size.js';
import { measureStaging, measureWithQuota } from '../../src/session/space.js';

/** The quota patterns the README recommends, against outputs in the tools' documented formats. */
const GPFS_OUTPUT = `                         Block Limits                                    |     File Limits
Filesystem type             blocks      quota      limit   in_doubt    grace |    files   quota    limit in_doubt    grace  Remarks
gpfs0      FILESET          12.5T        20T        22T          0     none |  1534120       0        0        0     none
`;
const LUSTRE_OUTPUT = `Disk quotas for usr shifter (uid 1000):
     Filesystem  kbytes   quota   limit   grace   files   quota   limit   grace
        /lustre 7340032       0 10485760       -    1204       0       0       -
`;

describe('staging space', () => {
  it('reads GPFS mmlsquota --block-size auto with the README pattern', async () => {
    const reading = await measureWithQuota({
      command: `printf '%s' '${GPFS_OUTPUT}'`,
      pattern: '^\\S+\\s+FILESET\\s+(?<used>[\\d.]+[KMGTP]?)\\s+\\S+\\s+(?<limit>[\\d.]+[KMGTP]?)',
      unit: 'B',
    });
    expect(reading.usedPercent).toBeCloseTo((12.5 / 22) * 100, 5);
    expect(reading.totalBytes).toBe(22 * 1024 ** 4);
  });

  it('reads Lustre lfs quota (kbytes) with the README pattern and unit K', async () => {
    const reading = await measureWithQuota({
      command: `printf '%s' '${LUSTRE_OUTPUT}'`,
      pattern: '^\\s*/\\S+\\s+(?<used>\\d+)\\*?\\s+\\d+\\s+(?<limit>\\d+)',
      unit: 'K',
    });
    expect(reading.usedPercent).toBeCloseTo(70, 5);
    expect(reading.usedBytes).toBe(7340032 * 1024);
  });

  it('says so when the pattern does not match', async () => {
    await expect(measureWithQuota({ command: 'echo nothing useful', pattern: '(?<used>\\d+)/(?<limit>\\d+)', unit: 'B' })).rejects.toThrow(/did not match the output of "echo nothing useful"/);
  });

  it('measures the staging filesystem with statfs by default', async () => {
    const reading = await measureStaging('/tmp', null);
    expect(reading.source).toBe('statfs');
    expect(reading.usedPercent).toBeGreaterThan(0);
    expect(reading.usedPercent).toBeLessThan(100);
    expect(reading.totalBytes).toBeGreaterThan(reading.usedBytes);
  });

  it('parses sizes with suffixes and units', () => {
    expect(parseSize('1.5G')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('2048', 'K')).toBe(2048 * 1024);
    expect(parseSize('512')).toBe(512);
  });
});
