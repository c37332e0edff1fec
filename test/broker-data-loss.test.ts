/**
 * NATS restarted with its data folder wiped (docs/decisions/0018), on a private nats-server each
 * test stops, wipes and starts again: the stream and its durable consumers come back without
 * anyone's help, the relays publish again what the broker lost, and nothing is lost — neither
 * events the relay had marked published before the wipe nor those produced around it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { PrismaClient as InventoryClient } from '../prisma/inventory/client/client.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { prismaClientOptions } from '../platform/database/prisma.ts';
import type { EventBus } from '../platform/events/bus.ts';
import type { Logger } from '../platform/logging/logger.ts';
import { createJetStreamBus, natsRelayPacing } from '../platform/events/bus/nats-jetstream.ts';
import { createEnvelope, type EventEnvelope } from '../platform/events/envelope.ts';
import { appendToOutbox } from '../platform/events/outbox.ts';
import { OutboxRelay } from '../platform/events/relay.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { connectInventoryDatabase } from '../subgraphs/inventory/infrastructure/database.ts';
import { asTransaction, connect, quietLogger, testDatabases } from './support/events.ts';
import { faultEventType, receiveStock } from './support/fault-harness.ts';
import { graphql } from './support/graphql.ts';
import { inStockProducts, placeOrder } from './support/orders.ts';
import { startPrivateNats, type PrivateNats } from './support/private-nats.ts';
import { startStack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

const hex = () => randomBytes(4).toString('hex');
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  const failures: unknown[] = [];
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((error) => failures.push(error));
  if (failures.length > 0) throw new AggregateError(failures, 'cleanup failed');
});

async function privateNats(): Promise<PrivateNats> {
  const nats = await startPrivateNats();
  cleanups.push(() => nats.dispose());
  return nats;
}

/** The durable consumers on `stream`, read on a connection of the test's own; [] while it is missing. */
async function consumersOn(natsUrl: string, stream: string): Promise<string[]> {
  const nc = await connectNats({ servers: natsUrl, timeout: 2_000 });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.consumers.list(stream).next()).map((info) => info.name).sort();
  } catch {
    return [];
  } finally {
    await nc.close();
  }
}

