/**
 * What the JetStream bus declares on the server — the stream of domain events, the stream of dead
 * letters, and every durable consumer this process has declared — and when: at start, after every
 * reconnect, and whenever the server says one of them is missing. Always together and in that
 * order, because a stream without its consumers loses events silently: NATS restarted on a wiped
 * store directory has no stream, the first client to declare one would create it bare, relays
 * would publish into it and mark their rows published, and consumers created afterwards start with
 * "new" events only (docs/decisions/0018).
 *
 * While a declaration is due (after a disconnect, or a resource found missing) the bus is not
 * ready: publishes wait for it, so this process never publishes into a stream before every
 * consumer it knows of exists. The stream's `created` time tells a re-created stream from the one
 * seen before; relays compare it with their outbox rows to republish what the broker lost.
 */
import {
  AckPolicy, DeliverPolicy, JetStreamApiError, type JetStreamManager, type StreamConfig, type StreamInfo,
} from '@nats-io/jetstream';
import { errorFields, type Logger } from '../../logging/logger.ts';

export type StreamSettings = Partial<StreamConfig> & { name: string };

export interface TopologyOptions {
  jsm: JetStreamManager;
  /** The stream of domain events; consumers are created on it. */
  stream: StreamSettings;
  /** The stream of dead letters. */
  deadLetters: StreamSettings;
  /** What every durable consumer filters (`<prefix>.>`). */
  filterSubject: string;
  /** The consumers' ack wait, in nanoseconds. */
  ackWaitNanos: number;
  /** Waits between failed background declarations; the last repeats. */
  retryBackoffMs: readonly number[];
  logger: Logger;
}

export interface Topology {
  /** Declares the streams and the known consumers once; throws what the server answered. */
  declareNow(): Promise<void>;
  /** Remembers `consumer` (declared again on every later declaration) and declares it now. */
  declareConsumer(consumer: string): Promise<void>;
  /** Whether `consumer` exists on the stream. */
  consumerExists(consumer: string): Promise<boolean>;
  /**
   * Marks the declaration due and runs it in the background, retrying until it succeeds; the
   * promise resolves when it has. Calls while it runs share it (and make it run once more).
   */
  redeclare(reason: string): Promise<void>;
  /** Marks the declaration due (the connection is gone): publishes wait from now on. */
  markDue(): void;
  /** Resolves once nothing is due, or rejects after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void>;
  /** Whether a declaration is due or running. */
  readonly due: boolean;
  /** The `created` time of the stream as last declared; undefined before the first declaration. */
  readonly streamCreatedAt: Date | undefined;
  close(): void;
}

const notFound = 10014;
const streamNameInUse = 10058;

export function createTopology(options: TopologyOptions): Topology {
  const { jsm, stream, deadLetters, filterSubject, ackWaitNanos, retryBackoffMs, logger } = options;
  const consumers = new Set<string>();
  let createdAt: Date | undefined;
  let due = true;
  let closed = false;
  let again = false;
  let background: Promise<void> | undefined;
  const waiters = new Set<() => void>();
  // One declaration at a time in this process: a consumer declared by a service and a
  // re-declaration after a reconnect must not interleave their checks and creations.
  let chain: Promise<unknown> = Promise.resolve();
  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const run = chain.then(work);
    chain = run.catch(() => {});
    return run;
  };

  async function ensureConsumer(consumer: string, startAtFirst: boolean): Promise<void> {
    // max_deliver stays unlimited: the server's own limit drops a message with nothing but an
    // advisory, so the adapter enforces maxDeliveries and always writes a dead letter. No
    // `backoff` either: it only paces ack-wait expiries, while failed handlers are paced by nak(delay).
    const config = { ack_wait: ackWaitNanos, max_deliver: -1, max_ack_pending: 1_000 };
    if (await consumerExists(consumer)) return void (await jsm.consumers.update(stream.name, consumer, config));
    try {
      await jsm.consumers.add(stream.name, {
        ...config, durable_name: consumer, ack_policy: AckPolicy.Explicit, filter_subject: filterSubject,
        // A new consumer on a stream that has consumers starts with the events published from now
        // on (as a new pg-boss subscription). A stream with none was just created (a first
        // deployment, or NATS lost its data): everything in it was published for the consumers
        // about to be declared, so they start at its first event.
        deliver_policy: startAtFirst ? DeliverPolicy.All : DeliverPolicy.New,
      });
    } catch (error) {
      // Another process created it in between: it exists, which is all that was asked.
      if (!(await consumerExists(consumer))) throw error;
    }
  }

  async function consumerExists(consumer: string): Promise<boolean> {
    return jsm.consumers.info(stream.name, consumer).then(() => true, (error) => {
      if (error instanceof JetStreamApiError && error.code === notFound) return false;
      throw error;
    });
  }

  async function declareAll(): Promise<void> {
    const info = await ensureStream(jsm, stream);
    await ensureStream(jsm, deadLetters);
    const startAtFirst = info.state.consumer_count === 0;
    for (const consumer of consumers) await ensureConsumer(consumer, startAtFirst);
    const created = new Date(info.created);
    if (createdAt && created.getTime() !== createdAt.getTime()) {
      logger.warn('the event stream was re-created (NATS lost its data): its consumers are declared again, and relays republish what it lost', {
        stream: stream.name, before: createdAt.toISOString(), now: created.toISOString(),
      });
    }
    createdAt = created;
  }

  function settle(): void {
    due = false;
    for (const wake of [...waiters]) wake();
  }

  const topology: Topology = {
    async declareNow() {
      await serialized(declareAll);
      if (!background) settle();
    },

    async declareConsumer(consumer) {
      consumers.add(consumer);
      // With the streams: a service that declares its consumers right after NATS lost its data
      // must not fail for want of a stream, nor create one bare.
      await topology.declareNow();
    },

    consumerExists,

    redeclare(reason) {
      due = true;
      if (background) {
        again = true;
        return background;
      }
      logger.info('declaring the event stream and its consumers', { reason });
      background = (async () => {
        for (let attempt = 0; !closed; ) {
          again = false;
          try {
            await serialized(declareAll);
            if (again) continue;
            return settle();
          } catch (error) {
            logger.warn('declaring the event stream and its consumers failed; retrying', { reason, attempt: attempt + 1, ...errorFields(error) });
            // Unref'd: a bus being closed must not keep its process alive for the next attempt.
            await new Promise((resolve) => setTimeout(resolve, retryBackoffMs[Math.min(attempt++, retryBackoffMs.length - 1)]).unref());
          }
        }
      })().finally(() => (background = undefined));
      return background;
    },

    markDue() {
      due = true;
    },

    async ready(timeoutMs) {
      if (!due) return;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(done);
          reject(new Error('the event bus is declaring its stream and consumers again (NATS reconnected or lost them); try again'));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        };
        waiters.add(done);
      });
    },

    get due() {
      return due;
    },

    get streamCreatedAt() {
      return createdAt;
    },

    close() {
      closed = true;
    },
  };
  return topology;
}

/** Creates the stream, or brings an existing one to this configuration (storage cannot change). */
async function ensureStream(jsm: JetStreamManager, config: StreamSettings): Promise<StreamInfo> {
  try {
    return await jsm.streams.add(config);
  } catch (error) {
    // The name is taken with another configuration: update what may be updated.
    if (!(error instanceof JetStreamApiError && error.code === streamNameInUse)) throw error;
    const { name, storage: _storage, retention: _retention, ...updatable } = config;
    return jsm.streams.update(name, updatable);
  }
}
