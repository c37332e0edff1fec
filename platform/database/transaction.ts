/**
 * Work on a plain `pg` connection: one transaction (COMMIT when the work resolves, ROLLBACK when it
 * throws), or a connection borrowed from a pool for a while.
 *
 * Why borrowing needs care: pg.Pool listens for a connection's 'error' only while the connection
 * is idle in the pool. A borrowed connection whose server session ends (PostgreSQL restarted, the
 * backend terminated) emits 'error' when its socket closes, even when the statement running on it
 * already failed with that error, and an 'error' event nobody listens to ends the process. Pools
 * made by createPool (pool.ts) give every connection a listener for life; this also listens while
 * the connection is out, to know that it broke, and gives a connection that failed back to the
 * pool as broken (the pool discards it) instead of handing it to the next caller.
 */
import type pg from 'pg';
import { isConnectionLost } from './connection-loss.ts';

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

/**
 * Runs `work` on a connection borrowed from `pool` and gives it back, discarding it if its
 * connection was lost meanwhile. Its session state (advisory locks, LISTEN, SET) is the work's to undo.
 */
export async function withPooledClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  // The failure reaches the work through its statement; this only keeps the event from ending the process.
  const onError = (error: Error) => {
    broken ??= error;
  };
  client.on('error', onError);
  try {
    return await work(client);
  } catch (error) {
    if (!broken && isConnectionLost(error)) broken = error as Error;
    throw error;
  } finally {
    client.removeListener('error', onError);
    client.release(broken);
  }
}

/** A transaction on a connection borrowed from `pool` for its duration (see withPooledClient). */
export function withPooledTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withPooledClient(pool, (client) => withTransaction(client, () => work(client)));
}
