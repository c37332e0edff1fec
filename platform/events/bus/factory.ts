/**
 * Picks the event bus from the environment, so that every process (subgraphs, relays, tooling)
 * lands on the same one:
 * 1. `NATS_URL` set (several URLs comma-separated) → NATS JetStream;
 * 2. else `EVENT_BUS_DATABASE_URL` → the PostgreSQL queue in that database, created if missing;
 * 3. else `DATABASE_URL` → the PostgreSQL queue in the derived database `<prefix>_events`
 *    (`postgres://h/commerce` gives `commerce_events`), created if missing;
 * 4. else a clear error.
 */
import { deriveDatabaseUrl, withDatabasePassword } from '../../config.ts';
import { ensureDatabase, redact } from '../../database/provision.ts';
import type { EventBus } from '../bus.ts';
import { createJetStreamBus, type JetStreamBusOptions } from './nats-jetstream.ts';
import { createPostgresQueueBus, type PostgresQueueBusOptions } from './postgres-queue.ts';

export interface EventBusFactoryOptions {
  /** Options of the JetStream adapter except `servers`, which comes from `NATS_URL`. @default {} (its own defaults) */
  nats?: Omit<JetStreamBusOptions, 'servers'>;
  /** Options of the PostgreSQL adapter except `databaseUrl`, which comes from the environment. @default {} (its own defaults) */
  postgres?: Omit<PostgresQueueBusOptions, 'databaseUrl'>;
}

export async function createEventBus(env: Record<string, string | undefined> = process.env, options: EventBusFactoryOptions = {}): Promise<EventBus> {
  // How soon an event whose consumer died mid-handling is delivered again (NATS ack wait;
  // pg-boss handler timeout): the order saga's step deadlines must stay well above it.
  const redeliveryMs = Number(env.EVENT_REDELIVERY_AFTER_MS) > 0 ? Number(env.EVENT_REDELIVERY_AFTER_MS) : undefined;
  if (redeliveryMs) {
    options = { ...options, nats: { ackWaitMs: redeliveryMs, ...options.nats }, postgres: { handlerTimeoutMs: redeliveryMs, ...options.postgres } };
  }
  if (env.NATS_URL) {
    const servers = env.NATS_URL.split(',').map((url) => url.trim()).filter(Boolean);
    // NATS_STREAM / NATS_SUBJECT_PREFIX let several platforms (or test runs) share one NATS.
    return createJetStreamBus({
      ...options.nats,
      servers,
      ...(env.NATS_STREAM ? { stream: env.NATS_STREAM } : {}),
      ...(env.NATS_SUBJECT_PREFIX ? { subjectPrefix: env.NATS_SUBJECT_PREFIX } : {}),
    });
  }
  if (env.EVENT_BUS_DATABASE_URL) {
    // Created if missing too (npm start hands every service this URL); where this login may not
    // create databases, the adapter's own start says what is wrong with the URL.
    const databaseUrl = withDatabasePassword(env.EVENT_BUS_DATABASE_URL, env);
    await ensureDatabase(databaseUrl).catch(() => {});
    return createPostgresQueueBus({ ...options.postgres, databaseUrl });
  }
  if (env.DATABASE_URL) {
    // DATABASE_PASSWORD(_FILE) fills in the password, as it does for the contexts' databases.
    const databaseUrl = deriveDatabaseUrl(withDatabasePassword(env.DATABASE_URL, env), 'events');
    try {
      await ensureDatabase(databaseUrl);
    } catch (error) {
      throw new Error(`Cannot create the event bus database ${redact(databaseUrl)}: ${(error as Error).message}`, { cause: error });
    }
    return createPostgresQueueBus({ ...options.postgres, databaseUrl });
  }
  throw new Error('No event bus configured: set NATS_URL (NATS JetStream), or EVENT_BUS_DATABASE_URL or DATABASE_URL (PostgreSQL queue)');
}
