/**
 * What both adapters decide the same way: which events and subscriptions are valid, the wait
 * before a redelivery, and a handler's outcome. Broker specifics (acks, naks, queues) stay in
 * the adapters.
 */
import type { EventEnvelope } from '../envelope.ts';
import type { EventHandler, SubscribeOptions } from '../bus.ts';

export const defaultMaxDeliveries = 5;
export const defaultBackoffMs: readonly number[] = [200, 1_000, 5_000, 15_000];

export interface SubscriptionRules {
  consumer: string;
  types: ReadonlySet<string>;
  maxDeliveries: number;
  backoffMs: readonly number[];
  concurrency: number;
}

/**
 * Consumer names become NATS durable names and pg-boss queue names: letters, digits, `_` and `-`
 * only, so that one name is valid on both buses.
 */
export function assertConsumerName(consumer: string): void {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(consumer)) {
    throw new Error(`Invalid consumer name "${consumer}": use 1–100 letters, digits, "_" or "-" (e.g. "inventory")`);
  }
}

const token = /^[A-Za-z0-9_-]+$/;

/**
 * `source`, `aggregateType` and `type` become subject tokens on NATS (`events.<source>.<aggregateType>.<type>`),
 * so they are refused on every bus when they could not be one.
 */
export function assertPublishable(event: EventEnvelope): void {
  if (!event.eventId) throw new Error('publish: the event has no eventId');
  for (const field of ['source', 'aggregateType', 'type'] as const) {
    if (typeof event[field] !== 'string' || !token.test(event[field])) {
      throw new Error(`publish: event ${event.eventId} has ${field} "${event[field]}"; use letters, digits, "_" or "-"`);
    }
  }
}

/** Validates and completes the options of `subscribe`; throws on anything a broker would misread. */
export function subscriptionRules(consumer: string, options: SubscribeOptions): SubscriptionRules {
  assertConsumerName(consumer);
  const { types, maxDeliveries = defaultMaxDeliveries, backoffMs = defaultBackoffMs, concurrency = 1 } = options;
  if (!Array.isArray(types) || types.length === 0 || types.some((type) => typeof type !== 'string' || !token.test(type))) {
    throw new Error(`subscribe("${consumer}"): types must be a non-empty list of event type names such as "ProductCreated"`);
  }
  if (!Number.isInteger(maxDeliveries) || maxDeliveries < 1) throw new Error(`subscribe("${consumer}"): maxDeliveries must be an integer ≥ 1`);
  if (backoffMs.length === 0 || backoffMs.some((ms) => !Number.isFinite(ms) || ms < 0)) {
    throw new Error(`subscribe("${consumer}"): backoffMs must be a non-empty list of delays ≥ 0`);
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`subscribe("${consumer}"): concurrency must be an integer ≥ 1`);
  return { consumer, types: new Set(types), maxDeliveries, backoffMs, concurrency };
}

/** The wait before the delivery that follows failed delivery `attempt` (1-based); the last value repeats. */
export function backoffAfter(rules: SubscriptionRules, attempt: number): number {
  return rules.backoffMs[Math.min(attempt, rules.backoffMs.length) - 1]!;
}

export type Outcome = { handled: true } | { handled: false; error: string };

/** Runs the handler; a throw (or a rejected promise) is a failed delivery, with its message kept. */
export async function runHandler(handler: EventHandler, event: EventEnvelope, attempt: number): Promise<Outcome> {
  try {
    await handler(event, { attempt });
    return { handled: true };
  } catch (error) {
    return { handled: false, error: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * At most `concurrency` tasks at once. `run` resolves when the task has *started*, so a consumer
 * loop stops pulling while every slot is busy; with one slot, events are handled in order.
 */
export function createLimiter(concurrency: number, onError: (error: unknown) => void) {
  const running = new Set<Promise<void>>();
  const slotFree = async (): Promise<void> => {
    while (running.size >= concurrency) await Promise.race(running);
  };
  return {
    /** Resolves once a task could start at once (a consumer that must claim work only when it can start it). */
    slotFree,
    async run(task: () => Promise<void>): Promise<void> {
      await slotFree();
      const promise: Promise<void> = task()
        .catch(onError)
        .finally(() => running.delete(promise));
      running.add(promise);
    },
    async drain(): Promise<void> {
      await Promise.all(running);
    },
  };
}
