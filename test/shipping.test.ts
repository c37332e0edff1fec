import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreateShipment } from '../platform/events/contracts/order-saga.ts';
import type { EventEnvelope } from '../platform/events/envelope.ts';
import type { Identity } from '../platform/identity/identity.ts';
import { carrier, trackingNumberOf } from '../subgraphs/shipping/domain/shipment.ts';
import { startShippingSubgraph } from '../subgraphs/shipping/subgraph.ts';
import { sagaCommand, startContextHarness, type ContextHarness } from './support/context-harness.ts';
import { errorCodes } from './support/graphql.ts';
import type { TestBusKind } from './support/stack.ts';

const eventTypes = ['ShipmentCreated', 'ShipmentCancelled', 'ShipmentDispatched', 'ShipmentInTransit', 'ShipmentDelivered'];
const admin: Identity = { customerId: randomUUID(), roles: ['customer', 'admin'] };
const advanceMutation = `mutation ($orderId: ID!, $to: ShipmentStatus!) {
  advanceShipment(orderId: $orderId, to: $to) { id carrier trackingNumber status history { status at } }
}`;

function startShipping(bus: TestBusKind): Promise<ContextHarness> {
  return startContextHarness({ context: 'shipping', bus, start: startShippingSubgraph, observe: eventTypes });
}

function createCommand(orderId: string, customerId: string = randomUUID()): CreateShipment {
  return {
    orderId,
    customerId,
    address: { name: 'Ada Lovelace', line1: '12 St James Square', line2: null, city: 'London', postalCode: 'SW1Y 4JH', country: 'GB' },
    lines: [
      { productId: randomUUID(), quantity: 2 },
      { productId: randomUUID(), quantity: 1 },
    ],
  };
}

/** What a test needs of one shipping harness. */
function helpers(shipping: () => ContextHarness) {
  const eventsOf = (orderId: string) => shipping().observed.filter((event) => event.aggregateId === orderId);
  return {
    eventsOf,
    typesOf: (orderId: string) => eventsOf(orderId).map((event) => [event.type, event.aggregateVersion]),
    async nthEvent(orderId: string, count: number): Promise<EventEnvelope> {
      await shipping().waitForEvent(`event ${count} of ${orderId}`, () => eventsOf(orderId).length >= count);
      return eventsOf(orderId)[count - 1]!;
    },
    advance: (orderId: string, to: string, identity: Identity | null = admin) => shipping().query({ query: advanceMutation, variables: { orderId, to }, identity }),
  };
}

