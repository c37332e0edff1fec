/**
 * The read side of orders: the projections (`order_summaries`, `order_timeline`), completed from
 * the event streams where the projector has not caught up yet, so a client reads its own writes
 * (an order it just placed is there, PENDING, at once). Lists of orders come from the projection
 * only, and may lag it by a moment.
 */
import DataLoader from 'dataloader';
import { isUuid } from '../../../platform/ids.ts';
import type { Order, OrderEvent } from '../domain/order.ts';
import { projectEvent, projectStream, type OrderSummary, type TimelineEntry } from '../projections/order-summary.ts';
import type { OrdersDatabase } from './database.ts';
import type { OrderStore } from './order-store.ts';

/** An order as the API shows it. */
export interface OrderView extends Omit<OrderSummary, 'version'> {
  /**
   * Where its timeline is read: the projection, or the stream when the order itself came from
   * the stream or from a command just executed (the projection may not have it yet).
   */
  timelineSource: 'projection' | 'stream';
  /**
   * Set when the view is the order as it was at some version rather than as it is now (an event
   * of a subscription): its timeline up to then. Subscriptions must not read it through their
   * loaders, which live as long as the subscription and would answer from their cache.
   */
  timelineAsOf?: TimelineEntry[];
}

/**
 * An order's states, one per event of its stream, oldest first. `committedBefore` tells whether
 * the event's transaction had committed when the snapshot passed to `statusHistories` was taken.
 */
export interface OrderHistory {
  states: (OrderSummary & { committedBefore: boolean })[];
}

/** A customer's changes in feed order, and how far the feed was when they were read. */
export interface CustomerChanges {
  horizon: string;
  /** Each change with the order's states up to it (the last one is the change). */
  changes: { position: string; states: OrderHistory['states'] }[];
}

/** Where a page of a customer's orders starts: after this order in (placed_at desc, order_id) order. */
export interface OrderPosition {
  placedAt: string;
  orderId: string;
}

/** One page of one customer's orders, as `Customer.orders(first, after)` asks for it. */
export interface CustomerOrdersKey {
  customerId: string;
  first: number;
  after?: OrderPosition;
}

/** Map.groupBy, which Node 20 lacks. */
function groupBy<T>(items: readonly T[], keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return groups;
}

const customerOrdersKey = (key: CustomerOrdersKey) => JSON.stringify([key.customerId, key.first, key.after?.placedAt ?? null, key.after?.orderId ?? null]);

export interface OrderPage {
  orders: OrderView[];
  hasNextPage: boolean;
}

export function viewOfSummary(summary: OrderSummary, timelineSource: OrderView['timelineSource']): OrderView {
  const { version: _version, ...view } = summary;
  return { ...view, timelineSource };
}

/** The view of an order state returned by a command. */
export function viewOfOrder(order: Order): OrderView {
  return {
    orderId: order.id,
    customerId: order.customerId,
    status: order.status,
    reason: order.reason,
    total: order.total,
    currency: order.currency,
    itemCount: order.lines.reduce((sum, line) => sum + line.quantity, 0),
    items: order.lines,
    rejectedLines: order.rejectedLines,
    cancellation: order.cancellation,
    placedAt: order.placedAt,
    updatedAt: order.updatedAt,
    timelineSource: 'stream',
  };
}

type SummaryRecord = Awaited<ReturnType<OrdersDatabase['orderSummary']['findMany']>>[number];

/** A summary row as `to_jsonb` renders it (snake_case, timestamps as text). */
function summaryOfJson(json: Record<string, unknown>): OrderSummary {
  return summaryOf({
    orderId: json.order_id,
    customerId: json.customer_id,
    status: json.status,
    reason: json.reason,
    total: json.total,
    currency: json.currency,
    itemCount: json.item_count,
    items: json.items,
    rejectedLines: json.rejected_lines,
    cancellation: json.cancellation ?? null,
    version: json.version,
    placedAt: new Date(json.placed_at as string),
    updatedAt: new Date(json.updated_at as string),
  } as SummaryRecord);
}

