/**
 * Stock reservations for the order saga, as the orders context meets them: commands sent as
 * envelopes on a real bus (with the deterministic ids of the saga's contract), replies observed
 * on that bus by a consumer of their own, and stock read in the inventory database and through
 * the gateway. The race for the last units runs twice: through the bus, where the `inventory`
 * consumer handles one command at a time, and at the repository, with transactions truly
 * concurrent on separate connections.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Subscription } from '../platform/events/bus.ts';
import { commandId, type OrderLineQuantity, type SagaCommandType } from '../platform/events/contracts/order-saga.ts';
import { createEnvelope, type Causation, type EventEnvelope } from '../platform/events/envelope.ts';
import { demoProducts } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { connectInventoryDatabase, type InventoryDatabase } from '../subgraphs/inventory/infrastructure/database.ts';
import { reservationReplyTypes } from '../subgraphs/inventory/domain/reservation-replies.ts';
import {
  InvalidSagaCommand,
  receiveReturnedStockCommand,
  reserveStockCommand,
  restockReturnCommand,
  writeOffReturnCommand,
} from '../subgraphs/inventory/domain/stock-reservation.ts';
import { reserveStock, type ReservationOutcome } from '../subgraphs/inventory/infrastructure/stock-reservations.ts';
import { testDatabases } from './support/events.ts';
import { graphql } from './support/graphql.ts';
import { startStack, type Stack, type TestBusKind } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

const inventoryReplies = [...reservationReplyTypes];

const newCausation = (): Causation => ({ correlationId: `req-${randomUUID()}`, causationId: randomUUID() });

/** A product with a stock record of `available` units and nothing reserved. */
async function givenStock(db: InventoryDatabase, available: number): Promise<string> {
  const productId = randomUUID();
  await db.stockItem.create({ data: { productId, available } });
  return productId;
}

async function stockOf(db: InventoryDatabase, productId: string) {
  return db.stockItem.findUniqueOrThrow({ where: { productId }, select: { available: true, reserved: true } });
}

async function reservationsOf(db: InventoryDatabase, orderId: string) {
  const rows = await db.stockReservation.findMany({ where: { orderId }, orderBy: { productId: 'asc' } });
  return rows.map(({ productId, quantity, status }) => ({ productId, quantity, status }));
}

const byProduct = (a: { productId: string }, b: { productId: string }) => (a.productId < b.productId ? -1 : 1);

/**
 * Every unit of a product, wherever it is: on sale (available), on the shelf but not for sale
 * (reserved: held for orders and returns), gone with an order (COMMITTED) or written off.
 */
async function unitsAccountedFor(db: InventoryDatabase, productId: string): Promise<number> {
  const { available, reserved } = await stockOf(db, productId);
  const { _sum } = await db.stockReservation.aggregate({ where: { productId, status: { in: ['COMMITTED', 'WRITTEN_OFF'] } }, _sum: { quantity: true } });
  return available + reserved + (_sum.quantity ?? 0);
}

