/**
 * The read models of an order, as pure functions of its events: the summary (one row per order,
 * what lists and `order(id)` show) and the timeline (one entry per status it went through).
 * The projector applies them to the database; the API applies them to a stream directly when
 * the projector has not caught up yet. One definition, so both always agree.
 */
import { cancellationAfter, type Cancellation, type CancellationReason, type OrderEvent, type OrderStatus, type PricedLine, type RefundFailureReason, type RejectionReason, type UnavailableLine } from '../domain/order.ts';

export interface OrderSummary {
  orderId: string;
  customerId: string;
  status: OrderStatus;
  reason: CancellationReason | RejectionReason | RefundFailureReason | null;
  total: number;
  currency: string;
  /** Units ordered: the sum of the lines' quantities. */
  itemCount: number;
  items: PricedLine[];
  /** The lines stock could not cover, as the OrderRejected event carries them; [] unless rejected. */
  rejectedLines: UnavailableLine[];
  /** The customer's request to cancel and its outcome; null when none was made. */
  cancellation: Cancellation | null;
  /** The stream version projected. */
  version: number;
  placedAt: string;
  updatedAt: string;
}

export interface TimelineEntry {
  /** The version of the event that set the status. */
  position: number;
  status: OrderStatus;
  at: string;
}

/**
 * The status each event leaves an order in; null for the events that change something else of
 * its view (its payment's or shipment's state, a refused cancellation) and leave the status.
 */
const statusOf: Record<OrderEvent['type'], OrderStatus | null> = {
  OrderPlaced: 'PENDING',
  OrderConfirmed: 'CONFIRMED',
  OrderRejected: 'REJECTED',
  OrderCancelled: 'CANCELLED',
  OrderShipped: 'SHIPPED',
  OrderDelivered: 'DELIVERED',
  CancellationRequested: 'CANCELLING',
  CancellationRefused: null,
  ReturnRequested: 'RETURN_REQUESTED',
  ReturnReceived: 'RETURN_RECEIVED',
  OrderRefunded: 'REFUNDED',
  RefundFailed: 'REFUND_FAILED',
  PaymentUpdated: null,
  ShipmentUpdated: null,
};

/** The status after `event`, given the status before it. */
export const statusAfter = (event: Pick<OrderEvent, 'type'>, before: OrderStatus | null): OrderStatus => statusOf[event.type] ?? before ?? 'PENDING';

/** Whether `event` moves the order to a new status (a timeline entry a person reads as a step). */
export const changesStatus = (event: Pick<OrderEvent, 'type'>): boolean => statusOf[event.type] !== null;

/**
 * The summary after `event` (version `version`) and the change it makes. Every event is a change
 * of the order's view, so each has an entry (subscriptions send one state per entry); the
 * entries of events that keep the status are left out of `Order.timeline` (timelineOf).
 */
export function projectEvent(summary: OrderSummary | null, event: OrderEvent, version: number, orderId: string): { summary: OrderSummary; entry: TimelineEntry } {
  const status = statusAfter(event, summary?.status ?? null);
  if (event.type === 'OrderPlaced') {
    const { data } = event;
    return {
      summary: {
        orderId,
        customerId: data.customerId,
        status,
        reason: null,
        total: data.total,
        currency: data.currency,
        itemCount: data.lines.reduce((sum, line) => sum + line.quantity, 0),
        items: data.lines,
        rejectedLines: [],
        cancellation: null,
        version,
        placedAt: data.at,
        updatedAt: data.at,
      },
      entry: { position: version, status, at: data.at },
    };
  }
  if (!summary) throw new Error(`${event.type} of order ${orderId} before its OrderPlaced`);
  const at = event.data.at;
  // The status's time for entries that keep the status: the timeline tells when statuses changed.
  const entry = { position: version, status, at: changesStatus(event) ? at : summary.updatedAt };
  const next: OrderSummary = { ...summary, status, version, updatedAt: changesStatus(event) ? at : summary.updatedAt };
  switch (event.type) {
    case 'OrderRejected':
      return { summary: { ...next, reason: event.data.reason, rejectedLines: event.data.lines }, entry };
    case 'OrderCancelled':
      return { summary: { ...next, reason: event.data.reason, cancellation: cancellationAfter(summary.cancellation, event) }, entry };
    case 'RefundFailed':
      return { summary: { ...next, reason: event.data.reason }, entry };
    case 'CancellationRequested':
    case 'CancellationRefused':
      return { summary: { ...next, cancellation: cancellationAfter(summary.cancellation, event) }, entry };
    default:
      return { summary: next, entry };
  }
}

/** The timeline a person reads: one entry per status the order went through (changes that kept the status left out). */
export function timelineOf(entries: readonly TimelineEntry[]): TimelineEntry[] {
  return entries.filter((entry, index) => index === 0 || entries[index - 1]!.status !== entry.status);
}

/** Summary and timeline of a whole stream, in version order; null summary for an empty one. */
export function projectStream(orderId: string, events: readonly (OrderEvent & { version: number })[]): { summary: OrderSummary | null; timeline: TimelineEntry[] } {
  let summary: OrderSummary | null = null;
  const timeline: TimelineEntry[] = [];
  for (const event of events) {
    const projected = projectEvent(summary, event, event.version, orderId);
    summary = projected.summary;
    timeline.push(projected.entry);
  }
  return { summary, timeline };
}
