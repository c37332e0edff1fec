/**
 * The event bus on PostgreSQL with pg-boss 10, the embedded default: one pg-boss queue per
 * consuming context (`events.<consumer>`), subscribed to the event types it asked for (pg-boss's
 * subscription table), and one queue of dead letters that pg-boss fills itself when a job's last
 * retry fails.
 *
 * Why not pg-boss's own `publish` and `work`: `publish` sends to each queue separately and
 * swallows failures (Promise.allSettled), so an event could be lost while publish resolves; here
 * one INSERT puts it in every subscribed queue or fails. `work` completes jobs without awaiting
 * the result (an unhandled rejection when the database goes away) and retries only on its own
 * exponential schedule in whole seconds; the loop below fetches, and paces retries by the
 * subscription's `backoffMs`. Consumers wake on LISTEN/NOTIFY, so latency does not wait for the
 * polling interval, which remains the fallback.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { withPooledClient, withPooledTransaction } from '../../database/transaction.ts';
import PgBoss from 'pg-boss';
import { OutageLog } from '../../database/outage.ts';
import { createPool } from '../../database/pool.ts';
import { redact } from '../../database/provision.ts';
import { createLogger, errorFields, type Logger } from '../../logging/logger.ts';
import type { EventEnvelope } from '../envelope.ts';
import type { ConsumerStatus, DeadLetter, EventBus, EventHandler, Subscription } from '../bus.ts';
import { assertPublishable, backoffAfter, createLimiter, runHandler, subscriptionRules, type SubscriptionRules } from './rules.ts';

export interface PostgresQueueBusOptions {
  /** Database holding the queues, e.g. `postgres://h:5432/commerce_events`. It must exist (createEventBus creates it). Required. */
  databaseUrl: string;
  /** Schema of pg-boss's tables, created (and migrated) at start. @default 'pgboss' */
  schema?: string;
  /** Fallback poll of each consumer when no notification came. @default 500 */
  pollingIntervalMs?: number;
  /** A re-publish of an `eventId` is dropped while the consumer's first copy is kept (pg-boss archives handled jobs after this). @default 43_200_000 (12 h) */
  duplicateWindowMs?: number;
  /** How long an event waits for a consumer that is away (dead letters are kept about twice as long). @default 14 */
  retentionDays?: number;
  /** A delivery whose process stopped is redelivered after this (pg-boss expiry, found by maintenance every half of it); a live handler keeps its delivery however long it takes. @default 10_000 */
  handlerTimeoutMs?: number;
  /** Connections in this bus's pool (one more holds LISTEN). @default 4 */
  poolSize?: number;
  /** @default createLogger('event-bus.postgres') */
  logger?: Logger;
}

interface JobData {
  event: EventEnvelope;
  consumer: string;
  /** Deliveries before a replay, so attempt numbers keep counting. */
  priorAttempts?: number;
}

const queuePrefix = 'events.';
/** Advisory-lock key serialising pg-boss queue changes ("queuechg" in ASCII, as a number). */
const queueChangesLock = '8247609715254633831';
const deadLetterQueue = 'events-dead-letters';

