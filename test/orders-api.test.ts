/**
 * The orders subgraph as the gateway calls it (a gateway-signed identity on every request), on
 * its own database and a real event bus: the catalog's prices reach it as events, customers
 * place, read and cancel orders, and whatever they get wrong is refused with a field to fix.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Identity } from '../platform/identity/identity.ts';
import type { RunningOrdersSubgraph } from '../subgraphs/orders/subgraph.ts';
import { errorCodes, type GraphQLResponse } from './support/graphql.ts';
import { productEvent, startOrdersSubgraphUnderTest, type OrdersSubgraphUnderTest } from './support/orders-subgraph.ts';
import type { TestBus } from './support/stack.ts';
import { waitFor as waitUntil } from './support/wait.ts';

let subgraph: OrdersSubgraphUnderTest | undefined;
let testBus: TestBus;
let orders: RunningOrdersSubgraph;
let sql: pg.Pool;

const alice: Identity = { customerId: randomUUID(), roles: ['customer'] };
const bob: Identity = { customerId: randomUUID(), roles: ['customer'] };
const admin: Identity = { customerId: randomUUID(), roles: ['customer', 'admin'] };
const anonymous: Identity = { customerId: null, roles: [] };

const hammer = { id: randomUUID(), name: 'Claw Hammer', price: 1_999, currency: 'EUR' };
const nails = { id: randomUUID(), name: 'Nails (100)', price: 250, currency: 'EUR' };
const dollarSaw = { id: randomUUID(), name: 'Hand Saw', price: 2_500, currency: 'USD' };
const oldDrill = { id: randomUUID(), name: 'Old Drill', price: 5_000, currency: 'EUR' };
const address = { name: 'Alice Example', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };

/** Polls until `condition` holds (support/wait.ts, for a yes-or-no condition). */
async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  await waitUntil(what, async () => ((await condition()) ? true : undefined), timeoutMs);
}

async function priceOf(productId: string): Promise<{ price: number | null; discontinued: boolean; version: number } | undefined> {
  return (await sql.query('SELECT price, discontinued, version FROM product_prices WHERE product_id = $1', [productId])).rows[0];
}

beforeAll(async () => {
  subgraph = await startOrdersSubgraphUnderTest('orders');
  ({ testBus, orders, sql } = subgraph);
  // The catalog's prices reach orders only as events on the bus.
  for (const product of [hammer, nails, dollarSaw, oldDrill]) {
    await testBus.bus.publish(productEvent('ProductCreated', product.id, 1, { sku: `SKU-${product.id.slice(0, 6)}`, name: product.name, price: product.price, currency: product.currency, categoryId: randomUUID() }));
  }
  await testBus.bus.publish(productEvent('ProductDiscontinued', oldDrill.id, 2, {}));
  await waitFor('the price copy', async () => (await priceOf(oldDrill.id))?.discontinued === true && (await priceOf(dollarSaw.id)) !== undefined);
}, 60_000);

afterAll(async () => {
  await subgraph?.stop();
});

function call(who: Identity, query: string, variables: Record<string, unknown> = {}, url?: string): Promise<GraphQLResponse> {
  return subgraph!.call(who, query, variables, url);
}

const orderFields = 'id status reason total currency itemCount items { product { id } quantity unitPrice } timeline { status } placedAt updatedAt customer { id }';
const placeOrderMutation = `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { ${orderFields} } }`;
const orderQuery = `query ($id: ID!) { order(id: $id) { ${orderFields} } }`;

function orderInput(overrides: Record<string, unknown> = {}) {
  return {
    lines: [
      { productId: hammer.id, quantity: 1 },
      { productId: nails.id, quantity: 4 },
    ],
    shippingAddress: address,
    paymentToken: 'tok_visa',
    idempotencyKey: randomUUID(),
    ...overrides,
  };
}

async function placeOrder(who: Identity, overrides: Record<string, unknown> = {}): Promise<GraphQLResponse> {
  return call(who, placeOrderMutation, { input: orderInput(overrides) });
}

