/**
 * A customer's cancellation against the carrier's dispatch, in every order they can meet
 * (issue 12): the cancel reaching shipping first, the dispatch known to orders first, the two
 * crossing (the cancel asked for, its CancelShipment still on the way when the parcel leaves),
 * and the two racing. Whatever the order, an order ends one way or the other as a whole:
 * CANCELLED with its payment voided, its shipment cancelled and its stock back on sale, or
 * SHIPPED with its payment captured, its shipment dispatched and its stock committed.
 *
 * The crossing is made deterministic by holding the orders outbox: with its relay stopped,
 * orders can still take the cancel (CANCELLING) and hear shipping's ShipmentDispatched, but the
 * CancelShipment it wrote waits in its outbox until a new relay is started.
 */
import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { OutboxRelay } from '../platform/events/relay.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { connectInventoryDatabase, type InventoryDatabase } from '../subgraphs/inventory/infrastructure/database.ts';
import type { RunningOrdersSubgraph } from '../subgraphs/orders/subgraph.ts';
import { errorCodes, graphql, graphqlRetryingOverload, type GraphQLResponse } from './support/graphql.ts';
import { inStockProducts as inStock, testAddress } from './support/orders.ts';
import { startStack, type Stack, type TestBusKind } from './support/stack.ts';
import { recordSubscription, type Received } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

/** What a client sees of the order and of both sides of the race. */
const orderFields = `id status reason
  cancellation { outcome refusalReason }
  payment { status }
  shipment { status }`;

const watchCancellation = `subscription ($id: ID!) { orderStatusChanged(orderId: $id) { ${orderFields} } }`;

interface OrderRead {
  id: string;
  status: string;
  reason: string | null;
  cancellation: { outcome: string; refusalReason: string | null } | null;
  payment: { status: string } | null;
  shipment: { status: string } | null;
}

