/**
 * The inbox on a real PostgreSQL: a consumer applies each event once, whatever the bus
 * redelivers, ignores events older than what it applied, and under strict ordering refuses an
 * event that arrives before the one it needs. The effect is a real write of the inventory
 * context (stock made available), in the inventory database.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PrismaClient as InventoryClient } from '../prisma/inventory/client/client.ts';
import { prismaClientOptions } from '../platform/database/prisma.ts';
import type { EventEnvelope } from '../platform/events/envelope.ts';
import { handleOnce, OutOfOrderEvent, type Ordering } from '../platform/events/inbox.ts';
import { productEvent, testDatabases, waitFor } from './support/events.ts';
import { startTestBus, type TestBus } from './support/stack.ts';

const databases = testDatabases();
const clients: InventoryClient[] = [];
const consumer = 'inventory';

afterEach(async () => {
  await Promise.all(clients.splice(0).map((db) => db.$disconnect()));
});
afterAll(() => databases.dropAll());

async function inventoryDatabase(): Promise<{ db: InventoryClient; databaseUrl: string }> {
  const databaseUrl = await databases.fresh('inventory');
  return { db: connectInventory(databaseUrl), databaseUrl };
}

function connectInventory(databaseUrl: string): InventoryClient {
  const db = new InventoryClient(prismaClientOptions(databaseUrl, 4));
  clients.push(db);
  return db;
}

/** A product with no stock yet, whose events the tests deliver. */
async function givenProduct(db: InventoryClient): Promise<string> {
  const productId = randomUUID();
  await db.stockItem.create({ data: { productId, available: 0 } });
  return productId;
}

/** The consumer's handler: each applied event makes one more unit available. */
function receive(db: InventoryClient, event: EventEnvelope, ordering: Ordering = 'strict') {
  return handleOnce(
    db,
    consumer,
    event,
    async (tx) => {
      await tx.stockItem.update({ where: { productId: event.aggregateId }, data: { available: { increment: 1 } } });
    },
    { ordering },
  );
}

async function available(db: InventoryClient, productId: string): Promise<number> {
  return (await db.stockItem.findUniqueOrThrow({ where: { productId } })).available;
}

async function inboxHas(db: InventoryClient, event: EventEnvelope): Promise<boolean> {
  const rows = await db.$queryRaw<unknown[]>`SELECT 1 FROM inbox_events WHERE consumer = ${consumer} AND event_id = ${event.eventId}::uuid`;
  return rows.length === 1;
}