async function placed(who: Identity, overrides: Record<string, unknown> = {}): Promise<{ id: string; [field: string]: unknown }> {
  const response = await placeOrder(who, overrides);
  expect(response.errors).toBeUndefined();
  return response.data!.placeOrder;
}

async function ordersPlacedBy(customerId: string): Promise<number> {
  const { rows } = await sql.query(`SELECT count(*)::int AS n FROM order_events WHERE type = 'OrderPlaced' AND data->>'customerId' = $1`, [customerId]);
  return rows[0].n;
}

function expectRefused(response: GraphQLResponse, code: string, field?: string, message?: RegExp): void {
  expect(errorCodes(response)).toEqual([code]);
  if (field !== undefined) expect(response.errors![0]!.extensions?.field).toBe(field);
  if (message) expect(response.errors![0]!.message).toMatch(message);
}

describe('placing an order', () => {
  it('places it PENDING for the signed-in customer, priced from the local copy of catalog prices', async () => {
    const response = await placeOrder(alice);

    expect(response.errors).toBeUndefined();
    const order = response.data!.placeOrder;
    expect(order).toMatchObject({
      status: 'PENDING',
      reason: null,
      total: 1_999 + 4 * 250,
      currency: 'EUR',
      itemCount: 5,
      items: [
        { product: { id: hammer.id }, quantity: 1, unitPrice: 1_999 },
        { product: { id: nails.id }, quantity: 4, unitPrice: 250 },
      ],
      timeline: [{ status: 'PENDING' }],
      customer: { id: alice.customerId },
    });
    expect(order.placedAt).toBe(order.updatedAt);
  });

  it('shows the order PENDING through order(id) as soon as placeOrder has returned', async () => {
    const order = await placed(alice);

    const read = await call(alice, orderQuery, { id: order.id });

    expect(read.errors).toBeUndefined();
    expect(read.data!.order).toEqual(order);
  });

  it('reads an order from its stream when the projector has not reached it', async () => {
    const order = await placed(alice);
    await waitFor('the projector', async () => (await sql.query('SELECT 1 FROM order_summaries WHERE order_id = $1', [order.id])).rowCount === 1);
    // As if the projector had not got there yet.
    await sql.query('DELETE FROM order_summaries WHERE order_id = $1', [order.id]);
    await sql.query('DELETE FROM order_timeline WHERE order_id = $1', [order.id]);

    const read = await call(alice, orderQuery, { id: order.id });

    expect(read.errors).toBeUndefined();
    expect(read.data!.order).toEqual(order);
  });

  it('shows a cancellation through order(id) at once, however far behind the projection is', async () => {
    const order = await placed(alice);
    await call(alice, `mutation ($id: ID!) { cancelOrder(id: $id) { status } }`, { id: order.id });
    await waitFor('the projector', async () => (await sql.query(`SELECT 1 FROM order_summaries WHERE order_id = $1 AND status = 'CANCELLED'`, [order.id])).rowCount === 1);
    // Back to what the projection held before the cancellation.
    await sql.query(`UPDATE order_summaries SET status = 'PENDING', reason = NULL, cancellation = NULL, version = 1 WHERE order_id = $1`, [order.id]);
    await sql.query('DELETE FROM order_timeline WHERE order_id = $1 AND position > 1', [order.id]);

    const read = await call(alice, `query ($id: ID!) { order(id: $id) { status reason cancellation { outcome } timeline { status } } }`, { id: order.id });

    expect(read.data!.order).toEqual({
      status: 'CANCELLED',
      reason: 'CUSTOMER_CANCELLED',
      cancellation: { outcome: 'ACCEPTED' },
      timeline: [{ status: 'PENDING' }, { status: 'CANCELLING' }, { status: 'CANCELLED' }],
    });
  });

  it('returns the same order when retried with the same idempotency key', async () => {
    const customer: Identity = { customerId: randomUUID(), roles: ['customer'] };
    const idempotencyKey = randomUUID();

    const first = await placed(customer, { idempotencyKey });
    const retry = await placed(customer, { idempotencyKey });
    const another = await placed(customer);

    expect(retry).toEqual(first);
    expect(another.id).not.toBe(first.id);
    expect(await ordersPlacedBy(customer.customerId!)).toBe(2);
  });

  it('places one order for 10 concurrent requests with one idempotency key', async () => {
    const customer: Identity = { customerId: randomUUID(), roles: ['customer'] };
    const idempotencyKey = randomUUID();

    const responses = await Promise.all(Array.from({ length: 10 }, () => placeOrder(customer, { idempotencyKey })));

    for (const response of responses) expect(response.errors).toBeUndefined();
    expect(new Set(responses.map((r) => r.data!.placeOrder.id)).size).toBe(1);
    expect(await ordersPlacedBy(customer.customerId!)).toBe(1);
    const { rows } = await sql.query(`SELECT count(*)::int AS n FROM outbox_events WHERE envelope->>'type' = 'OrderPlaced' AND envelope->'payload'->>'customerId' = $1`, [customer.customerId]);
    expect(rows[0].n).toBe(1);
  });

  it('keeps idempotency keys per customer: the same key of another customer places another order', async () => {
    const idempotencyKey = randomUUID();
    const mine = await placed(alice, { idempotencyKey });
    const theirs = await placed(bob, { idempotencyKey });
    expect(theirs.id).not.toBe(mine.id);
  });

  it('prices an order at the price of the latest ProductPriceChanged the catalog published', async () => {
    const drill = { id: randomUUID(), name: 'Drill' };
    await testBus.bus.publish(productEvent('ProductCreated', drill.id, 1, { sku: 'DRL-1', name: drill.name, price: 8_000, currency: 'EUR', categoryId: randomUUID() }));
    await testBus.bus.publish(productEvent('ProductPriceChanged', drill.id, 2, { price: 6_500, previousPrice: 8_000, currency: 'EUR' }));
    await waitFor('the new price', async () => (await priceOf(drill.id))?.price === 6_500);

    const order = await placed(alice, { lines: [{ productId: drill.id, quantity: 2 }] });

    expect(order).toMatchObject({ total: 13_000, items: [{ unitPrice: 6_500, quantity: 2 }] });
  });

  it('holds back a price event that overtook an earlier one, and applies both in version order', async () => {
    const saw = { id: randomUUID() };
    await testBus.bus.publish(productEvent('ProductCreated', saw.id, 1, { sku: 'SAW-1', name: 'Saw', price: 1_000, currency: 'EUR', categoryId: randomUUID() }));
    await waitFor('the saw', async () => (await priceOf(saw.id)) !== undefined);
    await testBus.bus.publish(productEvent('ProductPriceChanged', saw.id, 3, { price: 1_300, previousPrice: 1_200, currency: 'EUR' }));
    const marker = { id: randomUUID() };
    await testBus.bus.publish(productEvent('ProductCreated', marker.id, 1, { sku: 'MRK-1', name: 'Marker', price: 1, currency: 'EUR', categoryId: randomUUID() }));
    await waitFor('the events before the marker', async () => (await priceOf(marker.id)) !== undefined);
    // Version 3 was delivered before the marker, and refused: version 2 is missing.
    expect(await priceOf(saw.id)).toEqual({ price: 1_000, discontinued: false, version: 1 });

    await testBus.bus.publish(productEvent('ProductPriceChanged', saw.id, 2, { price: 1_200, previousPrice: 1_000, currency: 'EUR' }));
    await waitFor('version 3, redelivered after version 2', async () => (await priceOf(saw.id))?.version === 3, 30_000);
    expect(await priceOf(saw.id)).toEqual({ price: 1_300, discontinued: false, version: 3 });
  });

  it('refuses an anonymous caller with UNAUTHENTICATED', async () => {
    expectRefused(await placeOrder(anonymous), 'UNAUTHENTICATED');
  });
});

