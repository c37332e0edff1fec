/**
 * Property-style: random scripts of customer and admin actions on many orders at once (place,
 * cancel, dispatch, move in transit, deliver, ask to return, receive the return; payments that
 * are declined, and refunds the provider declines), run concurrently through the gateway, then
 * the platform's invariants checked once it is quiet: stock conserved, no money kept for an order
 * that was not delivered, no refund without a capture, every read model equal to a rebuild from
 * its stream, and every subscriber's last event equal to what a query answers.
 *
 * The scripts come from a seeded PRNG: the seed is printed in a `[measure]` line and read from
 * ORDER_PROPERTIES_SEED when set, so a failure can be replayed (the same scripts; the timing of
 * a concurrent run is never quite the same, which is the point of running it often).
 * ORDER_PROPERTIES_VERBOSE=1 prints every order's script and what each action was answered.
 */
import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { ContextName } from '../platform/contexts.ts';
import { contextNames } from '../platform/contexts.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import type { OrderEvent } from '../subgraphs/orders/domain/order.ts';
import { projectStream } from '../subgraphs/orders/projections/order-summary.ts';
import { summaryOf, type SummaryRow } from '../subgraphs/orders/projections/projector.ts';
import { graphqlRetryingOverload, type GraphQLResponse } from './support/graphql.ts';
import { inStockProducts, testAddress } from './support/orders.ts';
import { startStack, type Stack, type TestBusKind } from './support/stack.ts';
import { recordSubscription, type Received } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

const seed = process.env.ORDER_PROPERTIES_SEED ? Number(process.env.ORDER_PROPERTIES_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 32);
const orderCount = 30;
const customerCount = 4;
/** Few products with little stock: later orders meet sold-out products and are REJECTED. */
const products = inStockProducts.slice(0, 5);
/** The selection a subscriber's event and a fresh query are compared on. */
const view = 'id status reason payment { status } shipment { status } cancellation { outcome }';

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
function prng(state: number) {
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

type Action = 'cancel' | 'cancelAsStranger' | 'dispatch' | 'inTransit' | 'deliver' | 'requestReturn' | 'receiveReturn';
/**
 * Before an action: wait until the order settled after the previous one, or only for a while
 * (often mid-saga), or not at all: sent together with the previous action, as two people would.
 */
type Pace = { settle: true } | { sleepMs: number } | { together: true };

interface Script {
  customer: number;
  paymentToken: 'tok_visa' | 'tok_declined' | 'tok_refund_fails';
  lines: { productId: string; quantity: number }[];
  startAfterMs: number;
  steps: { action: Action; pace: Pace }[];
}

/** The error codes each action may be refused with: a client error, never INTERNAL_SERVER_ERROR. */
const refusals: Record<Action, readonly string[]> = {
  cancel: ['CONFLICT', 'CANCELLATION_REFUSED'],
  cancelAsStranger: ['NOT_FOUND'],
  dispatch: ['CONFLICT', 'NOT_FOUND'],
  inTransit: ['CONFLICT', 'NOT_FOUND'],
  deliver: ['CONFLICT', 'NOT_FOUND'],
  requestReturn: ['CONFLICT'],
  receiveReturn: ['CONFLICT'],
};

/** The way an order goes when all is well; a script follows a prefix of it, with detours. */
const happyPath: Action[] = ['dispatch', 'inTransit', 'deliver', 'requestReturn', 'receiveReturn'];

const paceOf = (roll: number, settle: number, together: number, sleepMs: number): Pace =>
  roll < together ? { together: true } : roll < together + settle ? { settle: true } : { sleepMs };

function generateScripts(random: () => number): Script[] {
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
  return Array.from({ length: orderCount }, () => {
    const roll = random();
    const paymentToken = roll < 0.6 ? 'tok_visa' : roll < 0.75 ? 'tok_declined' : 'tok_refund_fails';
    const first = pick(products);
    const second = pick(products);
    const lines = [{ productId: first.id, quantity: 1 + Math.floor(random() * 2) }];
    if (random() < 0.4 && second.id !== first.id) lines.push({ productId: second.id, quantity: 1 + Math.floor(random() * 2) });
    // Weighted towards going far: returns are what the newest rules are about.
    const depth = pick([0, 1, 2, 3, 3, 4, 5, 5, 5, 5]);
    const actions = happyPath.slice(0, depth);
    const insert = (action: Action) => actions.splice(Math.floor(random() * (actions.length + 1)), 0, action);
    if (random() < 0.35) insert('cancel');
    if (random() < 0.25) insert(pick<Action>(['cancel', 'cancelAsStranger', 'dispatch', 'deliver', 'requestReturn', 'receiveReturn']));
    if (actions.length >= 2 && random() < 0.15) {
      const at = Math.floor(random() * (actions.length - 1));
      [actions[at], actions[at + 1]] = [actions[at + 1]!, actions[at]!];
    }
    return {
      customer: Math.floor(random() * customerCount),
      paymentToken,
      lines,
      startAfterMs: Math.floor(random() * 1_500),
      // Mostly waiting for CONFIRMED before the first action (the newest rules start there), sometimes not.
      steps: actions.map((action, i) => ({ action, pace: paceOf(random(), i === 0 ? 0.8 : 0.55, i === 0 ? 0 : 0.15, Math.floor(random() * 300)) })),
    };
  });
}

interface OrderView {
  id: string;
  status: string;
  reason: string | null;
  payment: { status: string } | null;
  shipment: { status: string } | null;
  cancellation: { outcome: string } | null;
}

interface Run {
  script: Script;
  orderId?: string;
  /** What each action was answered: a status, or an error code. */
  log: string[];
}

/** Statuses an order only passes through while a saga step runs. */
const transient = new Set(['PENDING', 'CANCELLING', 'RETURN_RECEIVED']);

/** JSON with keys sorted and instants in one form: a JSONB column gives keys back in its own order. */
function normal(value: unknown): string {
  const sorted = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sorted);
    if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((key) => [key, sorted((v as Record<string, unknown>)[key])]));
    return typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v) ? new Date(v).toISOString() : v;
  };
  return JSON.stringify(sorted(value));
}

