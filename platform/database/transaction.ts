/** One transaction on a plain `pg` connection: COMMIT when the work resolves, ROLLBACK when it throws. */
import type pg from 'pg';

/** Runs `work` in a transaction on `client`; `begin` may set the isolation level. */
export async function withTransaction<T>(client: pg.ClientBase, work: () => Promise<T>, begin = 'BEGIN'): Promise<T> {
  await client.query(begin);
  try {
    const result = await work();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/** The same on a connection borrowed from `pool` for the transaction's duration. */
export async function withPooledTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await withTransaction(client, () => work(client));
  } finally {
    client.release();
  }
}
