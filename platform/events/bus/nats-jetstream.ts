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
 *
 * What exists on the server, and when it is declared again (after a reconnect, or when found
 * missing), is nats-topology.ts's business; this file publishes, consumes and parks. A publish
 * acknowledged with a lower sequence than before tells that NATS came back without its data
 * (docs/decisions/0018).
 */
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import {
  DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType,
  jetstream, jetstreamManager, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg, type MsgRequest,
} from '@nats-io/jetstream';
import { createLogger, errorFields, type Logger } from '../../logging/logger.ts';
import type { EventEnvelope } from '../envelope.ts';
import type { ConsumerStatus, DeadLetter, EventBus, EventHandler, SubscribeOptions, Subscription } from '../bus.ts';
import { createTopology, type Topology } from './nats-topology.ts';
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
  /**
   * Whether this client declares the streams and durable consumers: at start, after every
   * reconnect, and whenever it finds them missing (nats-topology.ts). Services do. Operators'
   * tools (`npm run events`) pass false: they only read, and fail saying the stream is missing
   * rather than create it without its consumers. @default true
   */
  declare?: boolean;
  /** @default createLogger('event-bus.nats') */
  logger?: Logger;
}

/**
 * How an outbox relay publishes into this bus (`OutboxRelayOptions`): NATS stores one connection's
 * publishes to a stream in the order they were sent, so a relay may send many before the first is
 * acknowledged. After NATS lost its data, every event a relay kept is published again ahead of new
 * ones; one at a time (~500/s on 2 cores) that held the first new order back 9 s per 6000 kept
 * events, pipelined 2.7–5 s (docs/decisions/0018).
 */
export const natsRelayPacing = { publishesInFlight: 64, batchSize: 500 } as const;

const nanos = (ms: number) => Math.round(ms * 1_000_000);
const replayToken = '_replay';
/** Waits between failed re-declarations in the background: soon after NATS is back, never a storm. */
const redeclareBackoffMs = [250, 500, 1_000, 2_000, 5_000];
const streamNotFound = 10059;
const encoder = new TextEncoder();

/** A stream the bus needs is not on the server, and this client was not to declare it. */
export class StreamMissingError extends Error {
  constructor(readonly stream: string) {
    super(`The stream "${stream}" does not exist on NATS: no service has started yet, or NATS lost its data (the services declare it again with its consumers, and their relays republish what it lost)`);
    this.name = 'StreamMissingError';
  }
}

