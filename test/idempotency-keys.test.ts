/**
 * An idempotency key is bound to the request it was first sent with: the same request again
 * returns the first order, another request with the key is refused (CONFLICT,
 * IDEMPOTENCY_KEY_REUSED) and writes nothing: no order, no saga, no stock reservation asked for.
 * The orders subgraph (with its saga) as the gateway calls it, on its own database and a real bus (NATS).
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Identity } from '../platform/identity/identity.ts';
import { requestFingerprint } from '../subgraphs/orders/domain/placing-request.ts';
import { orderSaga } from '../subgraphs/orders/saga/wiring.ts';
import { errorCodes, type GraphQLResponse } from './support/graphql.ts';
import { productEvent, startOrdersSubgraphUnderTest, type OrdersSubgraphUnderTest } from './support/orders-subgraph.ts';
import { waitFor } from './support/wait.ts';

let subgraph: OrdersSubgraphUnderTest | undefined;
let sql: pg.Pool;

const hammer = { id: randomUUID(), name: 'Claw Hammer', price: 1_999 };
const nails = { id: randomUUID(), name: 'Nails (100)', price: 250 };
const address = { name: 'Alice Example', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };

beforeAll(async () => {
  // The saga, so a placement's writes include its saga and the ReserveStock it asks for.
  subgraph = await startOrdersSubgraphUnderTest('idem', { saga: orderSaga({ stepTimeoutMs: 600_000 }) });
  sql = subgraph.sql;
  // Orders prices from its copy of the catalog's prices, which reach it only as events.
  for (const product of [hammer, nails]) {
    await subgraph.testBus.bus.publish(
      productEvent('ProductCreated', product.id, 1, { sku: `SKU-${product.id.slice(0, 6)}`, name: product.name, price: product.price, currency: 'EUR', categoryId: randomUUID() }),
    );
  }
  await waitFor('the price copy', async () => ((await sql.query('SELECT count(*)::int AS n FROM product_prices WHERE price IS NOT NULL')).rows[0].n === 2 ? true : undefined));
}, 60_000);

afterAll(async () => {
  await subgraph?.stop();
});

const placeOrderMutation = `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status total items { product { id } quantity } } }`;

function request(idempotencyKey: string, overrides: Record<string, unknown> = {}) {
  return {
    lines: [
      { productId: hammer.id, quantity: 1 },
      { productId: nails.id, quantity: 4 },
    ],
    shippingAddress: address,
    paymentToken: 'tok_visa',
    idempotencyKey,
    ...overrides,
  };
}

async function placeOrder(who: Identity, input: Record<string, unknown>): Promise<GraphQLResponse> {
  return subgraph!.call(who, placeOrderMutation, { input });
}

const newCustomer = (): Identity => ({ customerId: randomUUID(), roles: ['customer'] });

/** Everything a placement writes: its OrderPlaced, its saga, and the saga's ask to reserve stock. */
async function writes(): Promise<{ ordersPlaced: number; sagas: number; reservationsAsked: number }> {
  const { rows } = await sql.query(`SELECT
      (SELECT count(*)::int FROM order_events WHERE type = 'OrderPlaced') AS "ordersPlaced",
      (SELECT count(*)::int FROM order_sagas) AS sagas,
      (SELECT count(*)::int FROM outbox_events WHERE envelope->>'type' = 'ReserveStock') AS "reservationsAsked"`);
  return rows[0];
}

function expectKeyReused(response: GraphQLResponse): void {
  expect(errorCodes(response)).toEqual(['CONFLICT']);
  expect(response.errors![0]!.extensions).toMatchObject({ reason: 'IDEMPOTENCY_KEY_REUSED', field: 'input.idempotencyKey' });
  expect(response.data?.placeOrder ?? null).toBeNull();
}