function summaryOf(row: SummaryRecord): OrderSummary {
  return {
    orderId: row.orderId,
    customerId: row.customerId,
    status: row.status as OrderSummary['status'],
    reason: row.reason as OrderSummary['reason'],
    total: row.total,
    currency: row.currency,
    itemCount: row.itemCount,
    items: row.items as unknown as OrderSummary['items'],
    rejectedLines: row.rejectedLines as unknown as OrderSummary['rejectedLines'],
    cancellation: (row.cancellation ?? null) as unknown as OrderSummary['cancellation'],
    version: row.version,
    placedAt: row.placedAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

export class OrderReadModel {
  constructor(
    private readonly db: OrdersDatabase,
    private readonly store: OrderStore,
  ) {}

  /** Per request: summary and timeline of orders from their streams, one statement per batch. */
  createStreamLoader(): DataLoader<string, ReturnType<typeof projectStream>> {
    return new DataLoader(async (orderIds) => {
      const streams = await this.store.readStreams(orderIds);
      return orderIds.map((id) => projectStream(id, streams.get(id) ?? []));
    });
  }

  /**
   * Per request: orders by id in ONE statement for any number of them: each projected summary
   * with the events the projector has not applied to it yet (all of them for an order it has not
   * reached), applied here. So a client always reads its own writes, however far behind the
   * projector is. Malformed and unknown ids resolve to null without reaching SQL.
   */
  createOrderLoader(): DataLoader<string, OrderView | null> {
    return new DataLoader(async (ids) => {
      const wanted = [...new Set(ids.filter(isUuid).map((id) => id.toLowerCase()))];
      const rows =
        wanted.length === 0
          ? []
          : await this.db.$queryRaw<{ order_id: string; kind: 'summary' | 'event'; version: number; body: Record<string, unknown> }[]>`
              SELECT s.order_id::text AS order_id, 'summary' AS kind, s.version, to_jsonb(s) AS body
              FROM order_summaries s WHERE s.order_id = ANY(${wanted}::uuid[])
              UNION ALL
              SELECT e.order_id::text, 'event', e.version, jsonb_build_object('type', e.type, 'data', e.data)
              FROM order_events e LEFT JOIN order_summaries s ON s.order_id = e.order_id
              WHERE e.order_id = ANY(${wanted}::uuid[]) AND e.version > COALESCE(s.version, 0)
              ORDER BY 1, 3`;
      const summaries = new Map<string, OrderSummary | null>();
      const behind = new Set<string>();
      for (const row of rows) {
        if (row.kind === 'summary') {
          summaries.set(row.order_id, summaryOfJson(row.body));
        } else {
          const event = row.body as unknown as OrderEvent;
          summaries.set(row.order_id, projectEvent(summaries.get(row.order_id) ?? null, event, row.version, row.order_id).summary);
          behind.add(row.order_id);
        }
      }
      return ids.map((id) => {
        const key = isUuid(id) ? id.toLowerCase() : '';
        const summary = summaries.get(key);
        // The projected timeline lacks what the projector has not applied: read it from the stream.
        return summary ? viewOfSummary(summary, behind.has(key) ? 'stream' : 'projection') : null;
      });
    });
  }

  /** Per request: the projected timelines of orders, one statement for any number of them. */
  createTimelineLoader(): DataLoader<string, TimelineEntry[]> {
    return new DataLoader(async (orderIds) => {
      const rows = await this.db.orderTimelineEntry.findMany({ where: { orderId: { in: [...orderIds] } }, orderBy: [{ orderId: 'asc' }, { position: 'asc' }] });
      const byOrder = new Map<string, TimelineEntry[]>();
      for (const row of rows) {
        const entries = byOrder.get(row.orderId) ?? [];
        entries.push({ position: row.position, status: row.status as TimelineEntry['status'], at: row.at.toISOString() });
        byOrder.set(row.orderId, entries);
      }
      return orderIds.map((id) => byOrder.get(id) ?? []);
    });
  }

  /**
   * Every state each order went through (its summary after each event), in ONE statement for any
   * number of orders, read from the streams, so never behind the projector. With `snapshot` (a
   * `pg_current_snapshot()` as text), each state tells whether its event had committed by then.
   * Subscriptions send from these, so a client sees every status even when several follow each
   * other faster than the notifications are read.
   */
  async statusHistories(orderIds: readonly string[], snapshot?: string): Promise<Map<string, OrderHistory>> {
    const wanted = [...new Set(orderIds.filter(isUuid).map((id) => id.toLowerCase()))];
    const histories = new Map<string, OrderHistory>();
    if (wanted.length === 0) return histories;
    const rows = await this.db.$queryRaw<{ order_id: string; version: number; type: OrderEvent['type']; data: OrderEvent['data']; before: boolean }[]>`
      SELECT order_id::text AS order_id, version, type, data,
             COALESCE(pg_visible_in_snapshot(tx_id, ${snapshot ?? null}::text::pg_snapshot), false) AS before
      FROM order_events WHERE order_id = ANY(${wanted}::uuid[]) ORDER BY order_id, version`;
    let summary: OrderSummary | null = null;
    for (const row of rows) {
      let history = histories.get(row.order_id);
      if (!history) {
        history = { states: [] };
        histories.set(row.order_id, history);
        summary = null;
      }
      summary = projectEvent(summary, { type: row.type, data: row.data } as OrderEvent, row.version, row.order_id).summary;
      history.states.push({ ...summary, committedBefore: row.before });
    }
    return histories;
  }

  /**
   * Where the change feed is now: the last feed position projected, and the snapshot it was read
   * in (one statement, so every change not in the snapshot is numbered after `horizon`).
   */
  async feedHead(): Promise<{ horizon: string; snapshot: string }> {
    const [row] = await this.db.$queryRaw<{ horizon: string; snapshot: string }[]>`
      SELECT (SELECT COALESCE(max(feed_position), 0) FROM order_timeline)::text AS horizon, pg_current_snapshot()::text AS snapshot`;
    return row!;
  }

  /**
   * One customer's changes after feed position `after`, in feed order, at most `limit` of them,
   * each as the order was then (its states up to that change, from its stream), in ONE statement
   * for any number of orders: the projection says which changes and in what order, the streams
   * what each state was. `horizon` is the last feed position projected when it was read: when
   * fewer than `limit` changes came back, every later change of the customer is numbered after
   * it. With `snapshot`, each change tells whether its event had committed by then.
   */
  async customerChangesAfter(customerId: string, after: string, limit: number, snapshot?: string): Promise<CustomerChanges> {
    const rows = await this.db.$queryRaw<{ order_id: string | null; version: number; type: OrderEvent['type']; data: OrderEvent['data']; feed_position: string | null; before: boolean; horizon: string | null }[]>`
      WITH changed AS (
        SELECT t.order_id, t.position, t.feed_position
        FROM order_timeline t JOIN order_summaries s ON s.order_id = t.order_id
        WHERE s.customer_id = ${customerId}::uuid AND t.feed_position > ${after}::bigint
        ORDER BY t.feed_position
        LIMIT ${limit}
      ), upto AS (SELECT order_id, max(position) AS version FROM changed GROUP BY order_id)
      SELECT NULL::text AS order_id, 0 AS version, NULL AS type, NULL::jsonb AS data, NULL::text AS feed_position, false AS before,
             (SELECT COALESCE(max(feed_position), 0) FROM order_timeline)::text AS horizon
      UNION ALL
      SELECT e.order_id::text, e.version, e.type, e.data, c.feed_position::text,
             COALESCE(pg_visible_in_snapshot(e.tx_id, ${snapshot ?? null}::text::pg_snapshot), false), NULL
      FROM upto u JOIN order_events e ON e.order_id = u.order_id AND e.version <= u.version
      LEFT JOIN changed c ON c.order_id = e.order_id AND c.position = e.version
      ORDER BY 1 NULLS FIRST, 2`;
    let horizon = '0';
    const changes: CustomerChanges['changes'] = [];
    let states: OrderHistory['states'] = [];
    let summary: OrderSummary | null = null;
    for (const row of rows) {
      if (row.order_id === null) {
        horizon = row.horizon ?? '0';
        continue;
      }
      if (states[0]?.orderId !== row.order_id) {
        states = [];
        summary = null;
      }
      summary = projectEvent(summary, { type: row.type, data: row.data } as OrderEvent, row.version, row.order_id).summary;
      states.push({ ...summary, committedBefore: row.before });
      if (row.feed_position !== null) changes.push({ position: row.feed_position, states: [...states] });
    }
    changes.sort((a, b) => (BigInt(a.position) < BigInt(b.position) ? -1 : 1));
    return { horizon, changes };
  }

  /** A customer's orders, newest first: a keyset page after `after`. */
  /**
   * Per request: pages of customers' orders, one statement for every customer of a batch (the
   * Customer entities of one `_entities` fetch ask for the same page, so one key of `first` and
   * `after` usually covers the batch; each distinct one costs one more statement).
   */
  createCustomerOrdersLoader(): DataLoader<CustomerOrdersKey, OrderPage, string> {
    return new DataLoader(
      async (keys) => {
        const pages = new Map<string, OrderPage>();
        const byPage = groupBy(keys, (key) => JSON.stringify([key.first, key.after ?? null]));
        for (const group of byPage.values()) {
          const { first, after } = group[0]!;
          const found = await this.customersOrders([...new Set(group.map((key) => key.customerId))], first, after);
          for (const key of group) pages.set(customerOrdersKey(key), found.get(key.customerId) ?? { orders: [], hasNextPage: false });
        }
        return keys.map((key) => pages.get(customerOrdersKey(key))!);
      },
      { cacheKeyFn: customerOrdersKey },
    );
  }

  /** Each customer's orders newest first, `first` of them after `after`, in ONE statement. */
  private async customersOrders(customerIds: string[], first: number, after?: OrderPosition): Promise<Map<string, OrderPage>> {
    const afterAt = after ? new Date(after.placedAt) : null;
    const afterId = after?.orderId ?? null;
    // One row more than asked per customer tells whether another page follows (also for `first: 0`).
    const rows = await this.db.$queryRaw<{ customer_id: string; body: Record<string, unknown> }[]>`
      SELECT ranked.customer_id::text AS customer_id, ranked.body FROM (
        SELECT s.customer_id, to_jsonb(s) AS body,
               row_number() OVER (PARTITION BY s.customer_id ORDER BY s.placed_at DESC, s.order_id ASC) AS n
        FROM order_summaries s
        WHERE s.customer_id = ANY(${customerIds}::uuid[])
          AND (${afterAt}::timestamptz IS NULL
               OR s.placed_at < ${afterAt}::timestamptz
               OR (s.placed_at = ${afterAt}::timestamptz AND s.order_id > ${afterId}::uuid))
      ) ranked
      WHERE ranked.n <= ${first + 1}
      ORDER BY ranked.customer_id, ranked.n`;
    const pages = new Map<string, OrderPage>();
    for (const [customerId, own] of groupBy(rows, (row) => row.customer_id)) {
      pages.set(customerId, {
        orders: own.slice(0, first).map((row) => viewOfSummary(summaryOfJson(row.body), 'projection')),
        hasNextPage: own.length > first,
      });
    }
    return pages;
  }

}
