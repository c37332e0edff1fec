/**
 * The event bus on NATS JetStream, for deployments: one stream of domain events, one durable pull
 * consumer per consuming context, a second stream for dead letters.
 *
 * Type filtering is done here, not by the server: NATS 2.9 gives a consumer a single
 * `filter_subject`, and one consumer per type would lose the order between the types a context
 * consumes (OrderPlaced before OrderCancelled) and multiply consumers. So each context's consumer
 * reads `<prefix>.>` and acknowledges the events it did not ask for at once. The price: the
 * server sends every event to every consumer, and `lag` also counts events of other types while a
 * consumer is away. On NATS ≥ 2.10, `filter_subjects` would remove both.
 */
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy, DeliverPolicy, DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType,
  jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg, type MsgRequest, type StreamConfig,
} from '@nats-io/jetstream';
import { createLogger, errorFields, type Logger } from '../../logging/logger.ts';
import type { EventEnvelope } from '../envelope.ts';
import type { ConsumerStatus, DeadLetter, EventBus, EventHandler, SubscribeOptions, Subscription } from '../bus.ts';
import { assertPublishable, backoffAfter, createLimiter, runHandler, subscriptionRules, type SubscriptionRules } from './rules.ts';

export interface JetStreamBusOptions {
  /** NATS server URL, or several for a cluster, e.g. `nats://127.0.0.1:4222`. Required. */
  servers: string | string[];
  /** The stream of domain events. @default 'DOMAIN_EVENTS' */
  stream?: string;
  /** First subject token; the stream holds `<subjectPrefix>.>`. @default 'events' */
  subjectPrefix?: string;
  /** Within this window, a second publish of the same `eventId` is dropped by the server. @default 120_000 (2 min) */
  duplicateWindowMs?: number;
  /** Copies of each stream in a cluster (3 in production clusters). @default 1 */
  replicas?: number;
  /** How long an event is kept for consumers that are away. @default 1_209_600_000 (14 days) */
  maxAgeMs?: number;
  /** The stream of dead letters (kept until replayed); subjects `<deadLetterStream>.<consumer>`. @default `${stream}_DEAD_LETTERS` */
  deadLetterStream?: string;
  /** Before the server redelivers an unacknowledged event; running handlers keep theirs alive. @default 10_000 */
  ackWaitMs?: number;
  /** Wait for a PubAck or a JetStream API answer before failing. @default 5_000 */
  timeoutMs?: number;
  /** Connection name shown in the server's monitoring. @default 'event-bus' */
  name?: string;
  /** @default createLogger('event-bus.nats') */
  logger?: Logger;
}

const nanos = (ms: number) => Math.round(ms * 1_000_000);
const replayToken = '_replay';
const encoder = new TextEncoder();

