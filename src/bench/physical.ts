import { sql, type Kysely } from 'kysely';
import { openDatabase } from '../db/connection.js';
import type { Database } from '../db/schema.js';

/**
 * The ceiling the coordinator cannot beat on this server: single-row
 * `UPDATE … RETURNING` statements, each its own commit (so each waits for its
 * WAL flush), from `connections` connections, each on its own row so that no
 * lock is shared. A coordination statement is one such commit or more.
 */
export async function measureCommitRate(url: string, admin: Kysely<Database>, connections: number, seconds: number): Promise<number> {
  await sql`CREATE TABLE IF NOT EXISTS bench_commit_rate (id int PRIMARY KEY, n bigint NOT NULL) WITH (fillfactor = 50)`.execute(admin);
  await sql`INSERT INTO bench_commit_rate SELECT g, 0 FROM generate_series(1, ${connections}::int) AS g ON CONFLICT DO NOTHING`.execute(admin);
  const handles = Array.from({ length: connections }, () => openDatabase(url, { applicationName: 'bench commit rate', max: 1 }));
  try {
    let commits = 0;
    const started = Date.now();
    const deadline = started + seconds * 1000;
    await Promise.all(
      handles.map(async (h, i) => {
        while (Date.now() < deadline) {
          await sql`UPDATE bench_commit_rate SET n = n + 1 WHERE id = ${i + 1} RETURNING n`.execute(h.db);
          commits++;
        }
      }),
    );
    return commits / ((Date.now() - started) / 1000);
  } finally {
    await Promise.all(handles.map((h) => h.close()));
    await sql`DROP TABLE bench_commit_rate`.execute(admin);
  }
}
