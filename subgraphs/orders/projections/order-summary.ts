/**
 * The read models of an order, as pure functions of its events: the summary (one row per order,
 * what lists and `order(id)` show) and the timeline (one entry per status it went through).
 * The projector applies them to the database; the API applies them to a stream directly when
 * the projector has not caught up yet. One definition, so both always agree.
 */
import type { CancellationReason, OrderEvent, OrderStatus, PricedLine, RejectionReason, UnavailableLine } from '../domain/order.ts';

export interface OrderSummary {
  orderId: string;
  customerId: string;
  status: OrderStatus;
  reason: CancellationReason | RejectionReason | null;
  total: number;
  currency: string;
  /** Units ordered: the sum of the lines' quantities. */
  itemCount: number;
  items: PricedLine[];
  /** The lines stock could not cover, as the OrderRejected event carries them; [] unless rejected. */
  rejectedLines: UnavailableLine[];
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

/** The status each event leaves an order in. */
export const statusAfter: Record<OrderEvent['type'], OrderStatus> = {
  OrderPlaced: 'PENDING',
  OrderConfirmed: 'CONFIRMED',
  OrderRejected: 'REJECTED',
  OrderCancelled: 'CANCELLED',
  OrderShipped: 'SHIPPED',
  OrderDelivered: 'DELIVERED',
};

/** The summary after `event` (version `version`) and the timeline entry it adds. */
export function projectEvent(summary: OrderSummary | null, event: OrderEvent, version: number, orderId: string): { summary: OrderSummary; entry: TimelineEntry } {
  const status = statusAfter[event.type];
  const entry = { position: version, status, at: event.data.at };
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
        version,
        placedAt: data.at,
        updatedAt: data.at,
      },
      entry,
    };
  }
  if (!summary) throw new Error(`${event.type} of order ${orderId} before its OrderPlaced`);
  const reason = event.type === 'OrderRejected' || event.type === 'OrderCancelled' ? event.data.reason : summary.reason;
  const rejectedLines = event.type === 'OrderRejected' ? event.data.lines : summary.rejectedLines;
  return { summary: { ...summary, status, reason, rejectedLines, version, updatedAt: event.data.at }, entry };
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