describe.each<TestBusKind>(['postgres', 'nats'])('stock reservations for the order saga, on the %s bus', (busKind) => {
  let stack: Stack;
  let db: InventoryDatabase;
  let observer: Subscription;
  const observed: EventEnvelope[] = [];

  beforeAll(async () => {
    stack = await startStack({ eventBus: busKind });
    await seedDemoData(stack.databaseUrls);
    db = connectInventoryDatabase(stack.databaseUrls.inventory).db;
    // The orders context's side of the saga, listening in: it sees every reply inventory sends.
    observer = await stack.eventBus!.subscribe(`observer${randomBytes(3).toString('hex')}`, { types: inventoryReplies }, async (event) => void observed.push(event));
  });
  afterAll(async () => {
    await observer?.stop();
    await db?.$disconnect();
    await stack?.stop();
  });

  /** A saga command as the orders context sends it: version `version` of the order, the contract's id. */
  function command(type: SagaCommandType, orderId: string, version: number, payload: Record<string, unknown> = {}): EventEnvelope {
    const envelope = createEnvelope('orders', { type, aggregateType: 'Order', aggregateId: orderId, aggregateVersion: version, payload: { orderId, ...payload } }, newCausation());
    envelope.eventId = commandId(orderId, type);
    return envelope;
  }

  async function send(...commands: EventEnvelope[]): Promise<void> {
    for (const envelope of commands) await stack.eventBus!.publish(envelope);
  }

  const repliesTo = (orderId: string) => observed.filter((event) => event.aggregateId === orderId);

  function replies(orderId: string, count: number, timeoutMs?: number): Promise<EventEnvelope[]> {
    return waitFor(`${count} replies to order ${orderId}`, () => (repliesTo(orderId).length >= count ? repliesTo(orderId) : undefined), timeoutMs);
  }

  const reserve = (orderId: string, lines: OrderLineQuantity[], version = 1) => command('ReserveStock', orderId, version, { lines });

  it('reserves every line of an order or none', async () => {
    const [a, b] = [await givenStock(db, 5), await givenStock(db, 3)];
    const [first, second] = [randomUUID(), randomUUID()];
    const sent = reserve(first, [{ productId: a, quantity: 2 }, { productId: b, quantity: 3 }]);

    await send(sent);
    const [reserved] = await replies(first, 1);

    expect(reserved).toMatchObject({
      type: 'StockReserved',
      source: 'inventory',
      aggregateType: 'StockReservation',
      aggregateId: first,
      aggregateVersion: 1,
      correlationId: sent.correlationId,
      causationId: sent.eventId,
      payload: { orderId: first, lines: [{ productId: a, quantity: 2 }, { productId: b, quantity: 3 }] },
    });
    expect(await stockOf(db, a)).toEqual({ available: 3, reserved: 2 });
    expect(await stockOf(db, b)).toEqual({ available: 0, reserved: 3 });
    expect(await reservationsOf(db, first)).toEqual([{ productId: a, quantity: 2, status: 'RESERVED' }, { productId: b, quantity: 3, status: 'RESERVED' }].sort(byProduct));

    // One unit of each: `a` has plenty, `b` has none left, so neither is reserved.
    await send(reserve(second, [{ productId: a, quantity: 1 }, { productId: b, quantity: 1 }]));
    const [rejected] = await replies(second, 1);

    expect(rejected).toMatchObject({ type: 'StockReservationRejected', aggregateVersion: 1, payload: { orderId: second, lines: [{ productId: b, requested: 1, available: 0 }] } });
    expect(await stockOf(db, a)).toEqual({ available: 3, reserved: 2 });
    expect(await reservationsOf(db, second)).toEqual([]);
  });

  it('rejects with every line that is short, and changes no stock', async () => {
    const [a, b, c] = [await givenStock(db, 2), await givenStock(db, 1), await givenStock(db, 10)];
    const unknown = randomUUID();
    const orderId = randomUUID();

    await send(reserve(orderId, [{ productId: a, quantity: 3 }, { productId: c, quantity: 5 }, { productId: b, quantity: 2 }, { productId: unknown, quantity: 1 }]));
    const [rejected] = await replies(orderId, 1);

    expect(rejected).toMatchObject({ type: 'StockReservationRejected', aggregateType: 'StockReservation', aggregateVersion: 1 });
    expect(rejected!.payload).toEqual({
      orderId,
      lines: [
        { productId: a, requested: 3, available: 2 },
        { productId: b, requested: 2, available: 1 },
        { productId: unknown, requested: 1, available: 0 },
      ],
    });
    expect(await stockOf(db, a)).toEqual({ available: 2, reserved: 0 });
    expect(await stockOf(db, b)).toEqual({ available: 1, reserved: 0 });
    expect(await stockOf(db, c)).toEqual({ available: 10, reserved: 0 });
    expect(await db.stockItem.findMany({ where: { productId: { in: [a, b, c] } }, select: { version: true } })).toEqual([{ version: 0 }, { version: 0 }, { version: 0 }]);
    expect(await reservationsOf(db, orderId)).toEqual([]);
  });

  it('replies the same outcome to a command sent twice, and reserves once', async () => {
    const productId = await givenStock(db, 5);
    const orderId = randomUUID();
    const sent = reserve(orderId, [{ productId, quantity: 2 }]);
    // The same message twice (a saga resending after a crash), then the order's ReserveStock
    // again under an id of its own and a later version (the bus and the inbox cannot tell it is
    // a repeat: only the order id can).
    const again = { ...reserve(orderId, [{ productId, quantity: 2 }], 2), eventId: randomUUID() };

    await send(sent, sent, again);
    const all = await replies(orderId, 2);

    expect(all.map((reply) => [reply.type, reply.aggregateVersion, reply.causationId])).toEqual([
      ['StockReserved', 1, sent.eventId],
      ['StockReserved', 1, again.eventId],
    ]);
    expect(all[1]!.payload).toEqual(all[0]!.payload);
    expect(await stockOf(db, productId)).toEqual({ available: 3, reserved: 2 });
    expect(await reservationsOf(db, orderId)).toEqual([{ productId, quantity: 2, status: 'RESERVED' }]);
  });

  it('replies the same rejection to an order sent again after stock arrived, and reserves nothing', async () => {
    const productId = await givenStock(db, 1);
    const orderId = randomUUID();

    await send(reserve(orderId, [{ productId, quantity: 2 }]));
    const [rejected] = await replies(orderId, 1);
    await db.stockItem.update({ where: { productId }, data: { available: 10 } });
    await send({ ...reserve(orderId, [{ productId, quantity: 2 }], 2), eventId: randomUUID() });
    const all = await replies(orderId, 2);

    expect(all.map((reply) => [reply.type, reply.aggregateVersion])).toEqual([['StockReservationRejected', 1], ['StockReservationRejected', 1]]);
    expect(all[1]!.payload).toEqual(rejected!.payload);
    expect(await stockOf(db, productId)).toEqual({ available: 10, reserved: 0 });
  });

  it('releases reserved stock, which becomes available again', async () => {
    const [a, b] = [await givenStock(db, 4), await givenStock(db, 4)];
    const orderId = randomUUID();
    await send(reserve(orderId, [{ productId: a, quantity: 1 }, { productId: b, quantity: 4 }]));
    await replies(orderId, 1);

    await send(command('ReleaseStock', orderId, 2));
    const [, released] = await replies(orderId, 2);

    expect(released).toMatchObject({ type: 'StockReleased', aggregateType: 'StockReservation', aggregateVersion: 2 });
    expect(released!.payload).toEqual({ orderId, lines: [{ productId: a, quantity: 1 }, { productId: b, quantity: 4 }].sort(byProduct) });
    expect(await stockOf(db, a)).toEqual({ available: 4, reserved: 0 });
    expect(await stockOf(db, b)).toEqual({ available: 4, reserved: 0 });
    expect((await reservationsOf(db, orderId)).map((row) => row.status)).toEqual(['RELEASED', 'RELEASED']);
  });

  it('replies StockReleased with no lines to a release of an order that reserved nothing', async () => {
    const orderId = randomUUID();

    await send(command('ReleaseStock', orderId, 2));
    const [released] = await replies(orderId, 1);

    expect(released).toMatchObject({ type: 'StockReleased', aggregateVersion: 1, payload: { orderId, lines: [] } });
  });

  it('reserves nothing for a ReserveStock that arrives after the order was released', async () => {
    const productId = await givenStock(db, 5);
    const [orderId, later] = [randomUUID(), randomUUID()];

    // The saga timed out and released (version 2) before its ReserveStock (version 1) was handled.
    await send(command('ReleaseStock', orderId, 2), reserve(orderId, [{ productId, quantity: 2 }], 1));
    // Commands are handled one at a time, in order: once a later order has its reply, the stale one was seen.
    await send(reserve(later, [{ productId, quantity: 1 }]));
    await replies(later, 1);

    expect(repliesTo(orderId).map((reply) => reply.type)).toEqual(['StockReleased']);
    expect(await stockOf(db, productId)).toEqual({ available: 4, reserved: 1 });
    expect(await reservationsOf(db, orderId)).toEqual([]);
  });

  it('commits reserved stock at dispatch: reserved goes down, available stays', async () => {
    const productId = await givenStock(db, 5);
    const orderId = randomUUID();
    await send(reserve(orderId, [{ productId, quantity: 2 }]));
    await replies(orderId, 1);

    await send(command('CommitStock', orderId, 4));
    const [, committed] = await replies(orderId, 2);

    expect(committed).toMatchObject({ type: 'StockCommitted', aggregateType: 'StockReservation', aggregateVersion: 2, payload: { orderId, lines: [{ productId, quantity: 2 }] } });
    expect(await stockOf(db, productId)).toEqual({ available: 3, reserved: 0 });
    expect(await reservationsOf(db, orderId)).toEqual([{ productId, quantity: 2, status: 'COMMITTED' }]);
  });

  it('a release after commit changes nothing', async () => {
    const productId = await givenStock(db, 5);
    const orderId = randomUUID();
    await send(reserve(orderId, [{ productId, quantity: 2 }]), command('CommitStock', orderId, 4));
    await replies(orderId, 2);

    await send(command('ReleaseStock', orderId, 5));
    const [, , released] = await replies(orderId, 3);

    expect(released).toMatchObject({ type: 'StockReleased', aggregateVersion: 3, payload: { orderId, lines: [] } });
    expect(await stockOf(db, productId)).toEqual({ available: 3, reserved: 0 });
    expect(await reservationsOf(db, orderId)).toEqual([{ productId, quantity: 2, status: 'COMMITTED' }]);
  });

  /** The order reserved and dispatched (its lines COMMITTED), its two replies received. */
  async function dispatched(orderId: string, lines: OrderLineQuantity[]): Promise<void> {
    await send(reserve(orderId, lines), command('CommitStock', orderId, 4));
    await replies(orderId, 2);
  }

  it('holds the units of a returned parcel: its committed lines become RETURNED, reserved goes up and available stays', async () => {
    const [a, b] = [await givenStock(db, 5), await givenStock(db, 3)];
    const orderId = randomUUID();
    await dispatched(orderId, [{ productId: a, quantity: 2 }, { productId: b, quantity: 1 }]);

    const sent = command('ReceiveReturnedStock', orderId, 10);
    await send(sent);
    const [, , received] = await replies(orderId, 3);

    expect(received).toMatchObject({
      type: 'ReturnedStockReceived',
      source: 'inventory',
      aggregateType: 'StockReservation',
      aggregateId: orderId,
      aggregateVersion: 3,
      causationId: sent.eventId,
      payload: { orderId, lines: [{ productId: a, quantity: 2 }, { productId: b, quantity: 1 }].sort(byProduct) },
    });
    expect(await stockOf(db, a)).toEqual({ available: 3, reserved: 2 });
    expect(await stockOf(db, b)).toEqual({ available: 2, reserved: 1 });
    expect((await reservationsOf(db, orderId)).map((row) => row.status)).toEqual(['RETURNED', 'RETURNED']);
  });

  it('restocks held returned units once the refund went through: reserved goes down, available up', async () => {
    const productId = await givenStock(db, 5);
    const orderId = randomUUID();
    await dispatched(orderId, [{ productId, quantity: 2 }]);

    await send(command('ReceiveReturnedStock', orderId, 10), command('RestockReturn', orderId, 11));
    const [, , , restocked] = await replies(orderId, 4);

    expect(restocked).toMatchObject({ type: 'StockRestocked', aggregateType: 'StockReservation', aggregateVersion: 4, payload: { orderId, lines: [{ productId, quantity: 2 }] } });
    expect(await stockOf(db, productId)).toEqual({ available: 5, reserved: 0 });
    expect(await reservationsOf(db, orderId)).toEqual([{ productId, quantity: 2, status: 'RESTOCKED' }]);
  });

  it('writes held returned units off when the refund failed: reserved goes down, available stays', async () => {
    const productId = await givenStock(db, 5);
    const orderId = randomUUID();
    await dispatched(orderId, [{ productId, quantity: 2 }]);

    await send(command('ReceiveReturnedStock', orderId, 10), command('WriteOffReturn', orderId, 11));
    const [, , , writtenOff] = await replies(orderId, 4);

    expect(writtenOff).toMatchObject({ type: 'ReturnWrittenOff', aggregateType: 'StockReservation', aggregateVersion: 4, payload: { orderId, lines: [{ productId, quantity: 2 }] } });
    expect(await stockOf(db, productId)).toEqual({ available: 3, reserved: 0 });
    expect(await reservationsOf(db, orderId)).toEqual([{ productId, quantity: 2, status: 'WRITTEN_OFF' }]);
  });

  it('answers a return command sent again with the same reply and version, and moves its units once', async () => {
    const productId = await givenStock(db, 5);
    const [orderId, later] = [randomUUID(), randomUUID()];
    await dispatched(orderId, [{ productId, quantity: 2 }]);
    const [receive, restock] = [command('ReceiveReturnedStock', orderId, 10), command('RestockReturn', orderId, 11)];

    // Each message twice (a saga resending after a crash: the inbox drops the repeat), then each
    // command again under an id of its own and a later version (only the order id tells).
    await send(receive, receive, restock, restock);
    await send({ ...command('ReceiveReturnedStock', orderId, 12), eventId: randomUUID() }, { ...command('RestockReturn', orderId, 13), eventId: randomUUID() });
    // Commands are handled one at a time, in order: once a later order has its reply, every command above was seen.
    await send(reserve(later, [{ productId, quantity: 1 }]));
    await replies(later, 1);
    const all = await replies(orderId, 6);

    expect(all.map((reply) => [reply.type, reply.aggregateVersion])).toEqual([
      ['StockReserved', 1],
      ['StockCommitted', 2],
      ['ReturnedStockReceived', 3],
      ['StockRestocked', 4],
      ['ReturnedStockReceived', 3],
      ['StockRestocked', 4],
    ]);
    expect(all[4]!.payload).toEqual(all[2]!.payload);
    expect(all[5]!.payload).toEqual(all[3]!.payload);
    expect(await stockOf(db, productId)).toEqual({ available: 4, reserved: 1 });
    expect(await reservationsOf(db, orderId)).toEqual([{ productId, quantity: 2, status: 'RESTOCKED' }]);
  });

  it('replies ReturnedStockReceived with no lines when nothing of the order was committed, and holds nothing', async () => {
    const productId = await givenStock(db, 5);
    const [notDispatched, unknown] = [randomUUID(), randomUUID()];

    await send(reserve(notDispatched, [{ productId, quantity: 2 }]), command('ReceiveReturnedStock', notDispatched, 10));
    await send(command('ReceiveReturnedStock', unknown, 10));
    const [, received] = await replies(notDispatched, 2);
    const [receivedUnknown] = await replies(unknown, 1);

    expect(received).toMatchObject({ type: 'ReturnedStockReceived', aggregateVersion: 2, payload: { orderId: notDispatched, lines: [] } });
    expect(receivedUnknown).toMatchObject({ type: 'ReturnedStockReceived', aggregateVersion: 1, payload: { orderId: unknown, lines: [] } });
    expect(await stockOf(db, productId)).toEqual({ available: 3, reserved: 2 });
    expect(await reservationsOf(db, notDispatched)).toEqual([{ productId, quantity: 2, status: 'RESERVED' }]);

    // Nothing was held, so nothing is restocked.
    await send(command('RestockReturn', notDispatched, 11));
    const [, , restocked] = await replies(notDispatched, 3);

    expect(restocked).toMatchObject({ type: 'StockRestocked', aggregateVersion: 3, payload: { orderId: notDispatched, lines: [] } });
    expect(await stockOf(db, productId)).toEqual({ available: 3, reserved: 2 });
  });

  it('a write-off after restock writes nothing off', async () => {
    const productId = await givenStock(db, 5);
    const orderId = randomUUID();
    await dispatched(orderId, [{ productId, quantity: 2 }]);

    await send(command('ReceiveReturnedStock', orderId, 10), command('RestockReturn', orderId, 11), command('WriteOffReturn', orderId, 12));
    const [, , , , writtenOff] = await replies(orderId, 5);

    expect(writtenOff).toMatchObject({ type: 'ReturnWrittenOff', aggregateVersion: 5, payload: { orderId, lines: [] } });
    expect(await stockOf(db, productId)).toEqual({ available: 5, reserved: 0 });
    expect(await reservationsOf(db, orderId)).toEqual([{ productId, quantity: 2, status: 'RESTOCKED' }]);
  });

  it('holds nothing for a ReceiveReturnedStock that arrives after its order\'s RestockReturn', async () => {
    const productId = await givenStock(db, 5);
    const [orderId, later] = [randomUUID(), randomUUID()];
    await dispatched(orderId, [{ productId, quantity: 2 }]);

    // The restock (version 11) is handled before the receive (version 10), which is then stale.
    await send(command('RestockReturn', orderId, 11), command('ReceiveReturnedStock', orderId, 10));
    await send(reserve(later, [{ productId, quantity: 1 }]));
    await replies(later, 1);

    expect(repliesTo(orderId).map((reply) => [reply.type, reply.aggregateVersion])).toEqual([['StockReserved', 1], ['StockCommitted', 2], ['StockRestocked', 3]]);
    expect(repliesTo(orderId)[2]!.payload).toEqual({ orderId, lines: [] });
    expect(await stockOf(db, productId)).toEqual({ available: 2, reserved: 1 });
    expect(await reservationsOf(db, orderId)).toEqual([{ productId, quantity: 2, status: 'COMMITTED' }]);
  });

  it('keeps every unit accounted for through dispatch, return, restock and write-off: available + reserved + committed + written off stays what was there', async () => {
    const productId = await givenStock(db, 10);
    const [kept, lost] = [randomUUID(), randomUUID()];
    const step = async (commands: EventEnvelope[], repliesEach: number, expected: { available: number; reserved: number }) => {
      await send(...commands);
      await replies(kept, repliesEach);
      await replies(lost, repliesEach);
      expect(await stockOf(db, productId)).toEqual(expected);
      expect(await unitsAccountedFor(db, productId)).toBe(10);
    };

    await step([reserve(kept, [{ productId, quantity: 3 }]), reserve(lost, [{ productId, quantity: 2 }])], 1, { available: 5, reserved: 5 });
    await step([command('CommitStock', kept, 4), command('CommitStock', lost, 4)], 2, { available: 5, reserved: 0 });
    await step([command('ReceiveReturnedStock', kept, 10), command('ReceiveReturnedStock', lost, 10)], 3, { available: 5, reserved: 5 });
    await step([command('RestockReturn', kept, 11), command('WriteOffReturn', lost, 11)], 4, { available: 8, reserved: 0 });

    expect(await reservationsOf(db, kept)).toEqual([{ productId, quantity: 3, status: 'RESTOCKED' }]);
    expect(await reservationsOf(db, lost)).toEqual([{ productId, quantity: 2, status: 'WRITTEN_OFF' }]);
  });

  it('shows reserved units in stock { available reserved } through the gateway', async () => {
    const product = demoProducts.find((p) => p.stock >= 3)!;
    const orderId = randomUUID();
    await send(reserve(orderId, [{ productId: product.id, quantity: 3 }]));
    await replies(orderId, 1);

    // reserved is for admins only (@requiresScopes): an admin asks.
    const admin = await stack.tokenFor({ customerId: randomUUID(), roles: ['customer', 'admin'] });
    const res = await graphql(stack.gatewayUrl, { query: 'query ($id: ID!) { product(id: $id) { stock { available reserved } inStock } }', variables: { id: product.id }, token: admin });

    expect(res.errors).toBeUndefined();
    expect(res.data!.product).toEqual({ stock: { available: product.stock - 3, reserved: 3 }, inStock: product.stock > 3 });
  });

  it('100 concurrent orders for a product with 10 units: exactly 10 are reserved, 90 rejected, and available + reserved stays 10', async () => {
    const productId = await givenStock(db, 10);
    const orders = Array.from({ length: 100 }, () => randomUUID());

    await Promise.all(orders.map((orderId) => stack.eventBus!.publish(reserve(orderId, [{ productId, quantity: 1 }]))));
    const outcomes = await waitFor('a reply to each of 100 orders', () => {
      const all = orders.map((orderId) => repliesTo(orderId)[0]);
      return all.every(Boolean) ? (all as EventEnvelope[]) : undefined;
    }, 20_000);

    const reserved = outcomes.filter((reply) => reply.type === 'StockReserved');
    const rejected = outcomes.filter((reply) => reply.type === 'StockReservationRejected');
    expect(reserved).toHaveLength(10);
    expect(rejected).toHaveLength(90);
    for (const reply of rejected) expect(reply.payload).toEqual({ orderId: reply.aggregateId, lines: [{ productId, requested: 1, available: 0 }] });
    expect(await stockOf(db, productId)).toEqual({ available: 0, reserved: 10 });
    expect(await db.stockReservation.count({ where: { productId, status: 'RESERVED' } })).toBe(10);
  });
});

