/**
 * The event bus contract, held against both adapters on real servers: NATS JetStream (the shared
 * server, in streams of this file's own, and a private nats-server for the outage) and the
 * PostgreSQL queue (a database of this run, behind a TCP proxy for the outage). Each test uses
 * consumers and event types of its own, so leftovers of one cannot reach another.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { deriveDatabaseUrl, withDatabase } from '../platform/config.ts';
import { dropDatabase, ensureDatabase } from '../platform/database/provision.ts';
import type { DeadLetter, EventBus, EventHandler } from '../platform/events/bus.ts';
import { createEventBus } from '../platform/events/bus/factory.ts';
import { createJetStreamBus } from '../platform/events/bus/nats-jetstream.ts';
import { createPostgresQueueBus } from '../platform/events/bus/postgres-queue.ts';
import { createEnvelope, type EventEnvelope } from '../platform/events/envelope.ts';
import type { Logger } from '../platform/logging/logger.ts';
import { testNatsUrl } from './support/nats.ts';
import { freePort, startProcess, type TestProcess } from './support/processes.ts';
import { startTcpProxy } from './support/tcp-proxy.ts';
import { freshDatabaseName } from './support/run.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };
const suffix = () => randomBytes(4).toString('hex');

/** A broker the test can take away and bring back, and a bus connected to it. */
interface Outage {
  bus: EventBus;
  breakBroker(): Promise<void>;
  restoreBroker(): Promise<void>;
  cleanup(): Promise<void>;
}

interface Adapter {
  name: string;
  setup(): Promise<void>;
  /** A new bus (a new "process") on this suite's stream or database. */
  create(): Promise<EventBus>;
  /** The same, redelivering a delivery whose process stopped after `ms` (ack wait, job expiry). */
  createRedeliveringAfter(ms: number): Promise<EventBus>;
  /** Creating a bus on a server nobody listens on. */
  createUnreachable(port: number): Promise<EventBus>;
  outage(): Promise<Outage>;
  teardown(): Promise<void>;
}