export async function createJetStreamBus(options: JetStreamBusOptions): Promise<EventBus> {
  const {
    servers, stream = 'DOMAIN_EVENTS', subjectPrefix = 'events', duplicateWindowMs = 120_000, replicas = 1,
    maxAgeMs = 14 * 24 * 3_600_000, deadLetterStream = `${stream}_DEAD_LETTERS`, ackWaitMs = 10_000, timeoutMs = 5_000,
    name = 'event-bus', logger = createLogger('event-bus.nats'),
  } = options;
  const serverList = [servers].flat();
  if (serverList.length === 0 || serverList.some((server) => !server)) throw new Error('createJetStreamBus: servers (e.g. nats://127.0.0.1:4222) is required');
  for (const [option, value] of Object.entries({ stream, deadLetterStream })) {
    if (!/^[A-Za-z0-9_-]+$/.test(value)) throw new Error(`createJetStreamBus: ${option} "${value}" may only hold letters, digits, "_" and "-"`);
  }
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subjectPrefix)) throw new Error(`createJetStreamBus: subjectPrefix "${subjectPrefix}" must be dot-separated tokens without wildcards`);
  for (const [option, value] of Object.entries({ duplicateWindowMs, maxAgeMs, ackWaitMs, timeoutMs })) {
    if (!Number.isFinite(value) || value <= 0) throw new Error(`createJetStreamBus: ${option} must be a positive number`);
  }
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw new Error('createJetStreamBus: replicas must be an integer from 1 to 5');
  if (duplicateWindowMs > maxAgeMs) throw new Error('createJetStreamBus: duplicateWindowMs cannot exceed maxAgeMs');

  let nc: NatsConnection;
  try {
    // Unlimited reconnects: after the first connection, an outage is waited out, never fatal.
    nc = await connect({ servers: serverList, name, timeout: timeoutMs, maxReconnectAttempts: -1, reconnectTimeWait: 500 });
  } catch (error) {
    throw new Error(`Cannot reach NATS at ${serverList.join(', ')}: ${(error as Error).message}`, { cause: error });
  }
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout: timeoutMs });
    await ensureStream(jsm, {
      name: stream, subjects: [`${subjectPrefix}.>`], storage: StorageType.File, retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old, max_age: nanos(maxAgeMs), duplicate_window: nanos(duplicateWindowMs), num_replicas: replicas,
    });
    await ensureStream(jsm, {
      name: deadLetterStream, subjects: [`${deadLetterStream}.>`], storage: StorageType.File, retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old, max_age: 0, duplicate_window: nanos(duplicateWindowMs), num_replicas: replicas,
    });
  } catch (error) {
    await nc.close();
    throw new Error(`JetStream at ${serverList.join(', ')} is unusable for the event bus: ${(error as Error).message}`, { cause: error });
  }
  const js: JetStreamClient = jetstream(nc, { timeout: timeoutMs });
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect') logger.warn(`NATS ${status.type}`, { server: status.server });
    }
  })().catch(() => {});

  const replaySubject = (consumer: string) => `${subjectPrefix}.${replayToken}.${consumer}`;
  const deadLetterSubject = (consumer: string) => `${deadLetterStream}.${consumer}`;
  const subscriptions = new Set<Subscription>();

  async function consume(rules: SubscriptionRules, handler: EventHandler, msg: JsMsg, stopping: () => boolean): Promise<void> {
    // Pulled before stop() but not started: back to the server at once for the next subscriber.
    if (stopping()) return msg.nak();
    const tokens = msg.subject.split('.');
    const replayFor = tokens[tokens.length - 2] === replayToken ? tokens[tokens.length - 1] : undefined;
    // The header, else the subject's last token (an event published by another client).
    const type = msg.headers?.get('Event-Type') || (replayFor === undefined ? tokens[tokens.length - 1]! : '');
    if ((replayFor !== undefined && replayFor !== rules.consumer) || !rules.types.has(type)) return msg.ack();

    const delivery = msg.info.deliveryCount;
    const attempt = Number(msg.headers?.get('Prior-Attempts') || 0) + delivery;
    let event: EventEnvelope;
    try {
      event = msg.json<EventEnvelope>();
    } catch (error) {
      return park(rules.consumer, msg, null, `unreadable event body: ${(error as Error).message}`, attempt);
    }
    // Past our budget only when the last attempt never finished (process stopped, ack lost) or
    // writing its dead letter failed: park it without running the handler once more.
    if (delivery > rules.maxDeliveries) {
      return park(rules.consumer, msg, event, 'deliveries exhausted: the last one was not acknowledged (process stopped, or its dead letter could not be written)', attempt - 1);
    }

    const keepAlive = setInterval(() => msg.working(), ackWaitMs / 3);
    const outcome = await runHandler(handler, event, attempt).finally(() => clearInterval(keepAlive));
    if (outcome.handled) return msg.ack();
    if (delivery < rules.maxDeliveries) return msg.nak(backoffAfter(rules, delivery));
    return park(rules.consumer, msg, event, outcome.error, attempt);
  }

  /** Dead letter first, then `term`: a crash in between redelivers, and the msgID drops the copy. */
  async function park(consumer: string, msg: JsMsg, event: EventEnvelope | null, error: string, attempts: number): Promise<void> {
    const deadLetter = { consumer, event: event ?? { raw: msg.string() }, error, attempts, deadAt: new Date().toISOString() };
    const headers = natsHeaders();
    headers.set('Event-Type', msg.headers?.get('Event-Type') ?? '');
    if (event) headers.set('Event-Id', event.eventId);
    try {
      await js.publish(deadLetterSubject(consumer), JSON.stringify(deadLetter), { msgID: `${consumer}:${msg.info.streamSequence}`, headers });
      msg.term();
      logger.warn('event parked as a dead letter', { consumer, eventId: event?.eventId, attempts, error });
    } catch (publishError) {
      logger.error('could not write a dead letter; retrying later', { consumer, ...errorFields(publishError) });
      msg.nak(ackWaitMs);
    }
  }

  async function ensureConsumer(rules: SubscriptionRules): Promise<void> {
    // max_deliver stays unlimited: the server's own limit drops a message with nothing but an
    // advisory, so this adapter enforces maxDeliveries and always writes a dead letter. No
    // `backoff` either: it only paces ack-wait expiries (and replaces ack_wait), while failed
    // handlers are paced by `nak(delay)` per attempt above.
    const config = { ack_wait: nanos(ackWaitMs), max_deliver: -1, max_ack_pending: 1_000 };
    if (await consumerExists(rules.consumer)) {
      await jsm.consumers.update(stream, rules.consumer, config);
    } else {
      // New consumers start with the events published from now on (as a new pg-boss subscription).
      await jsm.consumers.add(stream, {
        ...config, durable_name: rules.consumer, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.New,
        filter_subject: `${subjectPrefix}.>`,
      });
    }
  }

  async function consumerExists(consumer: string): Promise<boolean> {
    return jsm.consumers.info(stream, consumer).then(() => true, (error) => {
      if (error instanceof JetStreamApiError && error.code === 10014) return false;
      throw error;
    });
  }

  async function readDeadLetter(seq: number): Promise<DeadLetter | null> {
    const stored = await jsm.streams.getMessage(deadLetterStream, { seq });
    return stored && { id: String(stored.seq), ...stored.json<Omit<DeadLetter, 'id'>>() };
  }

  const bus: EventBus = {
    kind: 'nats',

    async publish(event) {
      assertPublishable(event);
      const headers = natsHeaders();
      for (const [key, value] of Object.entries({
        'Event-Type': event.type, 'Event-Source': event.source, 'Aggregate-Type': event.aggregateType, 'Aggregate-Id': event.aggregateId,
        'Aggregate-Version': String(event.aggregateVersion), 'Correlation-Id': event.correlationId, 'Causation-Id': event.causationId,
      })) headers.set(key, value);
      if (event.traceparent) headers.set('traceparent', event.traceparent);
      // Awaiting the PubAck means the server has stored it; msgID lets it drop a re-publish.
      await js.publish(`${subjectPrefix}.${event.source}.${event.aggregateType}.${event.type}`, encoder.encode(JSON.stringify(event)), { msgID: event.eventId, headers });
    },

    async declareConsumer(consumer, options: SubscribeOptions) {
      await ensureConsumer(subscriptionRules(consumer, options));
    },

    async subscribe(consumer, options: SubscribeOptions, handler) {
      const rules = subscriptionRules(consumer, options);
      await ensureConsumer(rules);
      // A small pull batch: messages pulled but not started when stop() comes are nak'ed back, and
      // each such nak costs that event one of its deliveries.
      const messages = await (await js.consumers.get(stream, consumer)).consume({ max_messages: rules.concurrency + 1 });
      let stopping = false;
      const limiter = createLimiter(rules.concurrency, (error) => logger.error('delivery failed', { consumer, ...errorFields(error) }));
      const loop = (async () => {
        for await (const msg of messages) await limiter.run(() => consume(rules, handler, msg, () => stopping));
      })().catch((error) => logger.error('consumer loop ended', { consumer, ...errorFields(error) }));
      const subscription: Subscription = {
        async stop() {
          if (stopping) return;
          stopping = true;
          subscriptions.delete(subscription);
          await messages.close();
          await loop;
          await limiter.drain();
        },
      };
      subscriptions.add(subscription);
      return subscription;
    },

    async deadLetters(consumer) {
      const subject = consumer ? deadLetterSubject(consumer) : `${deadLetterStream}.>`;
      const found: DeadLetter[] = [];
      for (let seq = 1; ; ) {
        // STREAM.MSG.GET takes next_by_subj since server 2.9; the client types it for direct get only.
        const stored = await jsm.streams.getMessage(deadLetterStream, { seq, next_by_subj: subject } as unknown as MsgRequest);
        if (!stored) return found;
        found.push({ id: String(stored.seq), ...stored.json<Omit<DeadLetter, 'id'>>() });
        seq = stored.seq + 1;
      }
    },

    async replayDeadLetters(selection) {
      const chosen = 'ids' in selection
        ? (await Promise.all(selection.ids.filter((id) => /^[1-9][0-9]*$/.test(id)).map((id) => readDeadLetter(Number(id))))).filter((letter) => letter !== null)
        : await bus.deadLetters(selection.consumer);
      let replayed = 0;
      for (const letter of chosen) {
        // Left parked: an unreadable body, or a consumer that no longer exists (a new one would
        // start after the replay and never see it).
        if (!letter.event?.eventId || !(await consumerExists(letter.consumer))) continue;
        const headers = natsHeaders();
        headers.set('Event-Type', letter.event.type);
        headers.set('Prior-Attempts', String(letter.attempts));
        // A subject only its consumer accepts; the msgID makes a second replay of it a no-op.
        await js.publish(replaySubject(letter.consumer), encoder.encode(JSON.stringify(letter.event)), {
          msgID: `replay:${deadLetterStream}:${letter.id}`, headers,
        });
        await jsm.streams.deleteMessage(deadLetterStream, Number(letter.id), false);
        replayed += 1;
      }
      return replayed;
    },

    async status() {
      const consumers = await jsm.consumers.list(stream).next();
      const dead = await jsm.streams.info(deadLetterStream, { subjects_filter: `${deadLetterStream}.>` });
      const deadBy = new Map(Object.entries(dead.state.subjects ?? {}).map(([subject, count]) => [subject.slice(deadLetterStream.length + 1), count]));
      const statuses = new Map<string, ConsumerStatus>();
      for (const info of consumers) {
        if (!info.config.durable_name) continue;
        statuses.set(info.name, { consumer: info.name, lag: info.num_pending + info.num_ack_pending, deadLetters: deadBy.get(info.name) ?? 0 });
      }
      for (const [consumer, deadLetters] of deadBy) if (!statuses.has(consumer)) statuses.set(consumer, { consumer, lag: 0, deadLetters });
      return [...statuses.values()].sort((a, b) => a.consumer.localeCompare(b.consumer));
    },

    async close() {
      await Promise.all([...subscriptions].map((subscription) => subscription.stop()));
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
  return bus;
}

/** Creates the stream, or brings an existing one to this configuration (storage cannot change). */
async function ensureStream(jsm: JetStreamManager, config: StreamConfig | (Partial<StreamConfig> & { name: string })): Promise<void> {
  try {
    await jsm.streams.add(config);
  } catch (error) {
    // 10058: the name is taken with another configuration; update what may be updated.
    if (!(error instanceof JetStreamApiError && error.code === 10058)) throw error;
    const { name, storage: _storage, retention: _retention, ...updatable } = config;
    await jsm.streams.update(name, updatable);
  }
}