describe('reserving stock in the inventory database', () => {
  const databases = testDatabases();
  let db: InventoryDatabase;

  beforeAll(async () => {
    // Separate connections, so that the reservations below really run at the same time.
    db = connectInventoryDatabase(await databases.fresh('inventory'), 25).db;
  });
  afterAll(async () => {
    await db?.$disconnect();
    await databases.dropAll();
  });

  /** Reserves in a transaction of its own; reports when it held its connection. */
  async function reserveAlone(orderId: string, lines: OrderLineQuantity[]): Promise<{ outcome: ReservationOutcome; began: number; ended: number }> {
    let began = 0;
    const outcome = await db.$transaction(
      async (tx) => {
        began = performance.now();
        return reserveStock(tx, { orderId, lines }, newCausation());
      },
      { maxWait: 20_000, timeout: 20_000 },
    );
    return { outcome, began, ended: performance.now() };
  }

  /** The most transactions that were open at the same moment. */
  function mostAtOnce(spans: readonly { began: number; ended: number }[]): number {
    return Math.max(...spans.map((span) => spans.filter((other) => other.began <= span.began && span.began < other.ended).length));
  }

  it('100 concurrent orders for a product with 10 units: exactly 10 are reserved, 90 rejected, and available + reserved stays 10', async () => {
    const productId = await givenStock(db, 10);

    const results = await Promise.all(Array.from({ length: 100 }, () => reserveAlone(randomUUID(), [{ productId, quantity: 1 }])));

    expect(mostAtOnce(results)).toBeGreaterThanOrEqual(10);
    const types = results.map((result) => result.outcome.type);
    expect(types.filter((type) => type === 'StockReserved')).toHaveLength(10);
    expect(types.filter((type) => type === 'StockReservationRejected')).toHaveLength(90);
    expect(await stockOf(db, productId)).toEqual({ available: 0, reserved: 10 });
    expect(await db.stockReservation.aggregate({ where: { productId }, _sum: { quantity: true } })).toEqual({ _sum: { quantity: 10 } });
    // Every outcome, rejections included, committed its reply to the outbox.
    expect(await db.outboxEvent.count({ where: { subject: { startsWith: 'events.inventory.StockReservation.' } } })).toBe(100);
  });

  it('orders listing the same two products in opposite orders neither deadlock nor oversell', async () => {
    const [x, y] = [await givenStock(db, 20), await givenStock(db, 20)];

    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        reserveAlone(randomUUID(), i % 2 === 0 ? [{ productId: x, quantity: 1 }, { productId: y, quantity: 1 }] : [{ productId: y, quantity: 1 }, { productId: x, quantity: 1 }]),
      ),
    );

    expect(results.filter((result) => result.outcome.type === 'StockReserved')).toHaveLength(20);
    expect(await stockOf(db, x)).toEqual({ available: 0, reserved: 20 });
    expect(await stockOf(db, y)).toEqual({ available: 0, reserved: 20 });
  });

  it('refuses negative available or reserved units in the database itself', async () => {
    const productId = await givenStock(db, 1);

    await expect(db.$executeRaw`UPDATE stock_items SET available = -1 WHERE product_id = ${productId}::uuid`).rejects.toThrow(/stock_items_available_not_negative/);
    await expect(db.$executeRaw`UPDATE stock_items SET reserved = -1 WHERE product_id = ${productId}::uuid`).rejects.toThrow(/stock_items_reserved_not_negative/);
    expect(await stockOf(db, productId)).toEqual({ available: 1, reserved: 0 });
  });

  it('refuses a reservation line status it does not know in the database itself', async () => {
    const productId = await givenStock(db, 1);
    const orderId = randomUUID();
    await db.stockReservationOrder.create({ data: { orderId } });

    await expect(db.$executeRaw`INSERT INTO stock_reservations (order_id, product_id, quantity, status) VALUES (${orderId}::uuid, ${productId}::uuid, 1, 'LOST')`).rejects.toThrow(/stock_reservations_status_known/);
    await expect(db.$executeRaw`INSERT INTO stock_return_replies (order_id, type, payload, version) VALUES (${orderId}::uuid, 'StockReleased', '{}'::jsonb, 1)`).rejects.toThrow(/stock_return_replies_type_known/);
  });
});