export async function createPostgresQueueBus(options: PostgresQueueBusOptions): Promise<EventBus> {
  const {
    databaseUrl, schema = 'pgboss', pollingIntervalMs = 500, duplicateWindowMs = 12 * 3_600_000, retentionDays = 14,
    handlerTimeoutMs = 10_000, poolSize = 4, logger = createLogger('event-bus.postgres'),
  } = options;
  if (!databaseUrl) throw new Error('createPostgresQueueBus: databaseUrl is required');
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,49}$/.test(schema)) throw new Error(`createPostgresQueueBus: schema "${schema}" must be a plain SQL identifier`);
  for (const [option, value] of Object.entries({ pollingIntervalMs, duplicateWindowMs, retentionDays, handlerTimeoutMs, poolSize })) {
    if (!Number.isFinite(value) || value <= 0) throw new Error(`createPostgresQueueBus: ${option} must be a positive number`);
  }
  if (!Number.isInteger(retentionDays) || !Number.isInteger(poolSize)) throw new Error('createPostgresQueueBus: retentionDays and poolSize must be integers');
  if (handlerTimeoutMs < 1_000 || duplicateWindowMs < 1_000) throw new Error('createPostgresQueueBus: handlerTimeoutMs and duplicateWindowMs must be at least 1_000');

  const pool = createPool({ connectionString: databaseUrl, max: poolSize, connectionTimeoutMillis: 5_000, application_name: 'event-bus', logger, lostMessage: 'idle PostgreSQL connection lost' });
  const db = { executeSql: (text: string, values?: unknown[]) => pool.query(text, values) };
  const boss = new PgBoss({
    db, schema, schedule: false, supervise: true, migrate: true,
    // Expiry of a dead worker's job is found by maintenance: run it often enough that a crashed
    // consumer's event is redelivered within about 1.5 × handlerTimeoutMs (the saga's deadlines
    // must stay above that; see docs/decisions/0006).
    maintenanceIntervalSeconds: Math.max(1, Math.round(handlerTimeoutMs / 2_000)),
    archiveCompletedAfterSeconds: Math.round(duplicateWindowMs / 1_000), retentionDays,
  });
  boss.on('error', (error) => logger.warn('pg-boss maintenance failed', errorFields(error)));
  /**
   * pg-boss 10's createQueue inserts the queue, then creates and attaches a partition, with no
   * lock: two processes declaring the same new consumer at once deadlock (40P01). A session
   * advisory lock on one of our connections serialises every queue change across processes.
   */
  function serializeQueueChanges<T>(work: () => Promise<T>): Promise<T> {
    return withPooledClient(pool, async (client) => {
      await client.query('SELECT pg_advisory_lock($1)', [queueChangesLock]);
      try {
        return await work();
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [queueChangesLock]).catch(() => {});
      }
    });
  }

  try {
    await pool.query('SELECT 1');
    await boss.start();
    await serializeQueueChanges(() => boss.createQueue(deadLetterQueue));
  } catch (error) {
    // Its maintenance timer would keep the process alive forever.
    await boss.stop({ graceful: false, close: false }).catch(() => {});
    await pool.end().catch(() => {});
    throw new Error(`Cannot start the PostgreSQL event bus on ${redact(databaseUrl)}: ${(error as Error).message}`, { cause: error });
  }

  const channel = `${schema}_event_bus`;
  const wakers = new Map<string, Set<() => void>>();
  const wake = (queue: string) => wakers.get(queue)?.forEach((resolve) => resolve());
  const listener = listenForNotifications(databaseUrl, channel, new OutageLog({ logger, failure: 'LISTEN connection lost; consumers poll meanwhile', recovery: 'LISTEN connection back' }), (payload) => payload.split(',').forEach(wake), () => [...wakers.keys()].forEach(wake));
  await listener.ready;
  const notify = (queues: string[]) => pool.query('SELECT pg_notify($1, $2)', [channel, queues.join(',')]).catch((error) => logger.warn('notify failed', errorFields(error)));
  const subscriptions = new Set<Subscription>();

  /** Waits `ms`, or less when the queue is woken (a notification, a retry falling due, stop). */
  function sleep(queue: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiting = wakers.get(queue) ?? new Set();
      wakers.set(queue, waiting);
      const done = () => {
        clearTimeout(timer);
        waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiting.add(done);
    });
  }

  /**
   * Records a delivery's outcome (acknowledged, or failed for a retry), retrying while the database
   * is unreachable (restarting, a connection terminated): left `active`, the job would wait for
   * pg-boss's expiry and then be delivered again for nothing, or before its back-off is over.
   */
  const settlements = new OutageLog({ logger, failure: 'recording a delivery failed, retrying', recovery: 'recording deliveries again' });
  async function settle(queue: string, jobId: string, record: () => Promise<unknown>): Promise<void> {
    const deadline = Date.now() + handlerTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await record();
        return settlements.recovered();
      } catch (error) {
        if (Date.now() > deadline) throw error;
        settlements.failed(error, { queue, jobId });
        await new Promise((resolve) => setTimeout(resolve, Math.min(200 * 2 ** attempt, 5_000)));
      }
    }
  }

  const acknowledge = (queue: string, jobId: string) => settle(queue, jobId, () => boss.complete(queue, jobId));

  async function deliver(rules: SubscriptionRules, queue: string, handler: EventHandler, job: PgBoss.JobWithMetadata<JobData>): Promise<void> {
    const { event, priorAttempts = 0 } = job.data;
    if (!rules.types.has(event.type)) return acknowledge(queue, job.id);
    const delivery = job.retryCount + 1;
    const attempt = priorAttempts + delivery;
    // Like NATS's `working()`: a handler that takes longer than handlerTimeoutMs (a slow payment
    // provider) keeps its delivery; only a delivery whose process stopped expires and is delivered
    // again, instead of a second copy running beside the first on another loop or replica.
    const keepAlive = setInterval(() => {
      pool
        .query(`UPDATE ${schema}.job SET started_on = now() WHERE name = $1 AND id = $2 AND state = 'active'`, [queue, job.id])
        .catch((error) => logger.warn('keeping a delivery alive failed', { queue, jobId: job.id, ...errorFields(error) }));
    }, handlerTimeoutMs / 3);
    const outcome = await runHandler(handler, event, attempt).finally(() => clearInterval(keepAlive));
    if (outcome.handled) return acknowledge(queue, job.id);
    const final = delivery >= rules.maxDeliveries;
    const delayMs = backoffAfter(rules, delivery);
    await settle(queue, job.id, () => transaction(pool, async (tx) => {
      // A retry after a COMMIT whose answer was lost finds the job no longer active: it is recorded
      // already, and failing it again would count one delivery twice.
      const active = await tx.executeSql(`SELECT 1 FROM ${schema}.job WHERE name = $1 AND id = $2 AND state = 'active' FOR UPDATE`, [queue, job.id]);
      if (active.rowCount === 0) return;
      // The job copied retry_limit from its queue when published; the subscription's current
      // maxDeliveries decides (as on NATS), so it is brought up to date before pg-boss reads it.
      await tx.executeSql(`UPDATE ${schema}.job SET retry_limit = $3 WHERE name = $1 AND id = $2 AND state = 'active'`, [queue, job.id, rules.maxDeliveries - 1]);
      // On the last delivery pg-boss moves the job to the dead-letter queue in this same statement.
      await boss.fail(queue, job.id, { error: outcome.error, attempts: attempt }, { db: tx });
      if (!final) await tx.executeSql(`UPDATE ${schema}.job SET start_after = now() + $3 * interval '1 millisecond' WHERE name = $1 AND id = $2 AND state = 'retry'`, [queue, job.id, delayMs]);
    }));
    if (final) return logger.warn('event parked as a dead letter', { consumer: rules.consumer, eventId: event.eventId, attempts: attempt, error: outcome.error });
    setTimeout(() => wake(queue), delayMs + 20).unref();
  }

  async function readDeadLetters(where: string, values: unknown[]): Promise<DeadLetter[]> {
    const { rows } = await pool.query<{ id: string; data: JobData; output: Record<string, any> | null; retry_limit: number; created_on: Date }>(
      `SELECT id, data, output, retry_limit, created_on FROM ${schema}.job WHERE name = $1 AND state = 'created' AND ${where} ORDER BY created_on, id`,
      [deadLetterQueue, ...values],
    );
    return rows.map(({ id, data, output, retry_limit, created_on }) => ({
      id, consumer: data.consumer, event: data.event, deadAt: created_on.toISOString(),
      // pg-boss's own expiry writes `{ value: { message } }` instead of our `{ error, attempts }`.
      error: String(output?.error ?? output?.value?.message ?? 'unknown error'),
      attempts: Number(output?.attempts ?? (data.priorAttempts ?? 0) + retry_limit + 1),
    }));
  }

  /** The consumer's queue, created or updated, subscribed to exactly its event types. */
  async function declareQueue(rules: SubscriptionRules): Promise<string> {
    const queue = `${queuePrefix}${rules.consumer}`;
    const queueOptions = {
      name: queue, retryLimit: rules.maxDeliveries - 1, retryDelay: 0, retryBackoff: false,
      expireInSeconds: Math.ceil(handlerTimeoutMs / 1_000), deadLetter: deadLetterQueue,
    };
    await serializeQueueChanges(async () => {
      await boss.createQueue(queue, queueOptions);
      await boss.updateQueue(queue, queueOptions);
      const { rows } = await pool.query<{ event: string }>(`SELECT event FROM ${schema}.subscription WHERE name = $1`, [queue]);
      for (const { event } of rows) if (!rules.types.has(event)) await boss.unsubscribe(event, queue);
      for (const type of rules.types) await boss.subscribe(type, queue);
    });
    return queue;
  }

  const bus: EventBus = {
    kind: 'postgres',

    health() {
      // The LISTEN connection is the one always open: it notices a lost database first.
      return listener.connected() ? { connected: true } : { connected: false, detail: 'no connection to the event bus database; reconnecting' };
    },

    storedSince() {
      // Jobs live in a PostgreSQL database: they are lost only with it, never apart from it.
      return undefined;
    },

    async publish(event) {
      assertPublishable(event);
      const { rows } = await pool.query<{ name: string }>(`SELECT name FROM ${schema}.subscription WHERE event = $1`, [event.type]);
      if (rows.length === 0) return;
      // One statement for every subscribed queue; the job id (eventId) makes a re-publish a no-op.
      await boss.insert(rows.map(({ name }) => ({ name, id: jobIdOf(event.eventId), data: { event, consumer: name.slice(queuePrefix.length) } satisfies JobData })));
      void notify(rows.map(({ name }) => name));
    },

    async declareConsumer(consumer, options) {
      await declareQueue(subscriptionRules(consumer, options));
    },

    async subscribe(consumer, options, handler) {
      const rules = subscriptionRules(consumer, options);
      const queue = await declareQueue(rules);

      let stopping = false;
      const limiter = createLimiter(rules.concurrency, (error) => logger.error('delivery failed', { consumer, ...errorFields(error) }));
      // ONE loop fetches, up to `concurrency` deliveries run. Handlers start in the order jobs were
      // fetched, which is the queue's order, so a consumer that serialises per aggregate (payments'
      // keyed lock) sees each aggregate's events in order; several fetching loops would race.
      const fetching = new OutageLog({ logger, failure: 'fetching the next event failed; trying again', recovery: 'fetching events again' });
      const loop = (async () => {
        let failures = 0;
        while (!stopping) {
          // A free slot first, then a job: a fetched job's expiry runs from its fetch.
          await limiter.slotFree();
          if (stopping) break;
          let job: PgBoss.JobWithMetadata<JobData> | undefined;
          try {
            [job] = await boss.fetch<JobData>(queue, { batchSize: 1, includeMetadata: true });
            failures = 0;
            fetching.recovered({ consumer });
          } catch (error) {
            fetching.failed(error, { consumer });
            failures += 1;
          }
          if (!job) {
            // Backing off while the database is away: every consumer of every process polls it.
            if (!stopping) await sleep(queue, failures === 0 ? pollingIntervalMs : Math.min(pollingIntervalMs * 2 ** failures, 5_000));
            continue;
          }
          await limiter.run(() => deliver(rules, queue, handler, job));
        }
        await limiter.drain();
      })();
      const subscription: Subscription = {
        async stop() {
          stopping = true;
          subscriptions.delete(subscription);
          wake(queue);
          await loop;
        },
      };
      subscriptions.add(subscription);
      return subscription;
    },

    deadLetters(consumer) {
      return consumer === undefined ? readDeadLetters('true', []) : readDeadLetters(`data->>'consumer' = $2`, [consumer]);
    },

    async replayDeadLetters(selection) {
      const chosen = 'ids' in selection
        ? await readDeadLetters('id = ANY($2::uuid[])', [selection.ids.filter((id) => uuidPattern.test(id))])
        : await bus.deadLetters(selection.consumer);
      let replayed = 0;
      for (const letter of chosen) {
        const queue = `${queuePrefix}${letter.consumer}`;
        const done = await transaction(pool, async (tx) => {
          // A consumer that no longer exists keeps its dead letters (the insert would go nowhere).
          if ((await tx.executeSql(`SELECT 1 FROM ${schema}.queue WHERE name = $1`, [queue])).rowCount === 0) return false;
          // Deleting the dead letter first makes concurrent replays of it replay it once.
          const removed = await tx.executeSql(`DELETE FROM ${schema}.job WHERE name = $1 AND id = $2 AND state = 'created'`, [deadLetterQueue, letter.id]);
          if (removed.rowCount === 0) return false;
          await boss.deleteJob(queue, jobIdOf(letter.event.eventId), { db: tx });
          await boss.insert([{ name: queue, id: jobIdOf(letter.event.eventId), data: { event: letter.event, consumer: letter.consumer, priorAttempts: letter.attempts } }], { db: tx });
          return true;
        });
        if (done) {
          replayed += 1;
          void notify([queue]);
        }
      }
      return replayed;
    },

    async status() {
      const { rows } = await pool.query<{ consumer: string; lag: string; dead: string }>(
        `SELECT substr(q.name, ${queuePrefix.length + 1}) AS consumer,
                (SELECT count(*) FROM ${schema}.job j WHERE j.name = q.name AND j.state < 'completed') AS lag,
                (SELECT count(*) FROM ${schema}.job d WHERE d.name = $1 AND d.state = 'created' AND d.data->>'consumer' = substr(q.name, ${queuePrefix.length + 1})) AS dead
           FROM ${schema}.queue q WHERE starts_with(q.name, $2) ORDER BY 1`,
        [deadLetterQueue, queuePrefix],
      );
      return rows.map((row): ConsumerStatus => ({ consumer: row.consumer, lag: Number(row.lag), deadLetters: Number(row.dead) }));
    },

    async backlog(consumer) {
      // A job is created when its event is published, and keeps that time through its retries.
      const { rows } = await pool.query<{ lag: number; oldest: Date | null }>(
        `SELECT count(*)::int AS lag, min(created_on) AS oldest FROM ${schema}.job WHERE name = $1 AND state < 'completed'`,
        [`${queuePrefix}${consumer}`],
      );
      return { lag: rows[0]!.lag, oldestPublishedAt: rows[0]!.oldest };
    },

    async close() {
      await Promise.all([...subscriptions].map((subscription) => subscription.stop()));
      await boss.stop({ graceful: false, close: false }).catch(() => {});
      await listener.close();
      await pool.end();
    },
  };
  return bus;
}