describe('placing an order with input it refuses', () => {
  const cases: { label: string; input: () => Record<string, unknown>; field: string; message?: RegExp }[] = [
    { label: 'no lines', input: () => ({ lines: [] }), field: 'input.lines' },
    { label: 'a quantity of 0', input: () => ({ lines: [{ productId: hammer.id, quantity: 0 }] }), field: 'input.lines[0].quantity' },
    { label: 'a quantity of 1000', input: () => ({ lines: [{ productId: nails.id, quantity: 1 }, { productId: hammer.id, quantity: 1000 }] }), field: 'input.lines[1].quantity' },
    { label: 'an unknown product', input: () => ({ lines: [{ productId: hammer.id, quantity: 1 }, { productId: '3f0a1b2c-0000-4000-8000-000000000000', quantity: 1 }] }), field: 'input.lines[1].productId', message: /3f0a1b2c-0000-4000-8000-000000000000/ },
    { label: 'a discontinued product', input: () => ({ lines: [{ productId: oldDrill.id, quantity: 1 }] }), field: 'input.lines[0].productId', message: /Old Drill.*discontinued/ },
    { label: 'a malformed product id', input: () => ({ lines: [{ productId: 'hammer', quantity: 1 }] }), field: 'input.lines[0].productId' },
    { label: 'products in two currencies', input: () => ({ lines: [{ productId: hammer.id, quantity: 1 }, { productId: dollarSaw.id, quantity: 1 }] }), field: 'input.lines[1].productId', message: /one currency/ },
    { label: 'a country that is not an ISO code', input: () => ({ shippingAddress: { ...address, country: 'Germany' } }), field: 'input.shippingAddress.country' },
    { label: 'a blank payment token', input: () => ({ paymentToken: ' ' }), field: 'input.paymentToken' },
    { label: 'an idempotency key of 101 characters', input: () => ({ idempotencyKey: 'k'.repeat(101) }), field: 'input.idempotencyKey' },
  ];

  it.each(cases)('refuses $label with BAD_USER_INPUT on $field and places nothing', async ({ input, field, message }) => {
    const customer: Identity = { customerId: randomUUID(), roles: ['customer'] };

    const response = await placeOrder(customer, input());

    expect(response.data).toBeNull();
    expectRefused(response, 'BAD_USER_INPUT', field, message);
    expect(await ordersPlacedBy(customer.customerId!)).toBe(0);
  });
});

