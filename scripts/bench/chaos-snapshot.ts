/**
 * Reads the facts the invariant check needs (chaos-invariants.ts) from each context's own
 * database, read-only, after the run: the orders' streams and read models, inventory's
 * reservations and counters, payments, shipments. Also decides when the platform has quiesced:
 * no order PENDING, every outbox published, and two readings in a row alike.
 */
import pg from 'pg';
import type { ContextName } from '../../platform/contexts.ts';
import type { OrderFacts, PlatformFacts, StoredOrderEvent } from './chaos-invariants.ts';
import { sleep } from './support.ts';

async function query<R extends pg.QueryResultRow>(databaseUrl: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

export async function readFacts(databaseUrl: (context: ContextName) => string, acknowledged: readonly string[]): Promise<PlatformFacts> {
  const orders = new Map<string, OrderFacts>();
  const of = (orderId: string) => {
    let facts = orders.get(orderId);
    if (!facts) orders.set(orderId, (facts = { orderId, events: [], timeline: [], reservations: [] }));
    return facts;
  };
  const ordersDb = databaseUrl('orders');
  for (const row of await query<{ order_id: string; version: number; type: StoredOrderEvent['type']; data: StoredOrderEvent['data']; occurred_at: Date }>(
    ordersDb,
    'SELECT order_id::text, version, type, data, occurred_at FROM order_events ORDER BY order_id, version',
  )) {
    of(row.order_id).events.push({ version: row.version, type: row.type, data: row.data, occurredAt: row.occurred_at.getTime() });
  }
  for (const row of await query<{ order_id: string; status: string; reason: string | null; total: number; item_count: number; version: number }>(
    ordersDb,
    'SELECT order_id::text, status, reason, total, item_count, version FROM order_summaries',
  )) {
    of(row.order_id).summary = { status: row.status, reason: row.reason, total: row.total, itemCount: row.item_count, version: row.version };
  }
  for (const row of await query<{ order_id: string; status: string }>(ordersDb, 'SELECT order_id::text, status FROM order_timeline ORDER BY order_id, position')) {
    of(row.order_id).timeline.push(row.status);
  }

  const allReservations: PlatformFacts['allReservations'] = [];
  for (const row of await query<{ order_id: string; product_id: string; quantity: number; status: string }>(
    databaseUrl('inventory'),
    'SELECT order_id::text, product_id::text, quantity, status FROM stock_reservations',
  )) {
    const line = { productId: row.product_id, quantity: row.quantity, status: row.status };
    allReservations.push(line);
    orders.get(row.order_id)?.reservations.push(line);
  }
  const reservedByProduct = new Map<string, number>();
  for (const row of await query<{ product_id: string; reserved: number }>(databaseUrl('inventory'), 'SELECT product_id::text, reserved FROM stock_items')) {
    reservedByProduct.set(row.product_id, row.reserved);
  }

  for (const row of await query<{ order_id: string; status: string; amount: number }>(databaseUrl('payments'), 'SELECT order_id::text, status::text, amount FROM payments')) {
    const facts = orders.get(row.order_id);
    if (facts) facts.payment = { status: row.status, amount: row.amount };
  }
  for (const row of await query<{ order_id: string; status: string; lines: { productId: string; quantity: number }[] }>(
    databaseUrl('shipping'),
    `SELECT s.order_id::text, s.status::text,
            coalesce(json_agg(json_build_object('productId', l.product_id, 'quantity', l.quantity)) FILTER (WHERE l.product_id IS NOT NULL), '[]') AS lines
     FROM shipments s LEFT JOIN shipment_lines l ON l.shipment_id = s.id GROUP BY s.id`,
  )) {
    const facts = orders.get(row.order_id);
    if (facts) facts.shipment = { status: row.status, lines: row.lines };
  }
  return { orders: [...orders.values()], reservedByProduct, allReservations, acknowledged };
}

/** Orders still PENDING and outbox rows not yet published, over all contexts: what is still moving. */
async function inFlight(databaseUrl: (context: ContextName) => string, contexts: readonly ContextName[]): Promise<{ pending: number; unpublished: number; fingerprint: string }> {
  const [{ pending, fingerprint }] = (await query<{ pending: number; fingerprint: string }>(
    databaseUrl('orders'),
    `SELECT (SELECT count(*)::int FROM order_summaries WHERE status = 'PENDING') AS pending,
            (SELECT count(*) || '/' || coalesce(max(global_position), 0) FROM order_events) AS fingerprint`,
  )) as [{ pending: number; fingerprint: string }];
  let unpublished = 0;
  const positions: string[] = [fingerprint!];
  for (const context of contexts) {
    const [row] = await query<{ unpublished: number; outbox: string }>(
      databaseUrl(context),
      `SELECT count(*) FILTER (WHERE published_at IS NULL)::int AS unpublished, count(*)::text || '/' || coalesce(max(id), 0) AS outbox FROM outbox_events`,
    );
    unpublished += row!.unpublished;
    positions.push(row!.outbox);
  }
  return { pending: pending!, unpublished, fingerprint: positions.join(' ') };
}

/**
 * Waits until nothing moves: no order PENDING (in the read model), every outbox published, and
 * the streams and outboxes unchanged over `settleMs`. Bounded by `timeoutMs`; says how it ended.
 */
export async function quiesce(
  databaseUrl: (context: ContextName) => string,
  contexts: readonly ContextName[],
  options: { timeoutMs: number; settleMs?: number },
): Promise<{ quiet: boolean; ms: number; pending: number; unpublished: number }> {
  const started = Date.now();
  let previous = '';
  let last = { pending: -1, unpublished: -1 };
  while (Date.now() - started < options.timeoutMs) {
    const now = await inFlight(databaseUrl, contexts).catch(() => undefined);
    if (now) {
      last = now;
      if (now.pending === 0 && now.unpublished === 0 && now.fingerprint === previous) return { quiet: true, ms: Date.now() - started, ...last };
      previous = now.fingerprint;
    }
    await sleep(options.settleMs ?? 3_000);
  }
  return { quiet: false, ms: Date.now() - started, ...last };
}
