/**
 * The event bus port. Two adapters implement it — NATS JetStream for deployments, a PostgreSQL
 * queue (pg-boss) for the embedded default — and one contract test suite holds both to it.
 * Delivery is at-least-once: consumers make redelivery harmless with an inbox (inbox.ts).
 */
import type { EventEnvelope } from './envelope.ts';

export interface Delivery {
  /** 1 for the first delivery of this event to this consumer. */
  attempt: number;
}

/** Throw to have the event redelivered later; after `maxDeliveries` it is parked as a dead letter. */
export type EventHandler = (event: EventEnvelope, delivery: Delivery) => Promise<void>;

export interface SubscribeOptions {
  /** Event types to receive (e.g. `['ProductCreated']`); others are not delivered to the handler. */
  types: readonly string[];
  /** Deliveries before an event is parked as a dead letter. @default 5 */
  maxDeliveries?: number;
  /** Wait before redelivery n (the last value repeats). @default [200, 1_000, 5_000, 15_000] */
  backoffMs?: readonly number[];
  /** Events handled at once by this process. @default 1 (order within the consumer kept) */
  concurrency?: number;
}

export interface Subscription {
  /** Stops receiving; an event being handled finishes first. */
  stop(): Promise<void>;
}

export interface DeadLetter {
  /** Id to replay it by. */
  id: string;
  consumer: string;
  event: EventEnvelope;
  /** The handler's last error message. */
  error: string;
  attempts: number;
  deadAt: string;
}

export interface ConsumerStatus {
  consumer: string;
  /** Events published but not yet handled (acknowledged) by this consumer. */
  lag: number;
  deadLetters: number;
}

/** How far one consumer is behind, for whoever must not judge before it caught up (the order saga's deadlines). */
export interface ConsumerBacklog {
  /** Events published but not yet handled (acknowledged) by this consumer, as in `status()`. */
  lag: number;
  /**
   * When the oldest event not yet handled was published (broker clock), or null when none waits:
   * every event published before it has been handled. An upper bound on NATS, where the
   * consumer's acknowledgement floor is the measure.
   */
  oldestPublishedAt: Date | null;
}

/** What a readiness probe needs to know about the bus, read from state the adapter already holds. */
export interface BusHealth {
  /** Whether the adapter holds a working connection to its broker right now. */
  connected: boolean;
  /** Why it is not (or what it is doing), in words safe to show anyone: no URL, no secret. */
  detail?: string;
}

export interface EventBus {
  /** `nats` or `postgres`, for logs and status output. */
  readonly kind: string;
  /**
   * The bus's connection state, synchronously and without a round trip to the broker, so that a
   * readiness probe or a saga can ask it as often as it likes.
   */
  health(): BusHealth;
  /**
   * Since when the broker holds what it acknowledged, as this process last declared it: on NATS,
   * the stream's creation. Events acknowledged before it went to a stream the broker has since
   * lost (NATS restarted on a wiped store), so the outbox relay publishes them again
   * (docs/decisions/0018). Undefined before the first declaration, and where the queue cannot be
   * lost apart from a database (the PostgreSQL queue).
   */
  storedSince(): Date | undefined;
  /**
   * Publishes one event; resolves once the broker has durably accepted it. Publishing the same
   * `eventId` again is accepted and not delivered twice (broker-side de-duplication).
   */
  publish(event: EventEnvelope): Promise<void>;
  /**
   * Creates the durable consumer `consumer` if it does not exist, without receiving anything:
   * from then on every published event of its types is kept for it. A consumer receives only
   * events published after it was first declared or subscribed, so every process declares all
   * known consumers before it publishes (see subgraphs/event-consumers.ts).
   */
  declareConsumer(consumer: string, options: SubscribeOptions): Promise<void>;
  /** Starts (or resumes) the durable consumer `consumer`, e.g. `inventory`; declares it first. */
  subscribe(consumer: string, options: SubscribeOptions, handler: EventHandler): Promise<Subscription>;
  /** Dead letters, oldest first; of one consumer or of all. */
  deadLetters(consumer?: string): Promise<DeadLetter[]>;
  /** Puts dead letters back for their consumer (each one is delivered again, once); returns how many. */
  replayDeadLetters(selection: { ids: string[] } | { all: true; consumer?: string }): Promise<number>;
  /** Lag and dead letters per known consumer. */
  status(): Promise<ConsumerStatus[]>;
  /** One consumer's backlog, in one or two round trips (cheaper than `status()`); zero for an unknown consumer. */
  backlog(consumer: string): Promise<ConsumerBacklog>;
  close(): Promise<void>;
}