describe.each<TestBusKind>(['postgres', 'nats'])('shipping answers the order saga on the %s bus', (busKind) => {
  let shipping: ContextHarness;
  const { eventsOf, typesOf, nthEvent, advance } = helpers(() => shipping);

  beforeAll(async () => {
    shipping = await startShipping(busKind);
  });
  afterAll(() => shipping?.stop());

  it('creates a shipment with a tracking number derived from the order, and replies ShipmentCreated as its version 1', async () => {
    const orderId = randomUUID();
    const command = sagaCommand('CreateShipment', createCommand(orderId), 1);
    await shipping.publish(command);
    const reply = await nthEvent(orderId, 1);
    const [row] = await shipping.sql('SELECT * FROM shipments WHERE order_id = $1', [orderId]);
    expect(reply).toMatchObject({
      type: 'ShipmentCreated',
      source: 'shipping',
      aggregateType: 'Shipment',
      aggregateVersion: 1,
      payload: { orderId, shipmentId: row!.id, carrier, trackingNumber: trackingNumberOf(orderId) },
      correlationId: command.correlationId,
      causationId: command.eventId,
    });
    expect(trackingNumberOf(orderId)).toMatch(/^CSG\d{16}$/);
    expect(row).toMatchObject({ status: 'CREATED', version: 1, recipient_name: 'Ada Lovelace', city: 'London', postal_code: 'SW1Y 4JH', country: 'GB', address_line2: null });
    const lines = await shipping.sql('SELECT product_id, quantity FROM shipment_lines WHERE shipment_id = $1 ORDER BY quantity DESC', [row!.id]);
    expect(lines.map((line) => line.quantity)).toEqual([2, 1]);
    expect(await shipping.sql('SELECT status, version FROM shipment_status_changes WHERE shipment_id = $1', [row!.id])).toEqual([{ status: 'CREATED', version: 1 }]);
  });

  it('answers another CreateShipment with the same shipment, and applies a re-sent one once', async () => {
    const orderId = randomUUID();
    const command = sagaCommand('CreateShipment', createCommand(orderId), 1);
    await shipping.publish(command);
    const original = await nthEvent(orderId, 1);
    await shipping.publish(command);
    await shipping.publish(sagaCommand('CreateShipment', createCommand(orderId), 3, { eventId: randomUUID() }));
    const again = await nthEvent(orderId, 2);
    expect(again).toMatchObject({ type: 'ShipmentCreated', aggregateVersion: 1, payload: original.payload });
    expect(typesOf(orderId)).toEqual([['ShipmentCreated', 1], ['ShipmentCreated', 1]]);
    expect(await shipping.sql('SELECT count(*)::int AS n FROM shipments WHERE order_id = $1', [orderId])).toEqual([{ n: 1 }]);
  });

  it('cancels a shipment not yet dispatched, answers a repeated cancel again, and replies nothing to a cancel of no shipment', async () => {
    const orderId = randomUUID();
    await shipping.publish(sagaCommand('CancelShipment', { orderId }, 1));
    await shipping.publish(sagaCommand('CreateShipment', createCommand(orderId), 2));
    await shipping.publish(sagaCommand('CancelShipment', { orderId }, 3, { eventId: randomUUID() }));
    await shipping.publish(sagaCommand('CancelShipment', { orderId }, 4, { eventId: randomUUID() }));
    await nthEvent(orderId, 3);
    expect(typesOf(orderId)).toEqual([['ShipmentCreated', 1], ['ShipmentCancelled', 2], ['ShipmentCancelled', 2]]);
    const history = await shipping.sql('SELECT h.status FROM shipment_status_changes h JOIN shipments s ON s.id = h.shipment_id WHERE s.order_id = $1 ORDER BY h.version', [orderId]);
    expect(history.map((change) => change.status)).toEqual(['CREATED', 'CANCELLED']);
  });

  it('leaves a dispatched shipment alone when the saga cancels it', async () => {
    const orderId = randomUUID();
    await shipping.publish(sagaCommand('CreateShipment', createCommand(orderId), 1));
    await nthEvent(orderId, 1);
    expect((await advance(orderId, 'DISPATCHED')).errors).toBeUndefined();
    await shipping.publish(sagaCommand('CancelShipment', { orderId }, 2));
    // Answered again once the cancel before it was handled.
    await shipping.publish(sagaCommand('CreateShipment', createCommand(orderId), 3, { eventId: randomUUID() }));
    await nthEvent(orderId, 3);
    expect(typesOf(orderId)).toEqual([['ShipmentCreated', 1], ['ShipmentDispatched', 2], ['ShipmentCreated', 1]]);
    expect(await shipping.sql('SELECT status FROM shipments WHERE order_id = $1', [orderId])).toEqual([{ status: 'DISPATCHED' }]);
  });

  it('advances CREATED → DISPATCHED → IN_TRANSIT → DELIVERED, one event per step, with its history', async () => {
    const orderId = randomUUID();
    await shipping.publish(sagaCommand('CreateShipment', createCommand(orderId), 1));
    const created = await nthEvent(orderId, 1);
    let last: Record<string, any> | undefined;
    for (const to of ['DISPATCHED', 'IN_TRANSIT', 'DELIVERED']) {
      const response = await advance(orderId, to);
      expect(response.errors).toBeUndefined();
      last = response.data!.advanceShipment;
      expect(last!.status).toBe(to);
    }
    expect(last).toMatchObject({ id: created.payload.shipmentId, carrier, trackingNumber: trackingNumberOf(orderId) });
    expect(last!.history.map((change: { status: string }) => change.status)).toEqual(['CREATED', 'DISPATCHED', 'IN_TRANSIT', 'DELIVERED']);
    const instants = last!.history.map((change: { at: string }) => Date.parse(change.at));
    expect(instants).toEqual([...instants].sort((a, b) => a - b));
    await nthEvent(orderId, 4);
    expect(typesOf(orderId)).toEqual([['ShipmentCreated', 1], ['ShipmentDispatched', 2], ['ShipmentInTransit', 3], ['ShipmentDelivered', 4]]);
    expect(eventsOf(orderId)[3]!.payload).toEqual({ orderId, shipmentId: created.payload.shipmentId });
  });
});