function natsAdapter(): Adapter {
  const id = suffix();
  const names = { stream: `CONTRACT_${id}`, subjectPrefix: `contract_${id}` };
  return {
    name: 'NATS JetStream',
    async setup() {},
    create: () => createJetStreamBus({ servers: testNatsUrl, ...names, logger: quiet }),
    createRedeliveringAfter: (ms) => createJetStreamBus({ servers: testNatsUrl, ...names, ackWaitMs: ms, logger: quiet }),
    createUnreachable: (port) => createJetStreamBus({ servers: `nats://127.0.0.1:${port}`, ...names, logger: quiet }),
    async outage() {
      const port = await freePort();
      const storeDir = await mkdtemp(join(tmpdir(), 'event-bus-nats-'));
      const startServer = async () => {
        const server = startProcess('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], process.env);
        await server.waitForOutput(/Server is ready/, 10_000);
        return server;
      };
      let server: TestProcess = await startServer();
      const bus = await createJetStreamBus({ servers: `nats://127.0.0.1:${port}`, stream: 'OUTAGE', subjectPrefix: 'outage', timeoutMs: 1_000, logger: quiet });
      return {
        bus,
        breakBroker: async () => void (await server.kill('SIGKILL')),
        restoreBroker: async () => void (server = await startServer()),
        async cleanup() {
          await bus.close();
          await server.kill('SIGKILL');
          await rm(storeDir, { recursive: true, force: true });
        },
      };
    },
    async teardown() {
      const nc = await connect({ servers: testNatsUrl });
      const jsm = await jetstreamManager(nc);
      for (const stream of [names.stream, `${names.stream}_DEAD_LETTERS`]) await jsm.streams.delete(stream).catch(() => false);
      await nc.close();
    },
  };
}

function postgresAdapter(): Adapter {
  let databaseUrl = '';
  return {
    name: 'PostgreSQL queue',
    async setup() {
      databaseUrl = withDatabase(inject('testServerUrl'), freshDatabaseName(inject('runPrefix'), 'events'));
      await ensureDatabase(databaseUrl);
    },
    create: () => createPostgresQueueBus({ databaseUrl, logger: quiet }),
    createRedeliveringAfter: (ms) => createPostgresQueueBus({ databaseUrl, handlerTimeoutMs: ms, pollingIntervalMs: 100, logger: quiet }),
    createUnreachable: (port) => createPostgresQueueBus({ databaseUrl: `postgres://postgres@127.0.0.1:${port}/nothing`, logger: quiet }),
    async outage() {
      const server = new URL(databaseUrl);
      const proxy = await startTcpProxy({ host: server.hostname, port: Number(server.port || 5432) });
      const proxied = new URL(databaseUrl);
      proxied.host = proxy.address;
      const bus = await createPostgresQueueBus({ databaseUrl: proxied.toString(), logger: quiet });
      return {
        bus,
        breakBroker: async () => proxy.pause(),
        restoreBroker: async () => proxy.resume(),
        async cleanup() {
          await bus.close();
          await proxy.close();
        },
      };
    },
    teardown: () => dropDatabase(databaseUrl),
  };
}

/** A product event of a type of the test's own. */
function eventOf(type: string, payload: Record<string, unknown> = {}): EventEnvelope {
  return createEnvelope(
    'catalog',
    { type, aggregateType: 'Product', aggregateId: randomUUID(), aggregateVersion: 1, payload },
    { correlationId: randomUUID(), causationId: randomUUID(), traceparent: null },
  );
}

/** Resolves once `condition` holds, polling; fails after `timeoutMs` naming what it waited for. */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A handler that records every delivery, and fails while `fails(event, attempt)` says so. */
function recorder(fails: (event: EventEnvelope, attempt: number) => string | false = () => false) {
  const deliveries: { eventId: string; event: EventEnvelope; attempt: number; at: number }[] = [];
  const handler: EventHandler = async (event, { attempt }) => {
    deliveries.push({ eventId: event.eventId, event, attempt, at: Date.now() });
    const error = fails(event, attempt);
    if (error) throw new Error(error);
  };
  const of = (event: EventEnvelope) => deliveries.filter((d) => d.eventId === event.eventId);
  return { handler, deliveries, of, ids: () => deliveries.map((d) => d.eventId) };
}

describe.each([natsAdapter(), postgresAdapter()])('the $name event bus', (adapter) => {
  const cleanups: (() => Promise<unknown>)[] = [];
  let type = '';
  let consumer = (name: string) => name;

  async function bus(): Promise<EventBus> {
    const created = await adapter.create();
    cleanups.push(() => created.close());
    return created;
  }

  beforeAll(() => adapter.setup());
  afterAll(() => adapter.teardown());
  beforeEach(() => {
    const id = suffix();
    type = `ProductCreated${id}`;
    consumer = (name) => `${name}-${id}`;
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('delivers a published event to every subscribed consumer', async () => {
    const events = await bus();
    const inventory = recorder();
    const orders = recorder();
    await events.subscribe(consumer('inventory'), { types: [type] }, inventory.handler);
    await events.subscribe(consumer('orders'), { types: [type] }, orders.handler);
    const event = eventOf(type, { name: 'Espresso cup', priceCents: 1_250 });
    await events.publish(event);
    await waitFor('both consumers', () => inventory.deliveries.length === 1 && orders.deliveries.length === 1);
    for (const { deliveries } of [inventory, orders]) expect(deliveries.map(({ event, attempt }) => ({ event, attempt }))).toEqual([{ event, attempt: 1 }]);
  });

  it('delivers only the requested event types', async () => {
    const events = await bus();
    const inventory = recorder();
    await events.subscribe(consumer('inventory'), { types: [type] }, inventory.handler);
    const unwanted = eventOf(`${type}Other`);
    const wanted = eventOf(type);
    await events.publish(unwanted);
    await events.publish(wanted);
    await waitFor('the requested event', () => inventory.deliveries.length === 1);
    await waitFor('no lag', async () => (await events.status()).find((s) => s.consumer === consumer('inventory'))?.lag === 0);
    expect(inventory.ids()).toEqual([wanted.eventId]);
  });

  it('does not deliver an event twice when it is published twice with the same eventId', async () => {
    const events = await bus();
    const inventory = recorder();
    await events.subscribe(consumer('inventory'), { types: [type] }, inventory.handler);
    const event = eventOf(type);
    const later = eventOf(type);
    await events.publish(event);
    await events.publish({ ...event });
    await events.publish(later);
    await waitFor('the later event', () => inventory.of(later).length === 1);
    expect(inventory.ids()).toEqual([event.eventId, later.eventId]);
  });

  it('redelivers an event whose handler failed, with the attempt number', async () => {
    const events = await bus();
    const inventory = recorder((_, attempt) => attempt < 3 && `stock service down (attempt ${attempt})`);
    await events.subscribe(consumer('inventory'), { types: [type], maxDeliveries: 5, backoffMs: [100, 300] }, inventory.handler);
    const event = eventOf(type);
    await events.publish(event);
    await waitFor('the third attempt', () => inventory.deliveries.length === 3);
    const [first, second, third] = inventory.deliveries;
    expect(inventory.deliveries.map((d) => d.attempt)).toEqual([1, 2, 3]);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(90);
    expect(third!.at - second!.at).toBeGreaterThanOrEqual(280);
    await waitFor('no lag', async () => (await events.status()).find((s) => s.consumer === consumer('inventory'))?.lag === 0);
    expect(await events.deadLetters(consumer('inventory'))).toEqual([]);
  });

  it('starts handlers in publish order when it handles several events at once', async () => {
    const events = await bus();
    const started: string[] = [];
    let running = 0;
    let most = 0;
    await events.subscribe(consumer('payments'), { types: [type], concurrency: 4 }, async (event) => {
      started.push(event.eventId);
      most = Math.max(most, ++running);
      await new Promise((resolve) => setTimeout(resolve, 30 + Math.random() * 40));
      running -= 1;
    });
    const published = Array.from({ length: 24 }, () => eventOf(type));
    for (const event of published) await events.publish(event);
    await waitFor('every event handled', async () => started.length === published.length && (await events.status()).find((s) => s.consumer === consumer('payments'))?.lag === 0, 20_000);
    expect(started).toEqual(published.map((event) => event.eventId));
    expect(most).toBeGreaterThan(1);
  });

  it('keeps the delivery of a handler that outlasts the redelivery time, and delivers it once, even with idle workers beside it', async () => {
    const events = await adapter.createRedeliveringAfter(1_000);
    cleanups.push(() => events.close());
    const slowPayments = recorder();
    await events.subscribe(consumer('payments'), { types: [type], concurrency: 3 }, async (event, delivery) => {
      await slowPayments.handler(event, delivery);
      await new Promise((resolve) => setTimeout(resolve, 4_000));
    });
    const event = eventOf(type);
    await events.publish(event);
    await waitFor('the delivery handled', async () => (await events.status()).find((s) => s.consumer === consumer('payments'))?.lag === 0, 15_000);
    // A stopped process's delivery would have been redelivered within this.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(slowPayments.deliveries.map((d) => d.attempt)).toEqual([1]);
    expect(await events.deadLetters(consumer('payments'))).toEqual([]);
  }, 30_000);

  it('parks an event as a dead letter with its error and attempt count after maxDeliveries', async () => {
    const events = await bus();
    const inventory = recorder(() => 'no stock record for this product');
    await events.subscribe(consumer('inventory'), { types: [type], maxDeliveries: 3, backoffMs: [50] }, inventory.handler);
    const event = eventOf(type);
    await events.publish(event);
    let parked: DeadLetter[] = [];
    await waitFor('a dead letter', async () => (parked = await events.deadLetters(consumer('inventory'))).length === 1);
    expect(parked[0]).toMatchObject({ consumer: consumer('inventory'), event, error: 'no stock record for this product', attempts: 3 });
    expect(Date.parse(parked[0]!.deadAt)).toBeGreaterThan(Date.now() - 60_000);
    await waitFor('no lag', async () => (await events.status()).find((s) => s.consumer === consumer('inventory'))?.lag === 0);
    expect(inventory.deliveries.map((d) => d.attempt)).toEqual([1, 2, 3]);
    expect(await events.deadLetters(consumer('orders'))).toEqual([]);
  });

  it('keeps delivering healthy events while a poison event waits for redelivery', async () => {
    const events = await bus();
    const poison = eventOf(type, { poison: true });
    const inventory = recorder((event) => event.eventId === poison.eventId && 'cannot parse the payload');
    await events.subscribe(consumer('inventory'), { types: [type], maxDeliveries: 3, backoffMs: [3_000] }, inventory.handler);
    const healthy = Array.from({ length: 5 }, () => eventOf(type));
    await events.publish(poison);
    for (const event of healthy) await events.publish(event);
    await waitFor('the healthy events', () => healthy.every((event) => inventory.of(event).length === 1), 2_500);
    expect(inventory.of(poison)).toHaveLength(1);
  });

  it('replays a dead letter to its consumer exactly once', async () => {
    const events = await bus();
    let broken = true;
    const inventory = recorder(() => broken && 'stock service down');
    const orders = recorder();
    await events.subscribe(consumer('inventory'), { types: [type], maxDeliveries: 2, backoffMs: [50] }, inventory.handler);
    await events.subscribe(consumer('orders'), { types: [type] }, orders.handler);
    const event = eventOf(type);
    await events.publish(event);
    let parked: DeadLetter[] = [];
    await waitFor('a dead letter', async () => (parked = await events.deadLetters(consumer('inventory'))).length === 1);

    broken = false;
    expect(await events.replayDeadLetters({ ids: [parked[0]!.id] })).toBe(1);
    expect(await events.replayDeadLetters({ ids: [parked[0]!.id] })).toBe(0);
    await waitFor('the replayed event', () => inventory.deliveries.length === 3);
    const marker = eventOf(type);
    await events.publish(marker);
    await waitFor('the marker at both consumers', () => inventory.of(marker).length === 1 && orders.of(marker).length === 1);

    expect(inventory.of(event).map((d) => d.attempt)).toEqual([1, 2, 3]);
    expect(orders.of(event)).toHaveLength(1);
    expect(await events.deadLetters()).not.toContainEqual(expect.objectContaining({ consumer: consumer('inventory') }));
    expect(await events.replayDeadLetters({ all: true, consumer: consumer('inventory') })).toBe(0);
  });

  it('handles at most `concurrency` events of a consumer at once', async () => {
    const events = await bus();
    let inFlight = 0;
    let most = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const handled: string[] = [];
    await events.subscribe(consumer('shipping'), { types: [type], concurrency: 3 }, async (event) => {
      most = Math.max(most, ++inFlight);
      await gate;
      inFlight -= 1;
      handled.push(event.eventId);
    });
    for (let i = 0; i < 5; i++) await events.publish(eventOf(type));
    await waitFor('three events in flight', () => inFlight === 3);
    release();
    await waitFor('all five events', () => handled.length === 5);
    expect(most).toBe(3);
  });

  it('resumes a durable consumer where it stopped: events published while it was away are delivered', async () => {
    const before = recorder();
    const first = await bus();
    const subscription = await first.subscribe(consumer('inventory'), { types: [type] }, before.handler);
    const handled = eventOf(type);
    await first.publish(handled);
    await waitFor('the first event', () => before.deliveries.length === 1);
    await subscription.stop();

    const whileAway = [eventOf(type), eventOf(type)];
    for (const event of whileAway) await first.publish(event);
    const after = recorder();
    const restarted = await bus();
    await restarted.subscribe(consumer('inventory'), { types: [type] }, after.handler);
    await waitFor('the events published while away', () => after.deliveries.length === 2);
    expect(after.ids()).toEqual(whileAway.map((event) => event.eventId));
  });

  it('keeps events for a consumer that was declared but has not subscribed yet', async () => {
    const events = await bus();
    await events.declareConsumer(consumer('inventory'), { types: [type] });
    const published = [eventOf(type), eventOf(type)];
    for (const event of published) await events.publish(event);
    const late = recorder();
    await events.subscribe(consumer('inventory'), { types: [type] }, late.handler);
    await waitFor('the events published before the first subscribe', () => late.deliveries.length === 2);
    expect(late.ids()).toEqual(published.map((event) => event.eventId));
  });

  it('reports lag per consumer and the dead-letter count', async () => {
    const events = await bus();
    const idle = await events.subscribe(consumer('inventory'), { types: [type] }, async () => {});
    await idle.stop();
    const published = [eventOf(type), eventOf(type), eventOf(type, { poison: true })];
    for (const event of published) await events.publish(event);
    expect(await events.status()).toContainEqual({ consumer: consumer('inventory'), lag: 3, deadLetters: 0 });

    const inventory = recorder((event) => event.payload.poison === true && 'cannot reserve stock');
    await events.subscribe(consumer('inventory'), { types: [type], maxDeliveries: 1 }, inventory.handler);
    await waitFor('lag 0 and one dead letter', async () => {
      const status = (await events.status()).find((s) => s.consumer === consumer('inventory'));
      return status?.lag === 0 && status.deadLetters === 1;
    });
  });

  it('keeps publishing after the broker was unreachable for several seconds', async () => {
    const outage = await adapter.outage();
    cleanups.push(() => outage.cleanup());
    const inventory = recorder();
    await outage.bus.subscribe(consumer('inventory'), { types: [type] }, inventory.handler);
    const before = eventOf(type);
    await outage.bus.publish(before);
    await waitFor('the event before the outage', () => inventory.deliveries.length === 1);

    await outage.breakBroker();
    await expect(outage.bus.publish(eventOf(type))).rejects.toThrow();
    await new Promise((resolve) => setTimeout(resolve, 3_000)); // the outage itself
    await outage.restoreBroker();

    const after = eventOf(type);
    await waitFor('a publish to succeed', () => outage.bus.publish(after).then(() => true, () => false), 15_000);
    await waitFor('the event after the outage', () => inventory.of(after).length === 1, 15_000);
  });

  it('refuses consumer names, event types and events it could not route on every bus', async () => {
    const events = await bus();
    await expect(events.subscribe('inventory.v2', { types: [type] }, async () => {})).rejects.toThrow(/Invalid consumer name/);
    await expect(events.subscribe(consumer('inventory'), { types: ['Product.*'] }, async () => {})).rejects.toThrow(/types must be/);
    await expect(events.subscribe(consumer('inventory'), { types: [type], maxDeliveries: 0 }, async () => {})).rejects.toThrow(/maxDeliveries/);
    await expect(events.publish({ ...eventOf(type), aggregateType: 'Product line' })).rejects.toThrow(/aggregateType/);
  });

  it('fails at creation with a clear error when its server is unreachable', async () => {
    await expect(adapter.createUnreachable(await freePort())).rejects.toThrow(/Cannot (reach NATS|start the PostgreSQL event bus)/);
  });
});

describe('createEventBus', () => {
  it('chooses NATS JetStream when NATS_URL is set, else the PostgreSQL queue in the derived events database', async () => {
    const id = suffix();
    const nats = await createEventBus({ NATS_URL: testNatsUrl }, { nats: { stream: `FACTORY_${id}`, subjectPrefix: `factory_${id}`, logger: quiet } });
    await nats.close();
    const databaseUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_factory_${id}`);
    const postgres = await createEventBus({ DATABASE_URL: databaseUrl }, { postgres: { logger: quiet } });
    await postgres.close();
    const nc = await connect({ servers: testNatsUrl });
    const jsm = await jetstreamManager(nc);
    for (const stream of [`FACTORY_${id}`, `FACTORY_${id}_DEAD_LETTERS`]) await jsm.streams.delete(stream);
    await nc.close();
    await dropDatabase(deriveDatabaseUrl(databaseUrl, 'events'));
    expect([nats.kind, postgres.kind]).toEqual(['nats', 'postgres']);
  });

  it('refuses to start without any bus configured, saying what to set', async () => {
    await expect(createEventBus({})).rejects.toThrow(/NATS_URL.*EVENT_BUS_DATABASE_URL.*DATABASE_URL/);
  });
});
