/**
 * One way to hold a Redis connection for the gateway's shared state (cost budgets, rate limits,
 * trusted documents, APQ): commands never wait behind a long reconnection, and an outage is one
 * warning line, not one per attempt. What a caller does while Redis is away (count in memory,
 * refuse, read its own cache) is its own decision; this module only reports.
 */
import { Redis } from 'ioredis';
import { errorFields, type Logger } from '../logging/logger.ts';

export interface RedisConnectionOptions {
  /** What the connection is for, in the outage lines ("cost budgets", "rate limits"). */
  purpose: string;
  /** What happens while Redis is unreachable, said once per outage. */
  whileDown: string;
  log: Logger;
  /** The longest one command may take before it fails. @default 1_000 */
  commandTimeoutMs?: number;
}

/** A client that fails a command after `commandTimeoutMs` rather than queueing it while disconnected. */
export function connectRedis(url: string, options: RedisConnectionOptions): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: options.commandTimeoutMs ?? 1_000, enableOfflineQueue: false });
  let down = false;
  client.on('error', (error) => {
    // ioredis retries on its own; one line per outage, not one per attempt.
    if (down) return;
    down = true;
    options.log.warn(`Redis for ${options.purpose} is unreachable: ${options.whileDown}`, errorFields(error));
  });
  client.on('ready', () => {
    if (down) options.log.info(`Redis for ${options.purpose} is back`);
    down = false;
  });
  return client;
}

/**
 * Resolves once the client is ready, fails to connect, or after `timeoutMs`: the first requests
 * wait for the connection being made, never for a Redis that is down.
 */
export function firstConnection(client: Redis, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('ready', done);
      client.off('error', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    timer.unref();
    client.once('ready', done);
    // A refused connection will not be ready soon: go on at once.
    client.once('error', done);
  });
}

/** Closes a connection this process opened; a connection that will not quit is dropped. */
export async function closeRedis(client: Redis | undefined): Promise<void> {
  if (client) await client.quit().catch(() => client.disconnect());
}