describe('shipping through GraphQL: the carrier moves and who may read a shipment', () => {
  let shipping: ContextHarness;
  const { nthEvent, advance } = helpers(() => shipping);
  const customer: Identity = { customerId: randomUUID(), roles: ['customer'] };
  const stranger: Identity = { customerId: randomUUID(), roles: ['customer'] };
  const orders: string[] = [randomUUID(), randomUUID(), randomUUID()];

  beforeAll(async () => {
    shipping = await startShipping('postgres');
    for (const orderId of orders) await shipping.publish(sagaCommand('CreateShipment', createCommand(orderId, customer.customerId!), 1));
    for (const orderId of orders) await nthEvent(orderId, 1);
  });
  afterAll(() => shipping?.stop());

  async function createShipment(): Promise<string> {
    const orderId = randomUUID();
    await shipping.publish(sagaCommand('CreateShipment', createCommand(orderId), 1));
    await nthEvent(orderId, 1);
    return orderId;
  }

  const outboxCount = async () => (await shipping.sql<{ n: number }>('SELECT count(*)::int AS n FROM outbox_events'))[0]!.n;

  it('refuses every move but the next step with CONFLICT, and writes no event then', async () => {
    const orderId = await createShipment();
    const cancelled = await createShipment();
    await shipping.publish(sagaCommand('CancelShipment', { orderId: cancelled }, 2));
    await nthEvent(cancelled, 2);
    const before = await outboxCount();
    for (const to of ['IN_TRANSIT', 'DELIVERED', 'CREATED', 'CANCELLED']) {
      const response = await advance(orderId, to);
      expect(errorCodes(response)).toEqual(['CONFLICT']);
      expect(response.data).toBeNull();
    }
    expect(errorCodes(await advance(cancelled, 'DISPATCHED'))).toEqual(['CONFLICT']);
    for (const to of ['DISPATCHED', 'IN_TRANSIT', 'DELIVERED']) expect((await advance(orderId, to)).errors).toBeUndefined();
    const after = await outboxCount();
    for (const to of ['DISPATCHED', 'IN_TRANSIT', 'DELIVERED']) {
      const response = await advance(orderId, to);
      expect(errorCodes(response)).toEqual(['CONFLICT']);
      expect(response.errors![0]!.message).toMatch(/is delivered/);
    }
    expect(after - before).toBe(3);
    expect(await outboxCount()).toBe(after);
  });

  it('answers NOT_FOUND for an order without shipment and BAD_USER_INPUT for a malformed order id', async () => {
    expect(errorCodes(await advance(randomUUID(), 'DISPATCHED'))).toEqual(['NOT_FOUND']);
    expect(errorCodes(await advance('order-1', 'DISPATCHED'))).toEqual(['BAD_USER_INPUT']);
  });

  it('lets only admins move a shipment: FORBIDDEN for customers, UNAUTHENTICATED for anonymous callers', async () => {
    expect(errorCodes(await advance(orders[0]!, 'DISPATCHED', customer))).toEqual(['FORBIDDEN']);
    expect(errorCodes(await advance(orders[0]!, 'DISPATCHED', { customerId: null, roles: [] }))).toEqual(['UNAUTHENTICATED']);
    expect(await shipping.sql('SELECT status FROM shipments WHERE order_id = $1', [orders[0]])).toEqual([{ status: 'CREATED' }]);
  });

  const selection = 'id shipment { id carrier trackingNumber status history { status at } }';
  function fetchOrders(ids: string[], identity: Identity | null) {
    return shipping.query({
      query: `query ($representations: [_Any!]!) { _entities(representations: $representations) { ... on Order { ${selection} } } }`,
      variables: { representations: ids.map((id) => ({ __typename: 'Order', id })) },
      identity,
    });
  }

  it("shows a shipment to the order's customer and to admins", async () => {
    for (const identity of [customer, admin]) {
      const response = await fetchOrders([orders[1]!], identity);
      expect(response.errors).toBeUndefined();
      expect(response.data!._entities[0]).toMatchObject({
        id: orders[1],
        shipment: { carrier, trackingNumber: trackingNumberOf(orders[1]!), status: 'CREATED', history: [{ status: 'CREATED' }] },
      });
    }
  });

  it('answers shipment: null and FORBIDDEN to other customers and anonymous callers, and 401 without the gateway', async () => {
    for (const identity of [stranger, { customerId: null, roles: [] }] satisfies Identity[]) {
      const response = await fetchOrders([orders[1]!], identity);
      expect(response.data!._entities).toEqual([{ id: orders[1], shipment: null }]);
      expect(errorCodes(response)).toEqual(['FORBIDDEN']);
    }
    expect((await fetchOrders([orders[1]!], null)).status).toBe(401);
  });

  for (const length of [1, 7, 40]) {
    it(`resolves ${length} order reference(s), history included, with one SQL statement`, async () => {
      const ids = Array.from({ length }, (_, i) => (i % 5 === 3 ? randomUUID() : i % 5 === 4 ? `nope-${i}` : orders[i % orders.length]!));
      const before = shipping.subgraph.statements.count;
      const response = await fetchOrders(ids, admin);
      expect(shipping.subgraph.statements.count - before).toBe(1);
      expect(response.errors).toBeUndefined();
      expect(response.data!._entities.map((order: { shipment: unknown }) => order.shipment !== null)).toEqual(ids.map((id) => orders.includes(id)));
    });
  }
});