describe('inbox', () => {
  it('applies an event delivered three times exactly once', async () => {
    const { db } = await inventoryDatabase();
    const productId = await givenProduct(db);
    const event = productEvent(1, productId);

    // Three deliveries at once, as redeliveries to several consumer processes could race.
    const outcomes = await Promise.all([receive(db, event), receive(db, event), receive(db, event)]);

    expect(outcomes.sort()).toEqual(['applied', 'duplicate', 'duplicate']);
    expect(await available(db, productId)).toBe(1);
  });

  it('does not apply an effect twice when the consumer crashed after committing and before acknowledging', async () => {
    const { db, databaseUrl } = await inventoryDatabase();
    const productId = await givenProduct(db);
    const event = productEvent(1, productId);
    expect(await receive(db, event)).toBe('applied');
    // The process dies before acknowledging: the bus delivers the event again to its successor.
    await db.$disconnect();
    const restarted = connectInventory(databaseUrl);

    expect(await receive(restarted, event)).toBe('duplicate');
    expect(await available(restarted, productId)).toBe(1);
  });

  it('ignores an event older than the last applied version', async () => {
    const { db } = await inventoryDatabase();
    const productId = await givenProduct(db);
    const [v1, v2, v3] = [1, 2, 3].map((version) => productEvent(version, productId));
    for (const event of [v1!, v2!, v3!]) expect(await receive(db, event)).toBe('applied');
    // The same version 2 again, under another event id (e.g. re-emitted): not a duplicate.
    const olderAgain = productEvent(2, productId);

    expect(await receive(db, olderAgain)).toBe('stale');
    expect(await available(db, productId)).toBe(3);
    // It stays recorded: redelivering it is a plain duplicate.
    expect(await receive(db, olderAgain)).toBe('duplicate');
  });

  it('refuses an event that skips a version under strict ordering, and applies it once the missing one arrived', async () => {
    const { db } = await inventoryDatabase();
    const productId = await givenProduct(db);
    const [v1, v2, v3] = [1, 2, 3].map((version) => productEvent(version, productId)) as [EventEnvelope, EventEnvelope, EventEnvelope];
    expect(await receive(db, v1)).toBe('applied');

    const early = receive(db, v3);

    await expect(early).rejects.toBeInstanceOf(OutOfOrderEvent);
    await expect(early).rejects.toMatchObject({ code: 'OUT_OF_ORDER_EVENT', lastApplied: 1 });
    expect(await inboxHas(db, v3)).toBe(false);
    expect(await available(db, productId)).toBe(1);
    expect(await receive(db, v2)).toBe('applied');
    expect(await receive(db, v3)).toBe('applied');
    expect(await available(db, productId)).toBe(3);
  });

  it('applies newer versions across gaps under monotonic ordering (a consumer of some of an aggregate\'s types), and ignores older ones', async () => {
    const { db } = await inventoryDatabase();
    const productId = await givenProduct(db);

    expect(await receive(db, productEvent(1, productId), 'monotonic')).toBe('applied');
    expect(await receive(db, productEvent(4, productId), 'monotonic')).toBe('applied');
    expect(await receive(db, productEvent(3, productId), 'monotonic')).toBe('stale');
    expect(await available(db, productId)).toBe(2);
  });

  it('a failing effect leaves neither the effect nor the inbox row', async () => {
    const { db } = await inventoryDatabase();
    const productId = await givenProduct(db);
    const event = productEvent(1, productId);

    const failing = handleOnce(
      db,
      consumer,
      event,
      async (tx) => {
        await tx.stockItem.update({ where: { productId }, data: { available: { increment: 1 } } });
        throw new Error('the effect failed halfway');
      },
      { ordering: 'strict' },
    );

    await expect(failing).rejects.toThrow('the effect failed halfway');
    expect(await available(db, productId)).toBe(0);
    expect(await inboxHas(db, event)).toBe(false);
    // The redelivery applies it.
    expect(await receive(db, event)).toBe('applied');
    expect(await available(db, productId)).toBe(1);
  });
});

describe.each(['postgres', 'nats'] as const)('strict ordering on a real bus (%s)', (kind) => {
  let testBus: TestBus | undefined;
  afterEach(async () => {
    await testBus?.bus.close();
    await testBus?.dispose();
    testBus = undefined;
  });

  it('redelivers an event whose earlier version is missing, parks it when that version never comes, and applies it in order once replayed', async () => {
    const { db } = await inventoryDatabase();
    const productId = await givenProduct(db);
    testBus = await startTestBus(kind);
    const deliveries: number[] = [];
    await testBus.bus.subscribe(consumer, { types: ['ProductPriceChanged'], maxDeliveries: 3, backoffMs: [50] }, async (event, delivery) => {
      if (event.aggregateVersion === 2) deliveries.push(delivery.attempt);
      await receive(db, event, 'strict');
    });
    const [v1, v2] = [1, 2].map((version) => productEvent(version, productId)) as [EventEnvelope, EventEnvelope];

    await testBus.bus.publish(v2);
    await waitFor('version 2 parked', async () => (await testBus!.bus.deadLetters(consumer)).length === 1, 20_000);
    const [parked] = await testBus.bus.deadLetters(consumer);
    expect(parked).toMatchObject({ attempts: 3, event: { eventId: v2.eventId } });
    expect(parked!.error).toMatch(/version 1 has not been applied yet/);
    expect(deliveries).toEqual([1, 2, 3]);
    expect(await available(db, productId)).toBe(0);

    await testBus.bus.publish(v1);
    await waitFor('version 1 applied', async () => (await available(db, productId)) === 1, 10_000);
    expect(await testBus.bus.replayDeadLetters({ all: true, consumer })).toBe(1);
    await waitFor('version 2 applied after its replay', async () => (await available(db, productId)) === 2, 10_000);
    expect(await inboxHas(db, v2)).toBe(true);
  });
});
