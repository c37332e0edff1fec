/**
 * A `pg.Pool` that a lost server never takes the process down with.
 *
 * node-postgres emits 'error' on a connection whose session ends (PostgreSQL restarted, failed
 * over, or the backend was terminated), and an 'error' event nobody listens to ends the process.
 * pg.Pool listens only while a connection is idle in the pool: from the moment it hands one out
 * until its new holder attaches a listener there is a gap, and it is real. Handing out happens in
 * the middle of reading the socket of the previous holder's query (its ReadyForQuery releases the
 * connection to the next waiting `pool.connect()`, whose promise resumes only after the rest of
 * that read); when PostgreSQL's "terminating connection" arrives in the same read, nobody is
 * listening yet. Under load with backends terminated twice in a row, that happened every time.
 *
 * So every connection gets a listener of its own for its whole life, from the moment it is
 * opened. It only notes the failure: the holder learns of it from its next statement (which fails
 * as "not queryable"), and the pool discards a broken connection when it comes back.
 */
import pg from 'pg';
import { errorFields, type Logger } from '../logging/logger.ts';
import { idleConnectionLost } from './outage.ts';

export interface PoolOptions extends pg.PoolConfig {
  /** Where lost connections are reported (one warning per burst, see outage.ts). */
  logger: Logger;
  /** The warning's text. @default 'idle database connection lost' */
  lostMessage?: string;
}

/** A pg.Pool with `options` (and `keepAlive` on unless they say otherwise) that a lost connection never crashes. */
export function createPool(options: PoolOptions): pg.Pool {
  const { logger, lostMessage = 'idle database connection lost', ...config } = options;
  // keepAlive: a server that vanished without closing its sockets (a failover) is noticed.
  const pool = new pg.Pool({ keepAlive: true, ...config });
  // The listener each connection keeps for its whole life (see above); 'connect' fires once per
  // new connection, before the pool hands it to anyone.
  pool.on('connect', (client) => client.on('error', (error) => logger.debug('database connection failed', errorFields(error))));
  pool.on('error', idleConnectionLost(logger, lostMessage));
  return pool;
}