describe.each<TestBusKind>(['postgres', 'nats'])('random order lifecycles on the %s bus', (bus) => {
  let stack: Stack;
  const pools = new Map<ContextName, pg.Pool>();
  const clients: Client[] = [];
  const customerIds = Array.from({ length: customerCount }, (_, i) => deterministicUuid('customer', `properties-${i}@example.com`));
  let customerTokens: string[];
  let strangerToken: string;
  let adminToken: string;
  /** Units each product had before the first order: what conservation is measured against. */
  const initialStock = new Map<string, number>();

  const sql = async <R extends pg.QueryResultRow>(context: ContextName, text: string, values: unknown[] = []) => (await pools.get(context)!.query<R>(text, values)).rows;

  beforeAll(async () => {
    stack = await startStack({ eventBus: bus, sagaStepTimeoutMs: 60_000 });
    await seedDemoData(stack.databaseUrls);
    for (const context of contextNames) pools.set(context, new pg.Pool({ connectionString: stack.databaseUrls[context], max: 1, idleTimeoutMillis: 0 }));
    customerTokens = await Promise.all(customerIds.map((customerId) => stack.tokenFor({ customerId })));
    strangerToken = await stack.tokenFor({ customerId: randomUUID() });
    adminToken = await stack.tokenFor({ customerId: deterministicUuid('customer', 'properties-admin@example.com'), roles: ['customer', 'admin'] });
    const random = prng(seed ^ 0x5eed);
    // Set straight in inventory's table, as an operator's stock count would: conservation is measured from these.
    for (const product of products) {
      const units = 10 + Math.floor(random() * 7);
      await sql('inventory', 'UPDATE stock_items SET available = $2, reserved = 0 WHERE product_id = $1', [product.id, units]);
      initialStock.set(product.id, units);
    }
  }, 120_000);

  afterAll(async () => {
    await Promise.all(clients.map((client) => client.dispose()));
    for (const pool of pools.values()) await pool.end();
    await stack?.stop();
  });

  const send = (query: string, variables: Record<string, unknown>, token: string) => graphqlRetryingOverload(stack.gatewayUrl, { query, variables, token });

  async function readOrders(ids: string[], token: string): Promise<Map<string, OrderView>> {
    const views = new Map<string, OrderView>();
    // 20 per request: the gateway's default alias limit.
    for (let from = 0; from < ids.length; from += 20) {
      const chunk = ids.slice(from, from + 20);
      const response = await send(`{ ${chunk.map((id, i) => `o${i}: order(id: "${id}") { ${view} }`).join(' ')} }`, {}, token);
      if (response.errors) throw new Error(`reading orders failed: ${JSON.stringify(response.errors)}`);
      chunk.forEach((id, i) => views.set(id, response.data![`o${i}`] as OrderView));
    }
    return views;
  }

  const readOrder = async (id: string, token: string) => (await readOrders([id], token)).get(id)!;

  /** Whether the saga has caught up with the script's last successful action (not a check: pacing only). */
  function settled(order: OrderView, last: Action | undefined): boolean {
    if (transient.has(order.status)) return false;
    if (last === 'dispatch') return order.status !== 'CONFIRMED';
    if (last === 'deliver') return order.status !== 'SHIPPED';
    return true;
  }

  async function act(action: Action, orderId: string, token: string): Promise<GraphQLResponse> {
    const id = { id: orderId };
    switch (action) {
      case 'cancel':
        return send('mutation ($id: ID!) { cancelOrder(id: $id) { status } }', id, token);
      case 'cancelAsStranger':
        return send('mutation ($id: ID!) { cancelOrder(id: $id) { status } }', id, strangerToken);
      case 'dispatch':
      case 'inTransit':
      case 'deliver': {
        const to = { dispatch: 'DISPATCHED', inTransit: 'IN_TRANSIT', deliver: 'DELIVERED' }[action];
        return send(`mutation ($id: ID!) { advanceShipment(orderId: $id, to: ${to}) { status } }`, id, adminToken);
      }
      case 'requestReturn':
        return send('mutation ($id: ID!) { requestReturn(id: $id) { status } }', id, token);
      case 'receiveReturn':
        return send('mutation ($id: ID!) { receiveReturn(id: $id) { status } }', id, adminToken);
    }
  }

  /** Places the order and plays its script; answers outside the script's contract go to `violations`. */
  async function play(run: Run, violations: string[], timeouts: string[]): Promise<void> {
    const { script } = run;
    const token = customerTokens[script.customer]!;
    await new Promise((resolve) => setTimeout(resolve, script.startAfterMs));
    const input = { lines: script.lines, shippingAddress: testAddress, paymentToken: script.paymentToken, idempotencyKey: randomUUID() };
    let placed = await send('mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }', { input }, token);
    // A client that heard nothing in time sends the same request again, with the same key: the order is placed once.
    for (let attempt = 1; attempt < 4 && placed.errors?.[0]?.extensions?.code === 'SUBGRAPH_TIMEOUT'; attempt++) {
      run.log.push('placeOrder → SUBGRAPH_TIMEOUT, sent again');
      placed = await send('mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }', { input }, token);
    }
    if (placed.errors) {
      violations.push(`placeOrder answered ${JSON.stringify(placed.errors)}`);
      return;
    }
    const orderId = (run.orderId = placed.data!.placeOrder.id as string);
    let lastDone: Action | undefined;
    const groups: Script['steps'][] = [];
    for (const step of script.steps) {
      if ('together' in step.pace && groups.length > 0) groups.at(-1)!.push(step);
      else groups.push([step]);
    }
    for (const group of groups) {
      const { pace } = group[0]!;
      if ('settle' in pace) {
        // Bounded: an order that never settles is reported by the quiet check, not here. Generous:
        // 30 sagas at once on a loaded 2-core machine take tens of seconds to confirm them all.
        // Polled every quarter second: thirty scripts polling faster would slow the sagas they wait for.
        const probe = async () => {
          if (settled(await readOrder(orderId, token), lastDone)) return true;
          await new Promise((resolve) => setTimeout(resolve, 250));
          return undefined;
        };
        await waitFor('the order settled', probe, 60_000).catch(() => run.log.push('(did not settle)'));
      } else if ('sleepMs' in pace) {
        await new Promise((resolve) => setTimeout(resolve, pace.sleepMs));
      }
      const answers = await Promise.all(group.map(async ({ action }) => ({ action, response: await act(action, orderId, token) })));
      const mark = group.length > 1 ? '‖ ' : '';
      for (const { action, response } of answers) {
        const error = response.errors?.[0];
        if (!error) {
          const answered = Object.values(response.data ?? {})[0] as { status: string };
          run.log.push(`${mark}${action} → ${answered.status}`);
          lastDone = action;
          if (action === 'cancel' && !['CANCELLED', 'CANCELLING'].includes(answered.status)) violations.push(`order ${orderId}: cancelOrder answered status ${answered.status}`);
          continue;
        }
        const code = String(error.extensions?.code);
        run.log.push(`${mark}${action} → ${code}${error.extensions?.reason ? ` (${error.extensions.reason})` : ''}`);
        // The gateway gave up waiting (a loaded machine): the action's outcome is unknown, and the invariants hold either way.
        if (code === 'SUBGRAPH_TIMEOUT') timeouts.push(`${orderId} ${action}`);
        else if (!refusals[action].includes(code)) violations.push(`order ${orderId}: ${action} answered ${code}: ${error.message}`);
        if (code === 'CANCELLATION_REFUSED' && error.extensions?.reason !== 'ALREADY_DISPATCHED') violations.push(`order ${orderId}: CANCELLATION_REFUSED without reason ALREADY_DISPATCHED`);
      }
    }
  }

  /**
   * What must stay the same over two polls for the platform to be quiet: per context, the outbox
   * (rows and highest id), the inbox and the consumer positions; in orders, the streams, the
   * sagas' versions and the read models' versions.
   */
  async function fingerprint(): Promise<{ unpublished: number; busy: number; unprojected: number; print: string }> {
    let unpublished = 0;
    const parts: string[] = [];
    for (const context of contextNames) {
      const [row] = await sql<{ unpublished: number; print: string }>(
        context,
        `SELECT (SELECT count(*) FILTER (WHERE published_at IS NULL) FROM outbox_events)::int AS unpublished,
                concat_ws('/', (SELECT count(*) || ':' || coalesce(max(id), 0) FROM outbox_events), (SELECT count(*) FROM inbox_events),
                          (SELECT coalesce(sum(last_applied_version), 0) FROM consumer_positions)) AS print`,
      );
      unpublished += row!.unpublished;
      parts.push(`${context}=${row!.print}`);
    }
    const [orders] = await sql<{ busy: number; unprojected: number; print: string }>(
      'orders',
      `SELECT (SELECT count(*) FROM order_sagas WHERE step IN ('RESERVING_STOCK', 'AUTHORIZING_PAYMENT', 'CREATING_SHIPMENT', 'CANCELLING', 'RETURNING'))::int
              + (SELECT count(*) FROM order_summaries WHERE status IN ('PENDING', 'CANCELLING', 'RETURN_RECEIVED'))::int AS busy,
              ((SELECT count(*) FROM order_events) - (SELECT coalesce(sum(version), 0) FROM order_summaries)
               + (SELECT count(*) FROM order_events) - (SELECT count(*) FROM order_timeline))::int AS unprojected,
              concat_ws('/', (SELECT count(*) || ':' || coalesce(max(global_position), 0) FROM order_events), (SELECT coalesce(sum(version), 0) FROM order_sagas)) AS print`,
    );
    parts.push(`streams=${orders!.print}`);
    return { unpublished, busy: orders!.busy, unprojected: orders!.unprojected, print: parts.join(' ') };
  }

  it('keeps stock, payments, read models and subscribers consistent whatever customers and admins do, in whatever order', async () => {
    const scripts = generateScripts(prng(seed));
    const runs: Run[] = scripts.map((script) => ({ script, log: [] }));
    const violations: string[] = [];
    const timeouts: string[] = [];
    const describeRun = (run: Run) => `order ${run.orderId ?? '(not placed)'} of customer ${run.script.customer}, ${run.script.paymentToken}, lines ${JSON.stringify(run.script.lines)}, after ${run.script.startAfterMs} ms; script: ${run.script.steps.map(({ action, pace }) => `${'settle' in pace ? 'settled, ' : 'together' in pace ? 'at once, ' : `${pace.sleepMs} ms, `}${action}`).join('; ') || '(no actions)'}; answered: ${run.log.join('; ') || '(nothing)'}`;

    console.log(`[measure] order lifecycle properties (${bus} bus): seed ${seed} (replay with ORDER_PROPERTIES_SEED=${seed})`);
    try {
      // Subscribed before the first order: each customer hears every change of each of their orders.
      const subscribers = customerTokens.map((token) => {
        const client = createClient({ url: stack.gatewayUrl.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, lazy: false, connectionParams: { Authorization: `Bearer ${token}` } });
        clients.push(client);
        return recordSubscription(client, `subscription { myOrderUpdates { ${view} } }`);
      });
      await waitFor('every subscription upstream', () => (stack.gateway.subscriptionStats().upstreamSubscriptions >= customerCount ? true : undefined));

      const started = Date.now();
      await Promise.all(runs.map((run) => play(run, violations, timeouts)));
      const played = Date.now() - started;

      /*
       * Quiet: no saga waits for a reply and no order is in a passing status; no outbox row is
       * unpublished; the bus has no event a consumer has not acknowledged; the read models have
       * applied every event; and none of that moved between two polls. Sound because a consumer
       * acknowledges an event only after the transaction with its effects (inbox row, outbox rows)
       * committed, the bus lag is read before the databases, and the relay marks a row published
       * only once the bus holds it: anything still moving shows as lag, as an unpublished row, or
       * as a changed count in the second poll. Deadlines (60 s) are beyond the run, so no sweeper
       * acts on its own.
       */
      let previous = '';
      let last = {};
      const quietSince = Date.now();
      await waitFor('the platform quiet', async () => {
        // A failed poll (e.g. a busy server refusing a connection) is a poll that saw nothing quiet.
        const lag = await stack.eventBus!.status().then((consumers) => consumers.reduce((sum, consumer) => sum + consumer.lag, 0), () => -1);
        const now = await fingerprint().catch(() => ({ unpublished: -1, busy: -1, unprojected: -1, print: '' }));
        const quiet = lag === 0 && now.unpublished === 0 && now.busy === 0 && now.unprojected === 0 && now.print === previous;
        previous = now.print;
        last = { lag, ...now };
        if (!quiet) await new Promise((resolve) => setTimeout(resolve, 300));
        return quiet ? true : undefined;
      }, 90_000).catch(() => {
        throw new Error(`the platform did not become quiet: ${JSON.stringify(last)}`);
      });
      const quietAfter = Date.now() - quietSince;
      expect((await stack.eventBus!.status()).filter((consumer) => consumer.deadLetters > 0)).toEqual([]);

      const byOrder = new Map(runs.filter((run) => run.orderId).map((run) => [run.orderId!, run]));
      const orderIds = [...byOrder.keys()];
      const problem = (orderId: string | null, what: string) => violations.push(orderId ? `order ${orderId}: ${what}` : what);

      // Stock: what each product had is on the shelf (available + reserved) or left with a parcel (COMMITTED, WRITTEN_OFF).
      const stock = await sql<{ product_id: string; available: number; reserved: number; held: number; gone: number; returned: number }>(
        'inventory',
        `SELECT s.product_id::text, s.available, s.reserved,
                coalesce(sum(r.quantity) FILTER (WHERE r.status IN ('RESERVED', 'RETURNED')), 0)::int AS held,
                coalesce(sum(r.quantity) FILTER (WHERE r.status IN ('COMMITTED', 'WRITTEN_OFF')), 0)::int AS gone,
                coalesce(sum(r.quantity) FILTER (WHERE r.status = 'RETURNED'), 0)::int AS returned
         FROM stock_items s LEFT JOIN stock_reservations r ON r.product_id = s.product_id
         WHERE s.product_id = ANY($1::uuid[]) GROUP BY s.product_id`,
        [products.map((p) => p.id)],
      );
      for (const row of stock) {
        const initial = initialStock.get(row.product_id)!;
        if (row.available + row.reserved + row.gone !== initial) problem(null, `product ${row.product_id}: ${initial} units at the start, now available ${row.available} + reserved ${row.reserved} + committed or written off ${row.gone}`);
        if (row.reserved !== row.held) problem(null, `product ${row.product_id}: reserved counter ${row.reserved}, its RESERVED and RETURNED lines hold ${row.held}`);
        if (row.returned !== 0) problem(null, `product ${row.product_id}: ${row.returned} returned units never settled`);
      }

      const summaries = new Map(
        (await sql<{ order_id: string; status: string }>('orders', 'SELECT order_id::text, status FROM order_summaries WHERE order_id = ANY($1::uuid[])', [orderIds])).map((row) => [row.order_id, row.status]),
      );
      const linesOf = new Map<string, string[]>();
      for (const row of await sql<{ order_id: string; status: string }>('inventory', 'SELECT order_id::text, status FROM stock_reservations WHERE order_id = ANY($1::uuid[])', [orderIds])) {
        linesOf.set(row.order_id, [...(linesOf.get(row.order_id) ?? []), row.status]);
      }
      const payments = new Map(
        (await sql<{ order_id: string; status: string; captured: boolean }>('payments', 'SELECT order_id::text, status::text, captured_at IS NOT NULL AS captured FROM payments WHERE order_id = ANY($1::uuid[])', [orderIds])).map((row) => [row.order_id, row]),
      );
      /** The reservation lines' status an order in each status must have left (none at all is fine for a rejected or early-cancelled one). */
      const linesFor: Record<string, readonly string[]> = {
        REJECTED: ['RELEASED'],
        CANCELLED: ['RELEASED'],
        CONFIRMED: ['RESERVED'],
        SHIPPED: ['COMMITTED'],
        DELIVERED: ['COMMITTED'],
        RETURN_REQUESTED: ['COMMITTED'],
        REFUNDED: ['RESTOCKED'],
        REFUND_FAILED: ['WRITTEN_OFF'],
      };
      const paymentsFor: Record<string, readonly (string | null)[]> = {
        REJECTED: [null],
        CANCELLED: [null, 'DECLINED', 'VOIDED'],
        CONFIRMED: ['AUTHORIZED'],
        SHIPPED: ['CAPTURED'],
        DELIVERED: ['CAPTURED'],
        RETURN_REQUESTED: ['CAPTURED'],
        REFUNDED: ['REFUNDED'],
        REFUND_FAILED: ['REFUND_FAILED'],
      };
      for (const [orderId, run] of byOrder) {
        const status = summaries.get(orderId) ?? 'MISSING';
        const lines = linesOf.get(orderId) ?? [];
        const payment = payments.get(orderId);
        if (!linesFor[status]) problem(orderId, `ended ${status}`);
        else if (lines.some((line) => !linesFor[status]!.includes(line)) || (lines.length === 0 && !['REJECTED', 'CANCELLED'].includes(status))) problem(orderId, `${status} with reservation lines ${JSON.stringify(lines)}`);
        if (paymentsFor[status] && !paymentsFor[status]!.includes(payment?.status ?? null)) problem(orderId, `${status} with payment ${payment?.status ?? 'none'}`);
        if (payment?.status === 'REFUNDED' && !payment.captured) problem(orderId, 'payment REFUNDED without a capture');
        if (payment?.status === 'REFUNDED' && status !== 'REFUNDED') problem(orderId, `payment REFUNDED for an order ${status}`);
        if (payment?.captured && ['CANCELLED', 'REJECTED'].includes(status)) problem(orderId, `payment captured for an order ${status}`);
        if (status === 'REFUNDED' && run.script.paymentToken === 'tok_refund_fails') problem(orderId, 'refunded with tok_refund_fails');
        if (status === 'REFUND_FAILED' && run.script.paymentToken !== 'tok_refund_fails') problem(orderId, `refund failed with ${run.script.paymentToken}`);
        if (run.script.paymentToken === 'tok_declined' && !['REJECTED', 'CANCELLED'].includes(status)) problem(orderId, `${status} with a declined card`);
      }

      // Read models: each order's summary and timeline rows equal a rebuild from its stream.
      const streams = new Map<string, (OrderEvent & { version: number })[]>();
      for (const row of await sql<{ order_id: string; version: number; type: OrderEvent['type']; data: OrderEvent['data'] }>(
        'orders',
        'SELECT order_id::text, version, type, data FROM order_events WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, version',
        [orderIds],
      )) {
        streams.set(row.order_id, [...(streams.get(row.order_id) ?? []), { type: row.type, data: row.data, version: row.version } as OrderEvent & { version: number }]);
      }
      const summaryRows = await sql<Record<string, any>>('orders', 'SELECT * FROM order_summaries WHERE order_id = ANY($1::uuid[])', [orderIds]);
      const timelineRows = await sql<{ order_id: string; position: number; status: string; at: Date }>(
        'orders',
        'SELECT order_id::text, position, status, at FROM order_timeline WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, position',
        [orderIds],
      );
      for (const orderId of orderIds) {
        const rebuilt = projectStream(orderId, streams.get(orderId) ?? []);
        const row = summaryRows.find((r) => r.order_id === orderId);
        const stored = row && summaryOf(row as SummaryRow);
        if (normal(stored ?? null) !== normal(rebuilt.summary)) problem(orderId, `summary ${normal(stored ?? null)} ≠ rebuilt ${normal(rebuilt.summary)}`);
        const timeline = timelineRows.filter((r) => r.order_id === orderId).map((r) => ({ position: r.position, status: r.status, at: r.at.toISOString() }));
        if (normal(timeline) !== normal(rebuilt.timeline)) problem(orderId, `timeline ${normal(timeline)} ≠ rebuilt ${normal(rebuilt.timeline)}`);
      }

      // Subscribers: the last event each customer heard of each order is what a query answers now.
      // Quiet means the projector has applied everything; the gateway may still be delivering.
      const lastHeard = (received: Received, orderId: string) => received.data.map((d) => d.myOrderUpdates as OrderView).filter((o) => o.id === orderId).at(-1);
      const mismatches = async () => {
        const found: string[] = [];
        for (let customer = 0; customer < customerCount; customer++) {
          const ids = orderIds.filter((id) => byOrder.get(id)!.script.customer === customer);
          const queried = await readOrders(ids, customerTokens[customer]!);
          for (const id of ids) {
            const heard = lastHeard(subscribers[customer]!, id);
            if (normal(heard ?? null) !== normal(queried.get(id) ?? null)) found.push(`order ${id}: subscriber's last event ${JSON.stringify(heard ?? null)} ≠ query ${JSON.stringify(queried.get(id))}`);
          }
        }
        return found;
      };
      let stale: string[] = [];
      await waitFor('every subscriber caught up', async () => ((stale = await mismatches()).length === 0 ? true : undefined), 15_000).catch(() => {});
      violations.push(...stale);
      for (const subscriber of subscribers) violations.push(...subscriber.errors.map((error) => `subscription error ${error.extensions?.code}: ${error.message}`));

      const refused = summaryRows.filter((row) => row.cancellation?.outcome === 'REFUSED').length;
      const statuses = [...summaries.values()].reduce<Record<string, number>>((acc, status) => ({ ...acc, [status]: (acc[status] ?? 0) + 1 }), {});
      console.log(`[measure] order lifecycle properties (${bus} bus): seed ${seed}; ${orderIds.length} orders played in ${played} ms, quiet ${quietAfter} ms later; ${JSON.stringify(statuses)}; ${refused} cancellations refused; ${timeouts.length} actions timed out at the gateway`);
      if (process.env.ORDER_PROPERTIES_VERBOSE) console.log(runs.map(describeRun).join('\n'));
      if (violations.length > 0) {
        const offending = runs.filter((run) => violations.some((v) => (run.orderId ? v.includes(run.orderId) : false)));
        console.log(`[measure] order lifecycle properties FAILED with seed ${seed}; scripts of the offending orders:\n${(offending.length ? offending : runs).map(describeRun).join('\n')}`);
      }
      expect(violations).toEqual([]);
    } catch (error) {
      // A check that threw (not a violation found, already reported): the seed and every script, to replay it.
      if (violations.length === 0) console.log(`[measure] order lifecycle properties FAILED with seed ${seed}:\n${runs.map(describeRun).join('\n')}`);
      throw error;
    }
  }, 240_000);
});
