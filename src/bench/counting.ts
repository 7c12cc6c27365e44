import type pg from 'pg';

/**
 * Counts the statements a pool's clients send (BEGIN and COMMIT included: each is
 * a round trip). Kysely takes a client from the pool and calls client.query, so
 * the count is made on each client as the pool connects it.
 */
export interface QueryCounter {
  readonly count: number;
  reset(): void;
}

export function countQueries(pool: pg.Pool): QueryCounter {
  let count = 0;
  pool.on('connect', (client: pg.PoolClient) => {
    const original = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      count++;
      return original(...args);
    };
  });
  return {
    get count() {
      return count;
    },
    reset() {
      count = 0;
    },
  };
}