describe('reading orders', () => {
  it("answers null and FORBIDDEN for someone else's order, and lets an admin read it", async () => {
    const order = await placed(alice);

    const asBob = await call(bob, orderQuery, { id: order.id });
    const asAdmin = await call(admin, orderQuery, { id: order.id });

    expect(asBob.data).toEqual({ order: null });
    expect(errorCodes(asBob)).toEqual(['FORBIDDEN']);
    expect(asAdmin.data!.order).toMatchObject({ id: order.id, customer: { id: alice.customerId } });
  });

  it('answers null for an order that does not exist, and BAD_USER_INPUT for a malformed id', async () => {
    const missing = await call(alice, orderQuery, { id: randomUUID() });
    const malformed = await call(alice, orderQuery, { id: 'order-1' });

    expect(missing).toMatchObject({ data: { order: null } });
    expect(missing.errors).toBeUndefined();
    expectRefused(malformed, 'BAD_USER_INPUT', 'id');
  });

  it("lists a customer's orders newest first, page by page, for that customer and admins only", async () => {
    const customer: Identity = { customerId: randomUUID(), roles: ['customer'] };
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await placed(customer)).id);
    await waitFor('the projector', async () => (await sql.query('SELECT count(*)::int AS n FROM order_summaries WHERE customer_id = $1', [customer.customerId])).rows[0].n === 3);
    const page = (who: Identity, after?: string) =>
      call(who, 'query ($reps: [_Any!]!, $after: String) { _entities(representations: $reps) { ... on Customer { orders(first: 2, after: $after) { edges { node { id status } } pageInfo { hasNextPage endCursor } } } } }', {
        reps: [{ __typename: 'Customer', id: customer.customerId }],
        after,
      });

    const first = await page(customer);
    const second = await page(customer, first.data!._entities[0].orders.pageInfo.endCursor);
    const byBob = await page(bob);
    const byAdmin = await page(admin);

    expect(first.data!._entities[0].orders).toEqual({
      edges: [{ node: { id: ids[2], status: 'PENDING' } }, { node: { id: ids[1], status: 'PENDING' } }],
      pageInfo: { hasNextPage: true, endCursor: expect.any(String) },
    });
    expect(second.data!._entities[0].orders.edges).toEqual([{ node: { id: ids[0], status: 'PENDING' } }]);
    expect(second.data!._entities[0].orders.pageInfo.hasNextPage).toBe(false);
    expect(errorCodes(byBob)).toEqual(['FORBIDDEN']);
    expect(byAdmin.data!._entities[0].orders.edges).toHaveLength(2);
  });

  it("pages the orders of any number of Customer references with one SQL statement, each customer's own", async () => {
    const customers = Array.from({ length: 6 }, () => ({ customerId: randomUUID(), roles: ['customer'] }) satisfies Identity);
    const placedBy = new Map<string, string[]>();
    for (const [i, customer] of customers.entries()) {
      const ids: string[] = [];
      for (let n = 0; n < i % 3; n++) ids.push((await placed(customer)).id);
      placedBy.set(customer.customerId, ids.reverse());
    }
    const all = [...placedBy.values()].flat();
    await waitFor('the projector', async () => (await sql.query('SELECT count(*)::int AS n FROM order_summaries WHERE order_id = ANY($1)', [all])).rows[0].n === all.length);
    const representations = customers.map(({ customerId }) => ({ __typename: 'Customer', id: customerId }));
    const before = orders.statements.count;

    const response = await call(admin, 'query ($reps: [_Any!]!) { _entities(representations: $reps) { ... on Customer { id orders(first: 1) { edges { node { id } } pageInfo { hasNextPage } } } } }', { reps: representations });

    expect(response.errors).toBeUndefined();
    expect(orders.statements.count - before).toBe(1);
    expect(response.data!._entities).toEqual(
      customers.map(({ customerId }) => {
        const own = placedBy.get(customerId)!;
        return { id: customerId, orders: { edges: own.slice(0, 1).map((id) => ({ node: { id } })), pageInfo: { hasNextPage: own.length > 1 } } };
      }),
    );
  });

  it('resolves any number of Order references with one SQL statement', async () => {
    const mine = [await placed(alice), await placed(alice)].map((o) => o.id);
    await waitFor('the projector', async () => (await sql.query('SELECT count(*)::int AS n FROM order_summaries WHERE order_id = ANY($1)', [mine])).rows[0].n === 2);
    const representations = Array.from({ length: 30 }, (_, i) => ({ __typename: 'Order', id: i % 5 === 4 ? randomUUID() : mine[i % 2] }));
    const before = orders.statements.count;

    const response = await call(admin, 'query ($reps: [_Any!]!) { _entities(representations: $reps) { ... on Order { id status } } }', { reps: representations });

    expect(response.errors).toBeUndefined();
    expect(response.data!._entities).toHaveLength(30);
    expect(response.data!._entities.filter((e: unknown) => e === null)).toHaveLength(6);
    expect(orders.statements.count - before).toBe(1);
  });
});