describe('NATS restarted with its data folder wiped', { timeout: 240_000 }, () => {
  it('re-creates the stream with its consumers, and delivers the events the relay had marked published before the wipe and those produced around it, each once', async () => {
    const nats = await privateNats();
    const databases = testDatabases();
    cleanups.push(() => databases.dropAll());
    const catalogUrl = await databases.fresh('catalog');
    const inventoryUrl = await databases.fresh('inventory');
    const catalog = await connect(catalogUrl);
    const inventory = await connect(inventoryUrl);
    cleanups.push(() => catalog.end(), () => inventory.end());
    const inventoryDb = new InventoryClient(prismaClientOptions(inventoryUrl, 2));
    cleanups.push(() => inventoryDb.$disconnect());
    const categoryId = randomUUID();
    await catalog.query('INSERT INTO categories (id, slug, name) VALUES ($1, $2, $3)', [categoryId, `tools-${hex()}`, 'Tools']);
    const produce = (count: number) => produceProducts(catalog, categoryId, count);

    const names = { stream: `WIPE_${hex().toUpperCase()}`, subjectPrefix: `wipe${hex()}` };
    const openBus = async (): Promise<EventBus> => {
      const bus = await createJetStreamBus({ servers: nats.url, ...names, ackWaitMs: 2_000, timeoutMs: 2_000, logger: quietLogger });
      cleanups.push(() => bus.close());
      return bus;
    };
    // The catalog process: it declares inventory's consumer (as every service declares them all)
    // and relays its outbox. Inventory is away: what is published waits in the stream for it.
    const catalogBus = await openBus();
    await catalogBus.declareConsumer('inventory', { types: [faultEventType] });
    const relay = new OutboxRelay({
      databaseUrl: catalogUrl, publish: (event) => catalogBus.publish(event), brokerStoredSince: () => catalogBus.storedSince(),
      pollIntervalMs: 100, retryBackoffMs: [100, 250, 500], logger: quietLogger,
    }).start();
    cleanups.push(() => relay.stop());

    const beforeWipe = await produce(10);
    await waitFor('the relay to mark the first events published', async () => ((await unpublished(catalog)) === 0 ? true : undefined));

    await nats.restartWiped();
    const aroundWipe = await produce(10);

    await waitFor('the stream and its consumer to be back', async () => ((await consumersOn(nats.url, names.stream)).includes('inventory') ? true : undefined), 30_000);
    // Inventory comes back, on a connection of its own, as another process would.
    const inventoryBus = await openBus();
    const applied: string[] = [];
    const subscription = await inventoryBus.subscribe('inventory', { types: [faultEventType] }, async (event) => {
      if ((await receiveStock(inventoryDb, 'inventory', event)) === 'applied') applied.push(event.eventId);
    });
    cleanups.push(() => subscription.stop());

    const all = [...beforeWipe, ...aroundWipe];
    await waitFor(`all ${all.length} events applied`, () => (applied.length >= all.length ? true : undefined), 60_000);
    expect(new Set(applied)).toEqual(new Set(all.map((event) => event.eventId)));
    expect(applied).toHaveLength(all.length);
    const { rows } = await inventory.query<{ available: number }>('SELECT available FROM stock_items WHERE product_id = ANY($1::uuid[])', [all.map((e) => e.aggregateId)]);
    expect(rows.map((row) => row.available)).toEqual(all.map(() => 1));
    await waitFor('every outbox row published again', async () => ((await unpublished(catalog)) === 0 ? true : undefined), 30_000);
  });

  it('declares a consumer again when it is deleted while it runs, with no reconnect, and delivers what is published next', async () => {
    const nats = await privateNats();
    const names = { stream: `GONE_${hex().toUpperCase()}`, subjectPrefix: `gone${hex()}` };
    const bus = await createJetStreamBus({ servers: nats.url, ...names, timeoutMs: 2_000, logger: quietLogger });
    cleanups.push(() => bus.close());
    const received: string[] = [];
    const subscription = await bus.subscribe('inventory', { types: [faultEventType] }, async (event) => void received.push(event.eventId));
    cleanups.push(() => subscription.stop());
    const event = () => createEnvelope('catalog', { type: faultEventType, aggregateType: 'Product', aggregateId: randomUUID(), aggregateVersion: 1, payload: {} }, { correlationId: randomUUID(), causationId: randomUUID() });
    const before = event();
    await bus.publish(before);
    await waitFor('the event before the deletion', () => (received.includes(before.eventId) ? true : undefined));

    const nc = await connectNats({ servers: nats.url });
    try {
      await (await jetstreamManager(nc)).consumers.delete(names.stream, 'inventory');
    } finally {
      await nc.close();
    }
    // The pull's "consumer deleted" notification brings it back, and the pull starts anew.
    await waitFor('the consumer back', async () => ((await consumersOn(nats.url, names.stream)).includes('inventory') ? true : undefined), 30_000);
    const after = event();
    await bus.publish(after);
    await waitFor('the event published after the deletion', () => (received.includes(after.eventId) ? true : undefined), 30_000);
    expect(bus.health()).toEqual({ connected: true });
  });

  it('ends every order placed around the wipe, under load, CONFIRMED with its stock reserved, its payment authorized and its shipment created, with no operator action', async () => {
    const nats = await privateNats();
    // Step deadlines far beyond the outage: this is about lost events, not about deadlines.
    const stack = await startStack({ eventBus: 'nats', natsUrl: nats.url, sagaStepTimeoutMs: 180_000 });
    cleanups.push(() => stack.stop());
    await seedDemoData(stack.databaseUrls);
    const customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
    const product = inStockProducts[0]!;
    const stock = connectInventoryDatabase(stack.databaseUrls.inventory).db;
    cleanups.push(() => stock.$disconnect());
    await stock.stockItem.update({ where: { productId: product.id }, data: { available: 10_000, reserved: 0 } });

    const orders: string[] = [];
    const read = async (id: string) =>
      (await graphql(stack.gatewayUrl, { query: 'query ($id: ID!) { order(id: $id) { status } }', variables: { id }, token: customer })).data?.order as OrderState | undefined;
    // One order confirmed before the wipe, then three customers placing orders one after another
    // (a short pause between two: a load the 2-core CI machine finishes, not a flood) until ten
    // have been placed after the wipe.
    orders.push(await placeOrder(stack.gatewayUrl, customer));
    await waitFor('the first order CONFIRMED before the wipe', async () => ((await read(orders[0]!))?.status === 'CONFIRMED' ? true : undefined), 60_000);
    let loading = true;
    const load = Promise.all(
      Array.from({ length: 3 }, async () => {
        while (loading) {
          orders.push(await placeOrder(stack.gatewayUrl, customer));
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }),
    );
    try {
      await waitFor('ten orders in flight', () => (orders.length >= 11 ? true : undefined), 60_000);
      await nats.restartWiped();
      const wipedAt = orders.length;
      await waitFor('ten orders placed after the wipe', () => (orders.length >= wipedAt + 10 ? true : undefined), 60_000);
    } finally {
      loading = false;
      await load;
    }

    // 20 orders per request: the gateway's default alias limit.
    const readAll = async () =>
      (
        await Promise.all(
          Array.from({ length: Math.ceil(orders.length / 20) }, async (_, chunk) => {
            const ids = orders.slice(chunk * 20, chunk * 20 + 20);
            const query = `{ ${ids.map((id, i) => `o${i}: order(id: "${id}") { status payment { status } shipment { status } }`).join(' ')} }`;
            const { data } = await graphql(stack.gatewayUrl, { query, token: customer });
            return ids.map((_id, i) => (data as Record<string, OrderState | null> | undefined)?.[`o${i}`]);
          }),
        )
      ).flat();
    const states = await waitFor(`all ${orders.length} orders decided`, async () => {
      const all = await readAll();
      return all.every((order) => order && order.status !== 'PENDING') ? all : undefined;
    }, 150_000).catch(async (error: Error) => {
      throw new Error(`${error.message}\n${await sagaDiagnostics(stack.databaseUrls, await stack.eventBus!.deadLetters().catch(() => []))}`);
    });
    const summary = states.map((order) => `${order!.status}/${order!.payment?.status}/${order!.shipment?.status}`);
    expect(summary).toEqual(orders.map(() => 'CONFIRMED/AUTHORIZED/CREATED'));
    expect(await stock.stockItem.findUniqueOrThrow({ where: { productId: product.id }, select: { available: true, reserved: true } })).toEqual({
      available: 10_000 - orders.length,
      reserved: orders.length,
    });
    const stream = stack.eventBusEnv!.NATS_STREAM!;
    expect(await consumersOn(nats.url, stream)).toEqual(['inventory', 'orders', 'payments', 'shipping']);
  });
});

describe('NATS back after an outage', { timeout: 180_000 }, () => {
  // How long each takes is measured, not asserted (a busy machine would make a time limit flaky):
  // the tests print it; docs/decisions/0018 has the figures (0.4–0.5 s for the bus alone, 2.7–5 s
  // with a relay republishing 6000 kept events, 9.4 s when the relay sent them one at a time).

  it('republishes the 6000 events it kept after NATS is wiped with many publishes in flight, in commit order, and then delivers an event committed after NATS is back', async () => {
    const nats = await privateNats();
    const databases = testDatabases();
    cleanups.push(() => databases.dropAll());
    const catalogUrl = await databases.fresh('catalog');
    const catalog = await connect(catalogUrl);
    cleanups.push(() => catalog.end());
    const names = { stream: `KEPT_${hex().toUpperCase()}`, subjectPrefix: `kept${hex()}` };
    const bus = await createJetStreamBus({ servers: nats.url, ...names, logger: quietLogger });
    cleanups.push(() => bus.close());
    // In memory: what is measured is the way to the consumer, not its inbox's database.
    const received = new Set<string>();
    const subscription = await bus.subscribe('inventory', { types: [faultEventType] }, async (event) => void received.add(event.eventId));
    cleanups.push(() => subscription.stop());
    // As a service starts it on NATS (platform/subgraph/context-subgraph.ts).
    let inFlight = 0;
    let mostInFlight = 0;
    const publish = async (event: EventEnvelope) => {
      mostInFlight = Math.max(mostInFlight, ++inFlight);
      try {
        await bus.publish(event);
      } finally {
        inFlight--;
      }
    };
    const relay = new OutboxRelay({
      databaseUrl: catalogUrl, publish, brokerStoredSince: () => bus.storedSince(), ...natsRelayPacing, logger: quietLogger,
    }).start();
    cleanups.push(() => relay.stop());
    const event = () => createEnvelope('catalog', { type: faultEventType, aggregateType: 'Product', aggregateId: randomUUID(), aggregateVersion: 1, payload: {} }, { correlationId: randomUUID(), causationId: randomUUID() });
    const append = async (events: EventEnvelope[]) => {
      await catalog.query('BEGIN');
      await appendToOutbox(asTransaction(catalog), events);
      await catalog.query('COMMIT');
    };
    const kept = Array.from({ length: 6_000 }, event);
    for (let chunk = 0; chunk < kept.length; chunk += 500) await append(kept.slice(chunk, chunk + 500));
    await waitFor('the 6000 kept events delivered before the wipe', () => (received.size >= kept.length ? true : undefined), 120_000);
    // Pipelined, yet stored (and so delivered, to a consumer of concurrency 1) in commit order.
    expect([...received]).toEqual(kept.map((sent) => sent.eventId));
    expect(mostInFlight, 'publishes in flight at once before the wipe').toBeGreaterThan(1);

    const received6000 = [...received];
    received.clear();
    mostInFlight = 0;
    await nats.restartWiped();
    const backAt = Date.now();
    // Committed once the relay has found the loss and marked the kept rows for publishing again:
    // an order placed a moment after NATS is back.
    await waitFor('the relay to take up the kept events again', async () => ((await relay.backlog()) > 0 ? true : undefined), 30_000);
    const fresh = event();
    await append([fresh]);
    await waitFor('the event committed after NATS is back', () => (received.has(fresh.eventId) ? true : undefined), 120_000);
    const elapsedMs = Date.now() - backAt;
    expect(received6000).toHaveLength(kept.length);
    // Every kept event republished, again in commit order and many at a time, before the fresh one.
    expect([...received]).toEqual([...kept.map((sent) => sent.eventId), fresh.eventId]);
    expect(mostInFlight, 'publishes in flight at once while republishing').toBeGreaterThan(1);
    console.info(`NATS wiped, 6000 events kept: an event committed after it was back delivered ${(elapsedMs / 1_000).toFixed(2)} s after`);
  });

  for (const [outage, restart] of [
    ['restarted with its data folder wiped', (nats: PrivateNats) => nats.restartWiped()],
    ['stopped and started again with its data', async (nats: PrivateNats) => { await nats.stop(); await nats.start(); }],
  ] as const) {
    it(`delivers an event published after NATS is back (${outage}) to its running consumer`, async () => {
      const nats = await privateNats();
      const names = { stream: `BACK_${hex().toUpperCase()}`, subjectPrefix: `back${hex()}` };
      const timeline: string[] = [];
      let since = Date.now();
      const note = (what: string) => timeline.push(`${((Date.now() - since) / 1_000).toFixed(2)} s ${what}`);
      const timelineLogger: Logger = { ...quietLogger, info: note, warn: note, child: () => timelineLogger };
      const bus = await createJetStreamBus({ servers: nats.url, ...names, timeoutMs: 2_000, logger: timelineLogger });
      cleanups.push(() => bus.close());
      const received = new Set<string>();
      const subscription = await bus.subscribe('inventory', { types: [faultEventType] }, async (event) => void received.add(event.eventId));
      cleanups.push(() => subscription.stop());
      const event = () => createEnvelope('catalog', { type: faultEventType, aggregateType: 'Product', aggregateId: randomUUID(), aggregateVersion: 1, payload: {} }, { correlationId: randomUUID(), causationId: randomUUID() });
      const before = event();
      await bus.publish(before);
      await waitFor('the event before the outage', () => (received.has(before.eventId) ? true : undefined));

      await restart(nats);
      since = Date.now();
      note('NATS back');
      // A relay's behaviour: publish, and on failure try again soon, until one event gets through.
      const published: string[] = [];
      const delivered = waitFor('an event published after NATS is back to be delivered', () => published.find((id) => received.has(id)), 60_000);
      let publishing = true;
      const publisher = (async () => {
        while (publishing) {
          const next = event();
          try {
            await bus.publish(next);
            if (published.length === 0) note('first publish acknowledged');
            published.push(next.eventId);
          } catch {
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })();
      try {
        await delivered;
        note('first delivery');
      } finally {
        publishing = false;
        await publisher;
      }
      const elapsedMs = Date.now() - since;
      console.info(`NATS ${outage}: delivered ${(elapsedMs / 1_000).toFixed(2)} s after it was back\n${timeline.join('\n')}`);
    });
  }
});

/** What a stuck saga waits for, to tell a lost event from a slow machine when the test fails. */
async function sagaDiagnostics(databaseUrls: Record<string, string>, deadLetters: unknown[]): Promise<string> {
  const lines: string[] = [`dead letters: ${JSON.stringify(deadLetters).slice(0, 2_000)}`];
  for (const [context, url] of Object.entries(databaseUrls)) {
    const client = await connect(url);
    try {
      const outbox = await client.query('SELECT count(*) FILTER (WHERE published_at IS NULL) AS unpublished, count(*) AS total FROM outbox_events');
      const inbox = await client.query('SELECT consumer, count(*) AS n FROM inbox_events GROUP BY consumer');
      lines.push(`${context}: outbox ${JSON.stringify(outbox.rows[0])} inbox ${JSON.stringify(inbox.rows)}`);
      if (context === 'orders') {
        const sagas = await client.query(`SELECT order_id, status, step, deadline_at FROM order_sagas WHERE status = 'RUNNING' LIMIT 10`);
        lines.push(`running sagas: ${JSON.stringify(sagas.rows)}`);
      }
    } finally {
      await client.end();
    }
  }
  return lines.join('\n');
}

interface OrderState {
  status: string;
  payment: { status: string } | null;
  shipment: { status: string } | null;
}

async function unpublished(catalog: pg.Client): Promise<number> {
  const { rows } = await catalog.query<{ n: string }>('SELECT count(*) AS n FROM outbox_events WHERE published_at IS NULL');
  return Number(rows[0]!.n);
}

/** Commits `count` transactions, each inserting a product and appending its ProductCreated. */
async function produceProducts(catalog: pg.Client, categoryId: string, count: number): Promise<EventEnvelope[]> {
  const events: EventEnvelope[] = [];
  for (let i = 0; i < count; i++) {
    const productId = randomUUID();
    const event = createEnvelope(
      'catalog',
      { type: faultEventType, aggregateType: 'Product', aggregateId: productId, aggregateVersion: 1, payload: { productId, name: `Hammer ${i}`, categoryId } },
      { correlationId: randomUUID(), causationId: randomUUID() },
    );
    await catalog.query('BEGIN');
    try {
      await catalog.query(
        `INSERT INTO products (id, sku, name, price_amount, currency, category_id, updated_at) VALUES ($1, $2, $3, 1000, 'EUR', $4, now())`,
        [productId, `W-${hex()}`, `Hammer ${i}`, categoryId],
      );
      await appendToOutbox(asTransaction(catalog), [event]);
      await catalog.query('COMMIT');
    } catch (error) {
      await catalog.query('ROLLBACK').catch(() => {});
      throw error;
    }
    events.push(event);
  }
  return events;
}
