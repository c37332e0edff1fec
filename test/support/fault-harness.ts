/**
 * Test-only: what the end-to-end fault tests (test/event-faults.test.ts) share with the child
 * processes they start (fault-relay.ts, fault-consumer.ts): the consumer's effect, how a
 * delivery is recorded, and how a child reaches the test's bus.
 *
 * The effect is deliberately NOT idempotent: each applied event adds one unit of stock to its
 * product (`available = available + 1`). Every event of these tests is about a product of its
 * own, so after the run every product must have exactly 1: 0 means an event was lost, 2 that one
 * was applied twice.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import type { EventBusFactoryOptions } from '../../platform/events/bus/factory.ts';
import type { EventEnvelope } from '../../platform/events/envelope.ts';
import { handleOnce, type InboxDatabase, type InboxOutcome, type InboxTransaction } from '../../platform/events/inbox.ts';

/** The event type the tests produce and consume. */
export const faultEventType = 'ProductCreated';

/** One delivery as a consumer saw it: which process, which event, which attempt, what the inbox said. */
export interface FaultDelivery {
  process: string;
  eventId: string;
  attempt: number;
  /** The inbox's answer, or `failed: <message>` when the effect threw. */
  outcome: InboxOutcome | `failed: ${string}`;
  at: number;
}

/**
 * Applies `event` through the inbox: one more unit of stock for its product, once. `fail`, when
 * it returns a message, makes the effect throw after its write (the transaction rolls back).
 */
export function receiveStock<Tx extends InboxTransaction>(
  db: InboxDatabase<Tx>,
  consumer: string,
  event: EventEnvelope,
  fail?: (event: EventEnvelope) => string | false,
): Promise<InboxOutcome> {
  return handleOnce(
    db,
    consumer,
    event,
    async (tx) => {
      await tx.$executeRaw`
        INSERT INTO stock_items (product_id, available, reserved, updated_at) VALUES (${event.aggregateId}::uuid, 0, 0, now())
        ON CONFLICT (product_id) DO NOTHING`;
      await tx.$executeRaw`UPDATE stock_items SET available = available + 1, updated_at = now() WHERE product_id = ${event.aggregateId}::uuid`;
      const error = fail?.(event);
      if (error) throw new Error(error);
    },
    { ordering: 'strict' },
  );
}

/** Appends a delivery to a JSON-lines file, synchronously: it is on disk before a SIGKILL can come. */
export function recordDelivery(file: string, delivery: FaultDelivery): void {
  appendFileSync(file, `${JSON.stringify(delivery)}\n`);
}

export function readDeliveries(file: string): FaultDelivery[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as FaultDelivery);
}

/** Bus options travel to a child as JSON (loggers cannot): `--bus-options '{"nats":{"ackWaitMs":1500}}'`. */
export function parseBusOptions(json: string | undefined): EventBusFactoryOptions {
  return json ? (JSON.parse(json) as EventBusFactoryOptions) : {};
}

/** Variables by which createEventBus picks a bus: a child gets exactly the test's, none of the parent's. */
export const busVariables = ['NATS_URL', 'NATS_STREAM', 'NATS_SUBJECT_PREFIX', 'EVENT_BUS_DATABASE_URL', 'DATABASE_URL'] as const;

/**
 * The test's environment without anything that picks a bus or a database: a child process finds
 * both only in what its test gives it, never in a variable of the machine that points elsewhere.
 */
export function inheritedEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !(busVariables as readonly string[]).includes(name) && !name.endsWith('_DATABASE_URL')),
  );
}

export function childEnv(busEnv: Record<string, string>): NodeJS.ProcessEnv {
  return { ...inheritedEnv(), ...busEnv };
}
