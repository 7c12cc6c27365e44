import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/**
 * Checksums as the catalogue writes them: `md5:HEX`, `sha1:HEX`, `sha256:HEX`,
 * `adler32:HEX`, or bare hex whose length says the algorithm.
 */
export function checksumAlgorithm(checksum: string): { algorithm: 'md5' | 'sha1' | 'sha256' | 'adler32'; hex: string } {
  const [prefix, hex] = checksum.includes(':') ? (checksum.split(':', 2) as [string, string]) : ['', checksum];
  const byLength = { 8: 'adler32', 32: 'md5', 40: 'sha1', 64: 'sha256' } as const;
  const algorithm = (prefix || byLength[hex.length as keyof typeof byLength]) as 'md5' | 'sha1' | 'sha256' | 'adler32' | undefined;
  if (!algorithm) throw new Error(`cannot tell the algorithm of checksum ${checksum}`);
  return { algorithm, hex: hex.toLowerCase() };
}

export async function fileChecksum(path: string, algorithm: 'md5' | 'sha1' | 'sha256' | 'adler32'): Promise<string> {
  if (algorithm === 'adler32') {
    let a = 1;
    let b = 0;
    for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
      for (let i = 0; i < chunk.length; i++) {
        a = (a + chunk[i]!) % 65521;
        b = (b + a) % 65521;
      }
    }
    return (((b << 16) | a) >>> 0).toString(16).padStart(8, '0');
  }
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Null when the file matches; else what differs. */
export async function checksumMismatch(path: string, checksum: string): Promise<string | null> {
  const { algorithm, hex } = checksumAlgorithm(checksum);
  const actual = await fileChecksum(path, algorithm);
  return actual === hex ? null : `${algorithm} is ${actual}, the catalogue says ${hex}`;
}