describe('cancelling an order', () => {
  it('cancels a pending order of the caller', async () => {
    const order = await placed(alice);

    const response = await call(alice, `mutation ($id: ID!) { cancelOrder(id: $id) { id status reason timeline { status } } }`, { id: order.id });

    expect(response.errors).toBeUndefined();
    // The request is recorded (CANCELLING); without a shipment to stop it is granted in the same transaction.
    expect(response.data!.cancelOrder).toEqual({
      id: order.id,
      status: 'CANCELLED',
      reason: 'CUSTOMER_CANCELLED',
      timeline: [{ status: 'PENDING' }, { status: 'CANCELLING' }, { status: 'CANCELLED' }],
    });
  });

  it('answers CONFLICT when the order can no longer be cancelled', async () => {
    const order = await placed(alice);
    const cancel = () => call(alice, `mutation ($id: ID!) { cancelOrder(id: $id) { status } }`, { id: order.id });
    await cancel();

    expectRefused(await cancel(), 'CONFLICT', undefined, /Cannot cancel an order that is cancelled/);
  });

  it("answers NOT_FOUND for someone else's order, as for one that does not exist, and leaves it alone", async () => {
    const order = await placed(alice);
    const cancel = (who: Identity, id: string) => call(who, `mutation ($id: ID!) { cancelOrder(id: $id) { status } }`, { id });

    const byBob = await cancel(bob, order.id);
    const missing = await cancel(bob, randomUUID());
    const malformed = await cancel(bob, 'nope');

    expectRefused(byBob, 'NOT_FOUND');
    expect(byBob.errors![0]!.message).toBe(missing.errors![0]!.message);
    expectRefused(malformed, 'BAD_USER_INPUT', 'id');
    expect((await call(alice, orderQuery, { id: order.id })).data!.order.status).toBe('PENDING');
  });

  it('lets an admin cancel any order', async () => {
    const order = await placed(alice);
    const response = await call(admin, `mutation ($id: ID!) { cancelOrder(id: $id) { status } }`, { id: order.id });
    expect(response.data).toEqual({ cancelOrder: { status: 'CANCELLED' } });
  });
});