describe.each<TestBusKind>(['postgres', 'nats'])('cancelling an order while the carrier dispatches it, on the %s bus', { timeout: 60_000 }, (busKind) => {
  let stack: Stack;
  let orders: RunningOrdersSubgraph;
  let inventory: InventoryDatabase;
  let customer: string;
  let admin: string;
  let client: Client;
  /** The relay started in place of the one the crossing test stopped. */
  let replacementRelay: OutboxRelay | undefined;

  beforeAll(async () => {
    stack = await startStack({ eventBus: busKind });
    await seedDemoData(stack.databaseUrls);
    orders = stack.subgraphs.orders as RunningOrdersSubgraph;
    inventory = connectInventoryDatabase(stack.databaseUrls.inventory, 1).db;
    customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
    admin = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] });
    client = createClient({ url: stack.gatewayUrl.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams: { Authorization: `Bearer ${customer}` } });
  }, 120_000);
  afterAll(async () => {
    await client?.dispose();
    await replacementRelay?.stop();
    await inventory?.$disconnect();
    await stack?.stop();
  });

  async function place(productId: string, quantity = 1): Promise<string> {
    const response = await graphqlRetryingOverload(stack.gatewayUrl, {
      query: `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }`,
      variables: { input: { lines: [{ productId, quantity }], shippingAddress: testAddress, paymentToken: 'tok_visa', idempotencyKey: randomUUID() } },
      token: customer,
    });
    expect(response.errors).toBeUndefined();
    return response.data!.placeOrder.id as string;
  }

  const readResponse = (id: string) => graphql<{ order: OrderRead | null }>(stack.gatewayUrl, { query: `query ($id: ID!) { order(id: $id) { ${orderFields} } }`, variables: { id }, token: customer });

  async function read(id: string): Promise<OrderRead> {
    const response = await readResponse(id);
    expect(response.errors).toBeUndefined();
    return response.data!.order!;
  }

  /**
   * Waits for the order to read as `settled`; on timeout the error shows how it last read. A read
   * that fails (a busy shared database server) is read again, as a client would.
   */
  async function until(id: string, what: string, settled: (order: OrderRead) => boolean, timeoutMs = 30_000): Promise<OrderRead> {
    let last: unknown;
    try {
      return await waitFor(
        `order ${what}`,
        async () => {
          const response = await readResponse(id);
          last = response.errors ?? response.data?.order;
          const order = response.data?.order;
          return order && settled(order) ? order : undefined;
        },
        timeoutMs,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; it last read ${JSON.stringify(last)}`);
    }
  }

  const confirmed = (id: string) => until(id, 'CONFIRMED with its shipment created', (o) => o.status === 'CONFIRMED' && o.shipment?.status === 'CREATED' && o.payment?.status === 'AUTHORIZED');

  const cancel = (id: string) => graphqlRetryingOverload(stack.gatewayUrl, { query: `mutation ($id: ID!) { cancelOrder(id: $id) { id status } }`, variables: { id }, token: customer });

  const dispatch = (id: string) => graphqlRetryingOverload(stack.gatewayUrl, { query: `mutation ($id: ID!) { advanceShipment(orderId: $id, to: DISPATCHED) { status } }`, variables: { id }, token: admin });

  async function stockOf(productId: string): Promise<{ available: number; reserved: number }> {
    return (await graphql(stack.gatewayUrl, { query: `query ($id: ID!) { product(id: $id) { stock { available reserved } } }`, variables: { id: productId }, token: admin })).data!.product.stock;
  }

  /** The statuses of the order's reservation lines, once none is RESERVED any more (the saga's last stock command has landed). */
  const settledLines = (orderId: string) =>
    waitFor(`the stock of order ${orderId} released or committed`, async () => {
      const lines = await inventory.stockReservation.findMany({ where: { orderId } });
      return lines.length > 0 && lines.every((line) => line.status !== 'RESERVED') ? lines.map((line) => line.status) : undefined;
    });

  /** Subscribes as the customer and waits for the first event (the order as it is), so that nothing later is missed. */
  async function watch(id: string): Promise<Received> {
    const received = recordSubscription(client, watchCancellation, { id });
    await waitFor('the first event of the subscription', () => (received.data.length > 0 || received.errors.length > 0 ? true : undefined));
    expect(received.errors).toEqual([]);
    return received;
  }

  const statuses = (received: Received) => received.data.map((event) => event.orderStatusChanged.status as string);

  /** Statuses in the order they were first seen, repeats (observations of payment or shipment) dropped. */
  const distinctStatuses = (received: Received) => statuses(received).filter((status, index, all) => index === 0 || all[index - 1] !== status);

  /** Waits until the subscriber's last event shows what a fresh query shows, once the order is settled. */
  async function subscriberCaughtUp(received: Received, settled: OrderRead) {
    await waitFor('the subscriber to see the settled order', () => {
      const last = received.data.at(-1)?.orderStatusChanged;
      return JSON.stringify(last) === JSON.stringify(settled) ? true : undefined;
    });
  }

  it('cancels the order when the cancel reaches shipping before the dispatch, and the later dispatch answers CONFLICT', async () => {
    const product = inStock[0]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 2);
    await confirmed(id);
    const received = await watch(id);

    const cancelled = await cancel(id);
    expect(cancelled.errors).toBeUndefined();
    expect(cancelled.data!.cancelOrder).toEqual({ id, status: 'CANCELLING' });

    const settled = await until(id, 'CANCELLED, payment voided, shipment cancelled', (o) => o.status === 'CANCELLED' && o.payment?.status === 'VOIDED' && o.shipment?.status === 'CANCELLED');
    expect(settled).toEqual({ id, status: 'CANCELLED', reason: 'CUSTOMER_CANCELLED', cancellation: { outcome: 'ACCEPTED', refusalReason: null }, payment: { status: 'VOIDED' }, shipment: { status: 'CANCELLED' } });
    expect(await settledLines(id)).toEqual(['RELEASED']);
    expect(await stockOf(product.id)).toEqual(before);

    const late = await dispatch(id);
    expect(errorCodes(late)).toEqual(['CONFLICT']);
    expect((await read(id)).status).toBe('CANCELLED');

    await subscriberCaughtUp(received, settled);
    expect(received.errors).toEqual([]);
    expect(distinctStatuses(received)).toEqual(['CONFIRMED', 'CANCELLING', 'CANCELLED']);
    received.dispose();
  });

  it('refuses the cancel with CANCELLATION_REFUSED (ALREADY_DISPATCHED) and writes nothing when orders knows of the dispatch first', async () => {
    const product = inStock[1]!;
    const before = await stockOf(product.id);
    const id = await place(product.id);
    await confirmed(id);
    expect((await dispatch(id)).errors).toBeUndefined();
    await until(id, 'SHIPPED, payment captured', (o) => o.status === 'SHIPPED' && o.payment?.status === 'CAPTURED');
    expect(await settledLines(id)).toEqual(['COMMITTED']);
    // Quiet: payments shows the capture before its reply reaches orders, which records it on the order.
    const { version } = await waitFor('orders to record the capture', async () => {
      const loaded = await orders.store.load(id);
      return loaded.order?.paymentStatus === 'CAPTURED' ? loaded : undefined;
    });

    const refused = await cancel(id);
    expect(refused.errors?.map((error) => ({ code: error.extensions?.code, reason: error.extensions?.reason }))).toEqual([{ code: 'CANCELLATION_REFUSED', reason: 'ALREADY_DISPATCHED' }]);
    expect((await orders.store.load(id)).version).toBe(version);
    expect(await read(id)).toEqual({ id, status: 'SHIPPED', reason: null, cancellation: null, payment: { status: 'CAPTURED' }, shipment: { status: 'DISPATCHED' } });
    expect(await stockOf(product.id)).toEqual({ available: before.available - 1, reserved: before.reserved });
  });

  it('refuses the cancellation and ships the order when the parcel leaves while CancelShipment is still on its way to shipping', async () => {
    const product = inStock[2]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 2);
    await confirmed(id);
    const received = await watch(id);

    // Hold what orders sends: the cancel's CancelShipment waits in its outbox.
    await stack.subgraphs.orders.relay!.stop();
    const requested = await cancel(id);
    expect(requested.errors).toBeUndefined();
    expect(requested.data!.cancelOrder).toEqual({ id, status: 'CANCELLING' });
    expect(await read(id)).toMatchObject({ status: 'CANCELLING', cancellation: { outcome: 'PENDING', refusalReason: null } });

    expect((await dispatch(id)).errors).toBeUndefined();
    // Orders hears of the dispatch (shipping's outbox is not held): the request is refused.
    await until(id, 'SHIPPED with the cancellation refused', (o) => o.status === 'SHIPPED');
    expect(await read(id)).toMatchObject({ status: 'SHIPPED', reason: null, cancellation: { outcome: 'REFUSED', refusalReason: 'ALREADY_DISPATCHED' } });

    // Release the outbox: CancelShipment finds the parcel gone; capture and commit go through.
    replacementRelay = new OutboxRelay({ name: 'orders', databaseUrl: stack.databaseUrls.orders, publish: (event) => stack.eventBus!.publish(event), pollIntervalMs: 200 }).start();
    const settled = await until(id, 'SHIPPED, payment captured', (o) => o.status === 'SHIPPED' && o.payment?.status === 'CAPTURED');
    expect(settled).toEqual({ id, status: 'SHIPPED', reason: null, cancellation: { outcome: 'REFUSED', refusalReason: 'ALREADY_DISPATCHED' }, payment: { status: 'CAPTURED' }, shipment: { status: 'DISPATCHED' } });
    expect(await settledLines(id)).toEqual(['COMMITTED']);
    expect(await stockOf(product.id)).toEqual({ available: before.available - 2, reserved: before.reserved });
    await waitFor('the outbox of orders drained', async () => ((await replacementRelay!.backlog()) === 0 ? true : undefined));
    expect((await read(id)).shipment).toEqual({ status: 'DISPATCHED' });

    await subscriberCaughtUp(received, settled);
    expect(received.errors).toEqual([]);
    expect(distinctStatuses(received)).toEqual(['CONFIRMED', 'CANCELLING', 'SHIPPED']);
    received.dispose();
  });

  it('ends every order either wholly cancelled or wholly shipped when the cancel and the dispatch race each other, and loses no stock', async () => {
    const products = [inStock[3]!, inStock[4]!, inStock[5]!];
    const ids: string[] = [];
    for (let n = 0; n < 8; n++) ids.push(await place(products[n % products.length]!.id));
    await Promise.all(ids.map((id) => confirmed(id)));

    // Fired together, the dispatch (one write at shipping) always wins over the cancel (which
    // travels through two outboxes and the bus). So the two are fired up to 500 ms apart one way
    // and 1.25 s the other, 250 ms apart from one order to the next: the races spread over the
    // journeys of both the cancel and ShipmentDispatched, and every end of them is met. The
    // delays vary the interleaving only; nothing below depends on which way a race went.
    const answers = await Promise.all(ids.map(async (id, n) => {
      const dispatchLagMs = (n - 2) * 250;
      const [cancelled, dispatched] = await Promise.all([delay(Math.max(0, -dispatchLagMs)).then(() => cancel(id)), delay(Math.max(0, dispatchLagMs)).then(() => dispatch(id))]);
      return { id, cancelled, dispatched };
    }));

    const outcomes = { CANCELLED: 0, 'SHIPPED, the request refused by the saga': 0, 'SHIPPED, CANCELLATION_REFUSED at once': 0 };
    for (const { id, cancelled, dispatched } of answers) {
      // Settled: no side of the race still in flight (no status, payment, shipment or stock line left midway).
      const order = await until(id, 'settled after the race', (o) => ['CANCELLED', 'SHIPPED'].includes(o.status) && o.payment?.status !== 'AUTHORIZED' && o.shipment?.status !== 'CREATED');
      const lines = await settledLines(id);
      if (order.status === 'CANCELLED') {
        expect({ order, lines, dispatch: errorCodes(dispatched), cancel: cancelOutcome(cancelled) }).toEqual({
          order: { id, status: 'CANCELLED', reason: 'CUSTOMER_CANCELLED', cancellation: { outcome: 'ACCEPTED', refusalReason: null }, payment: { status: 'VOIDED' }, shipment: { status: 'CANCELLED' } },
          lines: ['RELEASED'],
          dispatch: ['CONFLICT'],
          cancel: 'CANCELLING',
        });
        outcomes.CANCELLED++;
      } else {
        const refusedAtOnce = cancelOutcome(cancelled) === 'CANCELLATION_REFUSED';
        expect({ order, lines, dispatch: dispatched.errors, cancel: cancelOutcome(cancelled) }).toEqual({
          order: {
            id,
            status: 'SHIPPED',
            reason: null,
            // Refused at once: orders knew of the dispatch and wrote nothing; else the request was asked, then refused.
            cancellation: refusedAtOnce ? null : { outcome: 'REFUSED', refusalReason: 'ALREADY_DISPATCHED' },
            payment: { status: 'CAPTURED' },
            shipment: { status: 'DISPATCHED' },
          },
          lines: ['COMMITTED'],
          dispatch: undefined,
          cancel: refusedAtOnce ? 'CANCELLATION_REFUSED' : 'CANCELLING',
        });
        outcomes[refusedAtOnce ? 'SHIPPED, CANCELLATION_REFUSED at once' : 'SHIPPED, the request refused by the saga']++;
      }
    }
    console.log(`[measure] ${busKind} bus: of ${ids.length} orders cancelled and dispatched in a race: ${Object.entries(outcomes).map(([way, count]) => `${count} ${way}`).join('; ')}`);

    // Conservation: every unit seeded is on sale, held, or left with a parcel.
    for (const product of products) {
      const item = await inventory.stockItem.findUniqueOrThrow({ where: { productId: product.id } });
      const gone = await inventory.stockReservation.aggregate({ where: { productId: product.id, status: { in: ['COMMITTED', 'WRITTEN_OFF'] } }, _sum: { quantity: true } });
      expect({ product: product.id, units: item.available + item.reserved + (gone._sum.quantity ?? 0) }).toEqual({ product: product.id, units: demoProducts.find((p) => p.id === product.id)!.stock });
    }
  }, 120_000);
});

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What cancelOrder answered: the status it returned, or its one error's code. */
function cancelOutcome(response: GraphQLResponse): string | undefined {
  if (response.errors) {
    expect(response.errors).toHaveLength(1);
    const [error] = response.errors;
    if (error!.extensions?.code === 'CANCELLATION_REFUSED') expect(error!.extensions?.reason).toBe('ALREADY_DISPATCHED');
    return error!.extensions?.code as string | undefined;
  }
  return response.data?.cancelOrder?.status as string | undefined;
}