describe('an idempotency key bound to its request', () => {
  it('returns the first order for the same request, even with its lines in another order and its address spelled loosely', async () => {
    const customer = newCustomer();
    const key = randomUUID();
    const first = await placeOrder(customer, request(key));
    expect(first.errors).toBeUndefined();
    const before = await writes();

    const same = await placeOrder(customer, request(key));
    const reordered = await placeOrder(customer, request(key, {
      lines: [{ productId: nails.id.toUpperCase(), quantity: 4 }, { productId: hammer.id, quantity: 1 }],
      shippingAddress: { ...address, city: ' Berlin ', country: 'de' },
      paymentToken: ' tok_visa ',
    }));

    expect(same.errors).toBeUndefined();
    expect(reordered.errors).toBeUndefined();
    expect(same.data!.placeOrder.id).toBe(first.data!.placeOrder.id);
    expect(reordered.data!.placeOrder.id).toBe(first.data!.placeOrder.id);
    expect(await writes()).toEqual(before);
  });

  const otherRequests: { label: string; overrides: Record<string, unknown> }[] = [
    { label: 'other lines', overrides: { lines: [{ productId: hammer.id, quantity: 1 }] } },
    { label: 'another quantity', overrides: { lines: [{ productId: hammer.id, quantity: 2 }, { productId: nails.id, quantity: 4 }] } },
    { label: 'another shipping address', overrides: { shippingAddress: { ...address, line1: '2 Main Street' } } },
    { label: 'another payment token', overrides: { paymentToken: 'tok_declined' } },
  ];
  for (const { label, overrides } of otherRequests) {
    it(`refuses the key sent again with ${label}: CONFLICT IDEMPOTENCY_KEY_REUSED, and writes nothing`, async () => {
      const customer = newCustomer();
      const key = randomUUID();
      const first = await placeOrder(customer, request(key));
      expect(first.errors).toBeUndefined();
      const before = await writes();
      expect(before.reservationsAsked).toBeGreaterThan(0);

      expectKeyReused(await placeOrder(customer, request(key, overrides)));

      expect(await writes()).toEqual(before);
      // The first request is still answered with its order.
      const again = await placeOrder(customer, request(key));
      expect(again.data!.placeOrder.id).toBe(first.data!.placeOrder.id);
    });
  }

  it('lets exactly one of two concurrent first uses of a key with different requests win; the other is refused', async () => {
    for (let round = 0; round < 5; round++) {
      const customer = newCustomer();
      const key = randomUUID();
      const before = await writes();

      const [one, two] = await Promise.all([
        placeOrder(customer, request(key)),
        placeOrder(customer, request(key, { lines: [{ productId: hammer.id, quantity: 3 }] })),
      ]);

      const winners = [one, two].filter((response) => response.errors === undefined);
      const losers = [one, two].filter((response) => response.errors !== undefined);
      expect(winners).toHaveLength(1);
      expect(losers).toHaveLength(1);
      expectKeyReused(losers[0]!);
      const after = await writes();
      expect(after).toEqual({ ordersPlaced: before.ordersPlaced + 1, sagas: before.sagas + 1, reservationsAsked: before.reservationsAsked + 1 });
      const { rows } = await sql.query('SELECT order_id FROM order_idempotency WHERE customer_id = $1', [customer.customerId]);
      expect(rows.map((row) => row.order_id)).toEqual([winners[0]!.data!.placeOrder.id]);
    }
  });

  it('refuses a placement whose key another request claimed while it was being placed, and rolls it back', async () => {
    const customer = newCustomer();
    const key = randomUUID();
    const before = await writes();
    // Another request's claim of the key, held uncommitted: the placement passes its first look
    // (it cannot see the row), then waits on the row in its own transaction.
    const other = { lines: [{ productId: hammer.id, quantity: 3 }], shippingAddress: { ...address, line2: null }, paymentToken: 'tok_visa' };
    const claim = await sql.connect();
    try {
      await claim.query('BEGIN');
      await claim.query('INSERT INTO order_idempotency (customer_id, idempotency_key, order_id, request_fingerprint) VALUES ($1, $2, $3, $4)', [customer.customerId, key, randomUUID(), requestFingerprint(other)]);
      const placing = placeOrder(customer, request(key));
      await waitFor('the placement to wait on the claimed key', async () => {
        const { rows } = await sql.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
        return rows[0].n > 0 ? true : undefined;
      });
      await claim.query('COMMIT');

      expectKeyReused(await placing);
    } finally {
      claim.release();
    }
    expect(await writes()).toEqual(before);
  });

  it('answers a key claimed before requests were fingerprinted with its order, whatever the request', async () => {
    const customer = newCustomer();
    const key = randomUUID();
    const first = await placeOrder(customer, request(key));
    await sql.query('UPDATE order_idempotency SET request_fingerprint = NULL WHERE customer_id = $1', [customer.customerId]);

    const other = await placeOrder(customer, request(key, { paymentToken: 'tok_declined' }));

    expect(other.errors).toBeUndefined();
    expect(other.data!.placeOrder.id).toBe(first.data!.placeOrder.id);
  });
});
