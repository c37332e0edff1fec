/**
 * The Order events other contexts may hear of: published through the outbox as they are stored
 * in the order's stream (payload = the event's data), versioned per order. An event type added
 * to the aggregate later stays private until it is listed here.
 */
import { createEnvelope, type Causation, type EventEnvelope } from '../../../platform/events/envelope.ts';
import type { OrderEvent } from './order.ts';

export const orderAggregate = 'Order';

export const publicOrderEventTypes: ReadonlySet<OrderEvent['type']> = new Set([
  'OrderPlaced',
  'OrderConfirmed',
  'OrderRejected',
  'OrderCancelled',
  'OrderShipped',
  'OrderDelivered',
]);

/** The payload of each public Order event, by type. */
export type OrderEventPayload<T extends OrderEvent['type']> = Extract<OrderEvent, { type: T }>['data'];

/**
 * The envelope of a stored order event. It keeps the event's own id, so the copy on the bus and
 * the row in `order_events` are recognisably the same event.
 */
export function orderEnvelope(
  stored: { eventId: string; orderId: string; version: number; event: OrderEvent },
  causation: Causation,
): EventEnvelope<OrderEvent['data']> {
  const envelope = createEnvelope(
    'orders',
    { type: stored.event.type, aggregateType: orderAggregate, aggregateId: stored.orderId, aggregateVersion: stored.version, payload: stored.event.data },
    causation,
  );
  return { ...envelope, eventId: stored.eventId };
}
