import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deterministicUuid } from '../platform/ids.ts';
import { demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { connectInventoryDatabase } from '../subgraphs/inventory/infrastructure/database.ts';
import { connectOrdersDatabase } from '../subgraphs/orders/infrastructure/database.ts';
import { errorCodes, graphql, graphqlRetryingOverload, type GraphQLResponse } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

const inStock = demoProducts.filter((p) => p.stock >= 20);
const soldOut = demoProducts.find((p) => p.stock === 0)!;
const address = { name: 'Carl Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };
const orderFields = `id status reason total itemCount
  items { quantity unitPrice product { id name } }
  rejectedLines { requested available product { id name } }
  payment { status }
  shipment { trackingNumber status }
  timeline { status }`;


describe('placing an order through the gateway: the saga across inventory, payments and shipping', () => {
  let stack: Stack;
  let customer: string;
  let otherCustomer: string;
  let admin: string;

  beforeAll(async () => {
    // Deadlines generous enough for a loaded 2-core CI machine; tok_slow answers well after them.
    stack = await startStack({ eventBus: 'postgres', sagaStepTimeoutMs: 8_000, slowPaymentDelayMs: 10_000 });
    await seedDemoData(stack.databaseUrls);
    customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
    otherCustomer = await stack.tokenFor({ customerId: randomUUID() });
    admin = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] });
  }, 120_000);
  afterAll(() => stack?.stop());

  async function place(lines: { productId: string; quantity: number }[], paymentToken = 'tok_visa', token = customer) {
    const response = await graphql(stack.gatewayUrl, {
      query: `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }`,
      variables: { input: { lines, shippingAddress: address, paymentToken, idempotencyKey: randomUUID() } },
      token,
    });
    expect(response.errors).toBeUndefined();
    expect(response.data!.placeOrder.status).toBe('PENDING');
    return response.data!.placeOrder.id as string;
  }

  const read = (id: string, token = customer) => graphql(stack.gatewayUrl, { query: `query ($id: ID!) { order(id: $id) { ${orderFields} } }`, variables: { id }, token });

  function untilStatus(id: string, status: string, also: (order: Record<string, any>) => boolean = () => true) {
    return waitFor(`order ${status}`, async () => {
      const order = (await read(id)).data?.order;
      return order?.status === status && also(order) ? order : undefined;
    });
  }

  async function stockOf(productId: string) {
    return (await graphql(stack.gatewayUrl, { query: `{ product(id: "${productId}") { stock { available reserved } } }`, token: admin })).data!.product.stock as { available: number; reserved: number };
  }

  async function advance(orderId: string, to: string): Promise<GraphQLResponse> {
    return graphql(stack.gatewayUrl, { query: `mutation { advanceShipment(orderId: "${orderId}", to: ${to}) { status } }`, token: admin });
  }

  it('goes PENDING → CONFIRMED → SHIPPED → DELIVERED, each field resolved by the context that owns it', async () => {
    const product = inStock[0]!;
    const before = await stockOf(product.id);
    const id = await place([{ productId: product.id, quantity: 2 }]);

    const confirmed = await untilStatus(id, 'CONFIRMED', (o) => o.payment?.status === 'AUTHORIZED' && o.shipment?.status === 'CREATED');
    expect(confirmed).toMatchObject({ total: product.price * 2, itemCount: 2, items: [{ quantity: 2, unitPrice: product.price, product: { id: product.id, name: product.name } }], rejectedLines: [] });
    expect(confirmed.shipment.trackingNumber).toMatch(/^CSG\d+/);
    expect(await stockOf(product.id)).toEqual({ available: before.available - 2, reserved: before.reserved + 2 });

    expect((await advance(id, 'DISPATCHED')).errors).toBeUndefined();
    await untilStatus(id, 'SHIPPED', (o) => o.payment?.status === 'CAPTURED');
    await waitFor('the reservation committed', async () => ((await stockOf(product.id)).reserved === before.reserved ? true : undefined));
    expect(await stockOf(product.id)).toEqual({ available: before.available - 2, reserved: before.reserved });

    await advance(id, 'IN_TRANSIT');
    await advance(id, 'DELIVERED');
    const delivered = await untilStatus(id, 'DELIVERED');
    expect(delivered.timeline.map((t: { status: string }) => t.status)).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']);
  });

  async function delivered(productId: string, quantity: number, paymentToken: string): Promise<string> {
    const id = await place([{ productId, quantity }], paymentToken);
    await untilStatus(id, 'CONFIRMED', (o) => o.shipment?.status === 'CREATED');
    for (const to of ['DISPATCHED', 'IN_TRANSIT', 'DELIVERED']) expect((await advance(id, to)).errors).toBeUndefined();
    await untilStatus(id, 'DELIVERED', (o) => o.payment?.status === 'CAPTURED');
    return id;
  }

  const returnOrder = (id: string) => graphql(stack.gatewayUrl, { query: `mutation { requestReturn(id: "${id}") { status } }`, token: customer });
  const receiveReturn = (id: string, token = admin) => graphql(stack.gatewayUrl, { query: `mutation { receiveReturn(id: "${id}") { status } }`, token });

  it('takes a delivered order back: the customer asks, an admin receives the parcel, the payment is refunded and the units go on sale again', async () => {
    const product = inStock[7]!;
    const before = await stockOf(product.id);
    const id = await delivered(product.id, 2, 'tok_visa');
    expect(await stockOf(product.id)).toEqual({ available: before.available - 2, reserved: before.reserved });

    expect((await returnOrder(id)).data).toEqual({ requestReturn: { status: 'RETURN_REQUESTED' } });
    expect(errorCodes(await receiveReturn(id, customer))).toEqual(['UNAUTHORIZED_FIELD_OR_TYPE']);
    const received = await receiveReturn(id);
    expect(received.errors).toBeUndefined();
    expect(received.data).toEqual({ receiveReturn: { status: "RETURN_RECEIVED" } });

    const refunded = await untilStatus(id, 'REFUNDED', (o) => o.payment?.status === 'REFUNDED');
    expect(refunded.timeline.map((t: { status: string }) => t.status)).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED', 'RETURN_REQUESTED', 'RETURN_RECEIVED', 'REFUNDED']);
    await waitFor('the units back on sale', async () => ((await stockOf(product.id)).available === before.available ? true : undefined));
    expect(await stockOf(product.id)).toEqual(before);
    // A second receipt changes nothing; an order cannot be returned twice.
    expect((await receiveReturn(id)).data).toEqual({ receiveReturn: { status: 'REFUNDED' } });
    expect(errorCodes(await returnOrder(id))).toEqual(['CONFLICT']);
  });

  it('writes the returned units off and ends REFUND_FAILED when the provider declines the refund, the payment still captured', async () => {
    const product = inStock[8]!;
    const before = await stockOf(product.id);
    const id = await delivered(product.id, 1, 'tok_refund_fails');
    await returnOrder(id);
    await receiveReturn(id);

    const failed = await untilStatus(id, 'REFUND_FAILED', (o) => o.payment?.status === 'REFUND_FAILED');
    expect(failed.reason).toBe('REFUND_DECLINED');
    // Held while the refund was pending, then written off: neither on sale nor reserved.
    await waitFor('the held units written off', async () => ((await stockOf(product.id)).reserved === before.reserved ? true : undefined));
    expect(await stockOf(product.id)).toEqual({ available: before.available - 1, reserved: before.reserved });
  });

  it('refuses a return of an order that was not delivered with CONFLICT, and writes nothing', async () => {
    const id = await place([{ productId: inStock[9]!.id, quantity: 1 }]);
    await untilStatus(id, 'CONFIRMED');
    const refused = await returnOrder(id);
    expect(errorCodes(refused)).toEqual(['CONFLICT']);
    expect((await read(id)).data!.order.status).toBe('CONFIRMED');
    expect(errorCodes(await receiveReturn(id))).toEqual(['CONFLICT']);
  });

  it('rejects an order for a sold-out product with OUT_OF_STOCK, naming the lines short of stock, taking no stock', async () => {
    const product = inStock[1]!;
    const before = await stockOf(product.id);
    const id = await place([{ productId: product.id, quantity: 1 }, { productId: soldOut.id, quantity: 2 }]);
    const rejected = await untilStatus(id, 'REJECTED');
    expect(rejected.reason).toBe('OUT_OF_STOCK');
    // Only the sold-out line, with what inventory had; the product's name comes from the catalog.
    const shortOfStock = [{ requested: 2, available: 0, product: { id: soldOut.id, name: soldOut.name } }];
    expect(rejected.rejectedLines).toEqual(shortOfStock);
    expect(await stockOf(product.id)).toEqual(before);
    // The customer's list is read from the projection alone: it carries the lines too.
    const listed = await waitFor('the rejection in the customer list', async () => {
      const mine = await graphql(stack.gatewayUrl, {
        query: '{ me { orders(first: 50) { edges { node { id status rejectedLines { requested available product { id name } } } } } } }',
        token: customer,
      });
      const node = mine.data?.me.orders.edges.find((e: { node: { id: string } }) => e.node.id === id)?.node;
      return node?.status === 'REJECTED' ? node : undefined;
    });
    expect(listed.rejectedLines).toEqual(shortOfStock);
  });

  it('cancels with PAYMENT_DECLINED and releases the stock when the payment is declined', async () => {
    const product = inStock[2]!;
    const before = await stockOf(product.id);
    const id = await place([{ productId: product.id, quantity: 3 }], 'tok_declined');
    const cancelled = await untilStatus(id, 'CANCELLED');
    expect(cancelled.reason).toBe('PAYMENT_DECLINED');
    await waitFor('the stock released', async () => ((await stockOf(product.id)).available === before.available ? true : undefined));
    expect(await stockOf(product.id)).toEqual(before);
  });

  it('cancels with TIMEOUT when the payment provider misses the deadline, releases the stock and voids the late authorization', async () => {
    const product = inStock[3]!;
    const before = await stockOf(product.id);
    const id = await place([{ productId: product.id, quantity: 1 }], 'tok_slow');
    const cancelled = await untilStatus(id, 'CANCELLED');
    expect(cancelled.reason).toBe('TIMEOUT');
    await untilStatus(id, 'CANCELLED', (o) => o.payment?.status === 'VOIDED');
    await waitFor('the stock released', async () => ((await stockOf(product.id)).available === before.available ? true : undefined));
    expect(await stockOf(product.id)).toEqual(before);
  });

  it('lets its customer cancel a confirmed order: stock released, authorization voided, shipment cancelled', async () => {
    const product = inStock[4]!;
    const before = await stockOf(product.id);
    const id = await place([{ productId: product.id, quantity: 1 }]);
    await untilStatus(id, 'CONFIRMED', (o) => o.shipment?.status === 'CREATED');
    const cancel = await graphql(stack.gatewayUrl, { query: `mutation { cancelOrder(id: "${id}") { status reason } }`, token: customer });
    expect(cancel.errors).toBeUndefined();
    // A request: shipping must stop the shipment first.
    expect(cancel.data!.cancelOrder).toEqual({ status: 'CANCELLING', reason: null });
    const cancelled = await untilStatus(id, 'CANCELLED', (o) => o.payment?.status === 'VOIDED' && o.shipment?.status === 'CANCELLED');
    expect(cancelled.reason).toBe('CUSTOMER_CANCELLED');
    await waitFor('the stock released', async () => ((await stockOf(product.id)).available === before.available ? true : undefined));
  });

  it('refuses to cancel an order after dispatch with CANCELLATION_REFUSED (ALREADY_DISPATCHED)', async () => {
    const id = await place([{ productId: inStock[5]!.id, quantity: 1 }]);
    await untilStatus(id, 'CONFIRMED', (o) => o.shipment?.status === 'CREATED');
    await advance(id, 'DISPATCHED');
    await untilStatus(id, 'SHIPPED');
    const cancel = await graphql(stack.gatewayUrl, { query: `mutation { cancelOrder(id: "${id}") { status } }`, token: customer });
    expect(errorCodes(cancel)).toEqual(['CANCELLATION_REFUSED']);
    expect(cancel.errors![0]!.extensions).toMatchObject({ reason: 'ALREADY_DISPATCHED' });
  });

  it("prices an order of a demo product at the price an admin set, once orders has applied the seeded product's first change", async () => {
    const product = inStock[6]!;
    const newPrice = product.price + 100;
    const changed = await graphql(stack.gatewayUrl, { query: `mutation { updateProductPrice(id: "${product.id}", price: ${newPrice}) { price } }`, token: admin });
    expect(changed.errors).toBeUndefined();
    // The demo products were seeded without events: version 2 must not wait for a version 1 that never comes.
    const prices = connectOrdersDatabase(stack.databaseUrls.orders).db;
    try {
      await waitFor('the new price in orders', async () => ((await prices.productPrice.findUnique({ where: { productId: product.id } }))?.price === newPrice ? true : undefined));
    } finally {
      await prices.$disconnect();
    }
    const id = await place([{ productId: product.id, quantity: 1 }]);
    expect((await read(id)).data!.order.total).toBe(newPrice);
  });

  it("shows a customer only their own orders: someone else's is FORBIDDEN, and their list is their own", async () => {
    const id = await place([{ productId: inStock[6]!.id, quantity: 1 }]);
    const foreign = await read(id, otherCustomer);
    expect(foreign.data?.order ?? null).toBeNull();
    expect(errorCodes(foreign)).toContain('FORBIDDEN');
    const cancel = await graphql(stack.gatewayUrl, { query: `mutation { cancelOrder(id: "${id}") { status } }`, token: otherCustomer });
    expect(errorCodes(cancel)).toEqual(['NOT_FOUND']);
    // The list is a projection: it catches up with a new order within moments.
    await waitFor('the order in the customer list', async () => {
      const mine = await graphql(stack.gatewayUrl, { query: '{ me { orders(first: 50) { edges { node { id } } } } }', token: customer });
      return mine.data?.me.orders.edges.some((e: { node: { id: string } }) => e.node.id === id) ? true : undefined;
    });
    const theirs = await graphql(stack.gatewayUrl, { query: '{ me { orders(first: 50) { edges { node { id } } } } }', token: otherCustomer });
    expect(theirs.data?.me ?? null).toBeNull();
  });
});