describe('reading a ReserveStock command', () => {
  const orderId = randomUUID();
  const envelope = (payload: Record<string, unknown>, aggregateId = orderId) =>
    createEnvelope('orders', { type: 'ReserveStock', aggregateType: 'Order', aggregateId, aggregateVersion: 1, payload }, newCausation());

  it('reserves a product listed twice once, for the sum, in the order products were first listed', () => {
    const [a, b] = [randomUUID(), randomUUID()];
    const lines = [{ productId: a, quantity: 1 }, { productId: b, quantity: 2 }, { productId: a.toUpperCase(), quantity: 3 }];
    expect(reserveStockCommand(envelope({ orderId, lines }))).toEqual({ orderId, lines: [{ productId: a, quantity: 4 }, { productId: b, quantity: 2 }] });
  });

  it.each([
    ['no lines', { orderId, lines: [] }],
    ['a quantity of 0', { orderId, lines: [{ productId: randomUUID(), quantity: 0 }] }],
    ['a fractional quantity', { orderId, lines: [{ productId: randomUUID(), quantity: 1.5 }] }],
    ['a line without a product', { orderId, lines: [{ quantity: 1 }] }],
    ['an order id that is not a uuid', { orderId: 'ORD-1', lines: [{ productId: randomUUID(), quantity: 1 }] }],
  ])('refuses a command with %s as InvalidSagaCommand, to be parked as a dead letter', (_label, payload) => {
    expect(() => reserveStockCommand(envelope(payload))).toThrow(InvalidSagaCommand);
  });

  it('refuses a command whose aggregate is not the order of its payload', () => {
    expect(() => reserveStockCommand(envelope({ orderId, lines: [{ productId: randomUUID(), quantity: 1 }] }, randomUUID()))).toThrow(/is not payload.orderId/);
  });
});

describe('reading a return command', () => {
  const orderId = randomUUID();
  const envelope = (type: SagaCommandType, payload: Record<string, unknown>, aggregateId: string = orderId) =>
    createEnvelope('orders', { type, aggregateType: 'Order', aggregateId, aggregateVersion: 1, payload }, newCausation());
  const readers = [
    ['ReceiveReturnedStock', receiveReturnedStockCommand],
    ['RestockReturn', restockReturnCommand],
    ['WriteOffReturn', writeOffReturnCommand],
  ] as const;

  it.each(readers)('reads the order of a %s', (type, read) => {
    expect(read(envelope(type, { orderId }))).toEqual({ orderId });
  });

  it.each(readers)('refuses a %s whose order id is not a uuid, or not its aggregate, as InvalidSagaCommand', (type, read) => {
    expect(() => read(envelope(type, { orderId: 'ORD-1' }, 'ORD-1'))).toThrow(InvalidSagaCommand);
    expect(() => read(envelope(type, { orderId }, randomUUID()))).toThrow(/is not payload.orderId/);
  });
});
