import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/schema.js';

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  postgres: string;
  node: string;
  synchronousCommit: string;
  sharedBuffers: string;
}

export async function describeMachine(db: Kysely<Database>): Promise<Machine> {
  const cpuInfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const model = /model name\s*:\s*(.+)/.exec(cpuInfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const settings = await sql<{ version: string; sync: string; buffers: string }>`
    SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync,
           current_setting('shared_buffers') AS buffers`.execute(db);
  const row = settings.rows[0]!;
  return {
    cpu: model.trim(),
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    postgres: row.version,
    node: process.version,
    synchronousCommit: row.sync,
    sharedBuffers: row.buffers,
  };
}