describe('inventory never oversells through the whole saga', { timeout: 180_000 }, () => {
  let stack: Stack;
  let customer: string;
  let admin: string;
  beforeAll(async () => {
    // Deadlines far beyond the race's duration: this is about oversell, not about speed.
    stack = await startStack({ eventBus: 'postgres', sagaStepTimeoutMs: 120_000 });
    await seedDemoData(stack.databaseUrls);
    customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
    admin = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] }); // reserved: admins only
  }, 120_000);
  afterAll(() => stack?.stop());

  async function place(lines: { productId: string; quantity: number }[]) {
    // 100 at once may meet a full writers' queue on a busy machine: the client retries, as told.
    const response = await graphqlRetryingOverload(stack.gatewayUrl, {
      query: `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }`,
      variables: { input: { lines, shippingAddress: address, paymentToken: 'tok_visa', idempotencyKey: randomUUID() } },
      token: customer,
    });
    expect(response.errors).toBeUndefined();
    return response.data!.placeOrder.id as string;
  }

  async function stockOf(productId: string) {
    return (await graphql(stack.gatewayUrl, { query: `{ product(id: "${productId}") { stock { available reserved } } }`, token: admin })).data!.product.stock as { available: number; reserved: number };
  }

  it('gives exactly 10 CONFIRMED and 90 REJECTED for 100 concurrent orders of a product with 10 units', async () => {
    const product = inStock[7]!;
    const stock = connectInventoryDatabase(stack.databaseUrls.inventory).db;
    try {
      await stock.stockItem.update({ where: { productId: product.id }, data: { available: 10, reserved: 0 } });
      const ids = await Promise.all(Array.from({ length: 100 }, () => place([{ productId: product.id, quantity: 1 }])));
      // Read 20 orders per request: the gateway's default alias limit (GATEWAY_MAX_ALIASES).
      const chunks = Array.from({ length: 5 }, (_, chunk) => ids.slice(chunk * 20, chunk * 20 + 20));
      const statuses = await waitFor('every order decided', async () => {
        const responses = await Promise.all(
          chunks.map((chunk) => graphql(stack.gatewayUrl, { query: `{ ${chunk.map((id, i) => `o${i}: order(id: "${id}") { status }`).join(' ')} }`, token: customer })),
        );
        const all = responses.flatMap((response) => Object.values(response.data ?? {}).map((order) => (order as { status: string }).status));
        return all.length === 100 && all.every((status) => status !== 'PENDING') ? all : undefined;
      }, 150_000);
      const counts = statuses.reduce<Record<string, number>>((acc, status) => ({ ...acc, [status]: (acc[status] ?? 0) + 1 }), {});
      expect(counts).toEqual({ CONFIRMED: 10, REJECTED: 90 });
      expect(statuses.filter((status) => status === 'CONFIRMED')).toHaveLength(10);
      expect(statuses.filter((status) => status === 'REJECTED')).toHaveLength(90);
      expect(await stockOf(product.id)).toEqual({ available: 0, reserved: 10 });
    } finally {
      await stock.$disconnect();
    }
  });
});