export async function createJetStreamBus(options: JetStreamBusOptions): Promise<EventBus> {
  const {
    servers, stream = 'DOMAIN_EVENTS', subjectPrefix = 'events', duplicateWindowMs = 120_000, replicas = 1,
    maxAgeMs = 14 * 24 * 3_600_000, deadLetterStream = `${stream}_DEAD_LETTERS`, ackWaitMs = 10_000, timeoutMs = 5_000,
    name = 'event-bus', declare = true, logger = createLogger('event-bus.nats'),
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
  const jsm: JetStreamManager = await jetstreamManager(nc, { timeout: timeoutMs }).catch(async (error) => {
    await nc.close();
    throw new Error(`JetStream at ${serverList.join(', ')} is unusable for the event bus: ${(error as Error).message}`, { cause: error });
  });
  const topology: Topology = createTopology({
    jsm,
    stream: {
      name: stream, subjects: [`${subjectPrefix}.>`], storage: StorageType.File, retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old, max_age: nanos(maxAgeMs), duplicate_window: nanos(duplicateWindowMs), num_replicas: replicas,
    },
    deadLetters: {
      name: deadLetterStream, subjects: [`${deadLetterStream}.>`], storage: StorageType.File, retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old, max_age: 0, duplicate_window: nanos(duplicateWindowMs), num_replicas: replicas,
    },
    filterSubject: `${subjectPrefix}.>`,
    ackWaitNanos: nanos(ackWaitMs),
    retryBackoffMs: redeclareBackoffMs,
    logger,
  });
  if (declare) {
    try {
      await topology.declareNow();
    } catch (error) {
      await nc.close();
      throw new Error(`JetStream at ${serverList.join(', ')} is unusable for the event bus: ${(error as Error).message}`, { cause: error });
    }
  }
  const js: JetStreamClient = jetstream(nc, { timeout: timeoutMs });
  let connected = true;
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect') logger.warn(`NATS ${status.type}`, { server: status.server });
      if (status.type === 'disconnect') {
        connected = false;
        // Publishes wait from now on: the server we reconnect to may have lost the stream.
        if (declare) topology.markDue();
      }
      if (status.type === 'reconnect') {
        connected = true;
        if (declare) void topology.redeclare('reconnected');
      }
    }
  })().catch(() => {});
  /** The highest stream sequence a publish of this process was acknowledged with. */
  let lastSequence = 0;

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

  /** Publishes one event, waiting first for a declaration that is due (see nats-topology.ts). */
  async function publishEvent(subject: string, body: Uint8Array, msgID: string, headers: ReturnType<typeof natsHeaders>): Promise<void> {
    if (declare) await topology.ready(timeoutMs);
    const before = topology.streamCreatedAt;
    let ack;
    try {
      ack = await js.publish(subject, body, { msgID, headers });
    } catch (error) {
      // Connected, yet refused: the stream (or the whole JetStream state) may be gone.
      if (declare && connected) void topology.redeclare(`a publish failed: ${(error as Error).message}`);
      throw error;
    }
    // A duplicate's ack carries its first copy's sequence, which is lower by nature.
    if (!declare || ack.duplicate || ack.seq >= lastSequence) {
      lastSequence = Math.max(lastSequence, ack.seq);
      return;
    }
    // The sequence went back. Concurrent publishes are acknowledged out of order too, so first ask
    // the server whether the stream is a new one; only then was the broker reset, and this event
    // may have landed in the new stream before its consumers existed. Declare them, and publish
    // the event once more under another message id (the server would drop a plain re-publish as
    // a duplicate of the first copy); the consumers' inboxes absorb the second copy.
    if (!(await streamWasRecreated(before))) return;
    void topology.redeclare('the stream sequence went back: the stream is a new one');
    await topology.ready(timeoutMs);
    const now = topology.streamCreatedAt!;
    await js.publish(subject, body, { msgID: `${msgID}@${now.toISOString()}`, headers });
    lastSequence = ack.seq;
  }

  /** One look at the stream's creation time at a time, shared by the publishes that ask. */
  let recreationCheck: Promise<string | undefined> | undefined;
  async function streamWasRecreated(known: Date | undefined): Promise<boolean> {
    recreationCheck ??= jsm.streams.info(stream).then((info) => info.created, () => undefined).finally(() => (recreationCheck = undefined));
    const created = await recreationCheck;
    return known !== undefined && created !== undefined && new Date(created).getTime() !== known.getTime();
  }

  /** Says plainly that a stream is missing, instead of NATS's "stream not found"; never creates it. */
  async function assertStreamsExist(): Promise<void> {
    for (const name of [stream, deadLetterStream]) {
      await jsm.streams.info(name).catch((error: unknown) => {
        throw error instanceof JetStreamApiError && error.code === streamNotFound ? new StreamMissingError(name) : error;
      });
    }
  }

  async function readDeadLetter(seq: number): Promise<DeadLetter | null> {
    const stored = await jsm.streams.getMessage(deadLetterStream, { seq });
    return stored && { id: String(stored.seq), ...stored.json<Omit<DeadLetter, 'id'>>() };
  }

  const bus: EventBus = {
    kind: 'nats',

    health() {
      if (nc.isClosed()) return { connected: false, detail: 'closed' };
      if (!connected) return { connected: false, detail: 'disconnected from NATS; reconnecting' };
      if (declare && topology.due) return { connected: false, detail: 'declaring the event stream and its consumers' };
      return { connected: true };
    },

    storedSince() {
      return topology.streamCreatedAt;
    },

    async publish(event) {
      assertPublishable(event);
      const headers = natsHeaders();
      for (const [key, value] of Object.entries({
        'Event-Type': event.type, 'Event-Source': event.source, 'Aggregate-Type': event.aggregateType, 'Aggregate-Id': event.aggregateId,
        'Aggregate-Version': String(event.aggregateVersion), 'Correlation-Id': event.correlationId, 'Causation-Id': event.causationId,
      })) headers.set(key, value);
      if (event.traceparent) headers.set('traceparent', event.traceparent);
      // Awaiting the PubAck means the server has stored it; msgID lets it drop a re-publish.
      await publishEvent(`${subjectPrefix}.${event.source}.${event.aggregateType}.${event.type}`, encoder.encode(JSON.stringify(event)), event.eventId, headers);
    },

    async declareConsumer(consumer, options: SubscribeOptions) {
      subscriptionRules(consumer, options);
      if (!declare) throw new Error('declareConsumer: this event bus was opened with declare: false (read-only)');
      await topology.declareConsumer(consumer);
    },

    async subscribe(consumer, options: SubscribeOptions, handler) {
      const rules = subscriptionRules(consumer, options);
      if (!declare) throw new Error('subscribe: this event bus was opened with declare: false (read-only)');
      await topology.declareConsumer(consumer);
      // A small pull batch: messages pulled but not started when stop() comes are nak'ed back, and
      // each such nak costs that event one of its deliveries.
      const pull = async (): Promise<ConsumerMessages> => {
        const pulled = await (await js.consumers.get(stream, consumer)).consume({ max_messages: rules.concurrency + 1 });
        // The server lost or deleted the consumer: declare it again, then end this pull, which may
        // stay stuck on the consumer that is gone (a deleted one is never pulled from again); the
        // loop below pulls anew from the one declared.
        void (async () => {
          for await (const status of pulled.status()) {
            if (status.type === 'consumer_not_found' || status.type === 'stream_not_found' || status.type === 'consumer_deleted') {
              void topology.redeclare(`${status.type} while consuming as ${consumer}`).then(() => pulled.close()).catch(() => {});
            }
          }
        })().catch(() => {});
        return pulled;
      };
      let messages = await pull();
      let stopping = false;
      let stopped!: () => void;
      const stopSignal = new Promise<void>((resolve) => (stopped = resolve));
      const limiter = createLimiter(rules.concurrency, (error) => logger.error('delivery failed', { consumer, ...errorFields(error) }));
      const loop = (async () => {
        while (!stopping) {
          try {
            for await (const msg of messages) await limiter.run(() => consume(rules, handler, msg, () => stopping));
          } catch (error) {
            logger.warn('pulling events failed', { consumer, ...errorFields(error) });
          }
          if (stopping) return;
          // The server ended the pull: its consumer was deleted while it ran (with its stream, by
          // someone or something). Declare both again and pull anew.
          logger.warn('the pull of a consumer ended; declaring it again', { consumer });
          await Promise.race([topology.redeclare(`the pull of ${consumer} ended`), stopSignal]);
          if (stopping) return;
          try {
            messages = await pull();
            if (stopping) await messages.close();
          } catch (error) {
            logger.warn('pulling again failed; retrying', { consumer, ...errorFields(error) });
            await Promise.race([new Promise((resolve) => setTimeout(resolve, ackWaitMs / 3)), stopSignal]);
          }
        }
      })();
      const subscription: Subscription = {
        async stop() {
          if (stopping) return;
          stopping = true;
          stopped();
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
      await assertStreamsExist();
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
      await assertStreamsExist();
      const chosen = 'ids' in selection
        ? (await Promise.all(selection.ids.filter((id) => /^[1-9][0-9]*$/.test(id)).map((id) => readDeadLetter(Number(id))))).filter((letter) => letter !== null)
        : await bus.deadLetters(selection.consumer);
      let replayed = 0;
      for (const letter of chosen) {
        // Left parked: an unreadable body, or a consumer that no longer exists (a new one would
        // start after the replay and never see it).
        if (!letter.event?.eventId || !(await topology.consumerExists(letter.consumer))) continue;
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
      await assertStreamsExist();
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

    async backlog(consumer) {
      const info = await jsm.consumers.info(stream, consumer).catch((error) => {
        if (error instanceof JetStreamApiError && error.code === 10014) return null;
        throw error;
      });
      const lag = info ? info.num_pending + info.num_ack_pending : 0;
      // Below `delivered` and above the floor: a delivery not yet acknowledged (a nak'd one too).
      if (!info || (lag === 0 && info.ack_floor.stream_seq >= info.delivered.stream_seq)) return { lag, oldestPublishedAt: null };
      // Everything up to the acknowledgement floor is handled; the first message after it is the
      // oldest that may not be (next_by_subj skips a deleted sequence).
      const next = await jsm.streams.getMessage(stream, { seq: info.ack_floor.stream_seq + 1, next_by_subj: `${subjectPrefix}.>` } as unknown as MsgRequest);
      return { lag, oldestPublishedAt: next?.time ?? null };
    },

    async close() {
      topology.close();
      await Promise.all([...subscriptions].map((subscription) => subscription.stop()));
      if (!nc.isClosed()) await nc.drain().catch(() => nc.close());
    },
  };
  return bus;
}