type Tx = { executeSql(text: string, values?: unknown[]): Promise<pg.QueryResult> };

function transaction<T>(pool: pg.Pool, work: (tx: Tx) => Promise<T>): Promise<T> {
  return withPooledTransaction(pool, (client) => work({ executeSql: (text, values) => client.query(text, values) }));
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** pg-boss job ids are UUIDs: an eventId that is one is used as is, any other maps to a stable UUID. */
function jobIdOf(eventId: string): string {
  if (uuidPattern.test(eventId)) return eventId.toLowerCase();
  const hex = createHash('sha1').update(`event-bus:${eventId}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Waits before reopening the LISTEN connection, by failed attempt; the last repeats. Consumers poll meanwhile. */
const listenRetryMs = [250, 1_000, 2_000, 5_000];

/** One connection holding LISTEN, reopened after an outage; `onReconnect` covers what was missed. */
function listenForNotifications(databaseUrl: string, channel: string, outage: OutageLog, onPayload: (payload: string) => void, onReconnect: () => void) {
  let closed = false;
  let listening = false;
  let client: pg.Client | undefined;
  let markReady: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const run = async () => {
    for (let failures = 0; !closed; ) {
      // keepAlive: a server that vanished without closing the socket (failover) is noticed.
      client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000, keepAlive: true, application_name: 'event-bus-listen' });
      let lostWith = new Error('Connection terminated unexpectedly');
      const lost = new Promise<void>((resolve) => {
        client!.on('error', (error) => {
          lostWith = error;
          resolve();
        });
        client!.on('end', () => resolve());
      });
      try {
        await client.connect();
        client.on('notification', (message) => message.payload && onPayload(message.payload));
        await client.query(`LISTEN "${channel}"`);
        listening = true;
        failures = 0;
        outage.recovered();
        markReady();
        onReconnect();
        await lost;
        if (!closed) outage.failed(lostWith);
      } catch (error) {
        if (!closed) outage.failed(error);
      } finally {
        listening = false;
        await client.end().catch(() => {});
      }
      markReady();
      if (!closed) await new Promise((resolve) => setTimeout(resolve, listenRetryMs[Math.min(failures++, listenRetryMs.length - 1)]));
    }
  };
  const running = run();
  return {
    ready,
    /** Whether LISTEN is in place on a live connection. */
    connected: () => listening && !closed,
    async close() {
      closed = true;
      await client?.end().catch(() => {});
      await running;
    },
  };
}