describe('returning an order', () => {
  const day = 86_400_000;
  /** Places an order for alice and moves it to DELIVERED `deliveredDaysAgo` days ago, as the saga would. */
  async function deliveredDaysAgo(days: number): Promise<string> {
    const { id } = await placed(alice);
    const causation = { correlationId: randomUUID(), causationId: randomUUID() };
    const at = new Date(Date.now() - days * day).toISOString();
    for (const command of [{ type: 'ConfirmOrder', at }, { type: 'MarkShipped', at }, { type: 'MarkDelivered', at }] as const) await orders.store.execute(id, command, causation);
    return id;
  }
  const requestReturn = (who: Identity, id: string) => call(who, `mutation ($id: ID!) { requestReturn(id: $id) { status } }`, { id });

  it('takes a return request within the window after delivery (30 days by default), and only from the order’s customer', async () => {
    const id = await deliveredDaysAgo(29);
    expectRefused(await requestReturn(bob, id), 'NOT_FOUND');
    expect((await requestReturn(alice, id)).data).toEqual({ requestReturn: { status: 'RETURN_REQUESTED' } });
    expect((await requestReturn(alice, id)).data).toEqual({ requestReturn: { status: 'RETURN_REQUESTED' } });
  });

  it('refuses it after the window with CONFLICT and reason RETURN_WINDOW_CLOSED, and writes nothing', async () => {
    const id = await deliveredDaysAgo(31);
    const before = (await orders.store.readStream(id)).length;
    const refused = await requestReturn(alice, id);
    expectRefused(refused, 'CONFLICT', undefined, /within 30 days of its delivery/);
    expect(refused.errors![0]!.extensions).toMatchObject({ reason: 'RETURN_WINDOW_CLOSED' });
    expect((await orders.store.readStream(id)).length).toBe(before);
  });

  it('lets only an admin record the returned parcel (FORBIDDEN at the subgraph too)', async () => {
    const id = await deliveredDaysAgo(1);
    await requestReturn(alice, id);
    expectRefused(await call(alice, `mutation ($id: ID!) { receiveReturn(id: $id) { status } }`, { id }), 'FORBIDDEN');
    expect((await call(admin, `mutation ($id: ID!) { receiveReturn(id: $id) { status } }`, { id })).data).toEqual({ receiveReturn: { status: 'RETURN_RECEIVED' } });
  });
});
