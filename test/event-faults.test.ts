/**
 * End-to-end faults of the event pipeline, on real servers: a transaction in a catalog database
 * (a product inserted + its ProductCreated event appended to the outbox) → the outbox relay →
 * a real bus (NATS JetStream, or the PostgreSQL queue) → the inventory consumer in a database of
 * its own, applying a NON-idempotent effect (`available = available + 1` on the product's stock)
 * through the inbox. Processes are killed, brokers taken away, messages delivered several
 * times, a poison event parked; every test ends with "nothing lost, nothing applied twice":
 * each event's product has exactly 1 unit of stock, and the inbox holds exactly the events.
 *
 * The relay-only and inbox-only versions of these faults are in outbox-relay.test.ts and
 * inbox.test.ts, the bus-only ones in event-bus.contract.test.ts.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { PrismaClient as InventoryClient } from '../prisma/inventory/client/client.ts';
import { withDatabase } from '../platform/config.ts';
import { prismaClientOptions } from '../platform/database/prisma.ts';
import { dropDatabase, ensureDatabase } from '../platform/database/provision.ts';
import type { EventBus, SubscribeOptions } from '../platform/events/bus.ts';
import { createEventBus, type EventBusFactoryOptions } from '../platform/events/bus/factory.ts';
import { createEnvelope, type EventEnvelope } from '../platform/events/envelope.ts';
import { appendToOutbox } from '../platform/events/outbox.ts';
import { OutboxRelay } from '../platform/events/relay.ts';
import { asTransaction, connect, quietLogger, sleep } from './support/events.ts';
import { childEnv, faultEventType, readDeliveries, receiveStock, type FaultDelivery } from './support/fault-harness.ts';
import { testNatsUrl } from './support/nats.ts';
import { cloneDatabase } from './support/postgres.ts';
import { freePort, startProcess, type TestProcess } from './support/processes.ts';
import { freshDatabaseName, templateDatabaseName } from './support/run.ts';
import { startTcpProxy } from './support/tcp-proxy.ts';

type Kind = 'postgres' | 'nats';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const consumer = 'inventory';
const hex = () => randomBytes(4).toString('hex');

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  const failures: unknown[] = [];
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((error) => failures.push(error));
  if (failures.length > 0) throw new AggregateError(failures, 'cleanup failed');
});

// ——— the bus ———

/** A bus of one test: a pg-boss database or a JetStream stream of its own, reachable by children too. */
interface FaultBus {
  kind: Kind;
  /** What createEventBus reads (a child process gets exactly this). */
  env: Record<string, string>;
  /** createEventBus's options, the same in every process (JSON: no logger). */
  options: EventBusFactoryOptions;
  /** A new connection to the bus (as another process would have), closed after the test. */
  open(): Promise<EventBus>;
}

interface BusSettings {
  nats?: { servers?: string; ackWaitMs?: number; duplicateWindowMs?: number; timeoutMs?: number };
  postgres?: { handlerTimeoutMs?: number };
  /** For the PostgreSQL queue: reach its database through this `host:port` (a TCP proxy). */
  postgresVia?: (databaseUrl: string) => Promise<string>;
}

async function faultBus(kind: Kind, settings: BusSettings = {}): Promise<FaultBus> {
  let env: Record<string, string>;
  let options: EventBusFactoryOptions;
  if (kind === 'postgres') {
    const databaseUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_faultbus_${hex()}`);
    await ensureDatabase(databaseUrl);
    cleanups.push(() => dropDatabase(databaseUrl));
    const reachedAt = settings.postgresVia ? await settings.postgresVia(databaseUrl) : databaseUrl;
    env = { EVENT_BUS_DATABASE_URL: reachedAt };
    options = { postgres: { pollingIntervalMs: 100, ...settings.postgres } };
  } else {
    const { servers = testNatsUrl, ...nats } = settings.nats ?? {};
    const stream = `FAULTS_${hex().toUpperCase()}`;
    env = { NATS_URL: servers, NATS_STREAM: stream, NATS_SUBJECT_PREFIX: `faults${hex()}` };
    options = { nats };
    cleanups.push(() => deleteStreams(servers, stream, `${stream}_DEAD_LETTERS`));
  }
  return {
    kind,
    env,
    options,
    async open() {
      const bus = await createEventBus(env, {
        nats: { ...options.nats, logger: quietLogger },
        postgres: { ...options.postgres, logger: quietLogger },
      });
      cleanups.push(() => bus.close());
      return bus;
    },
  };
}

/**
 * A bus whose broker the test can take away and bring back. NATS: a private nats-server, stopped
 * (SIGTERM) and restarted on the same store directory. PostgreSQL queue: its database behind a
 * TCP proxy, paused (the contexts' databases stay reachable).
 */
async function breakableBus(kind: Kind): Promise<{ bus: FaultBus; breakBroker(): Promise<void>; restoreBroker(): Promise<void> }> {
  if (kind === 'nats') {
    const port = await freePort();
    const storeDir = await scratchDir();
    let server: TestProcess | undefined;
    const startServer = async () => {
      server = startProcess('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], process.env);
      await server.waitForOutput(/Server is ready/, 10_000);
    };
    await startServer();
    cleanups.push(async () => server?.kill('SIGKILL'));
    // A short ackWait: an acknowledgement lost in the outage is redelivered soon (and found in the inbox).
    const bus = await faultBus('nats', { nats: { servers: `nats://127.0.0.1:${port}`, ackWaitMs: 2_000, timeoutMs: 1_000 } });
    return { bus, breakBroker: async () => void (await server!.kill('SIGTERM')), restoreBroker: startServer };
  }
  let proxy: Awaited<ReturnType<typeof startTcpProxy>> | undefined;
  const bus = await faultBus('postgres', {
    postgresVia: async (databaseUrl) => {
      const url = new URL(databaseUrl);
      proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
      cleanups.push(() => proxy!.close());
      url.host = proxy.address;
      return url.toString();
    },
  });
  return { bus, breakBroker: async () => proxy!.pause(), restoreBroker: async () => proxy!.resume() };
}

async function deleteStreams(servers: string, ...streams: string[]): Promise<void> {
  const nc = await connectNats({ servers, timeout: 2_000 }).catch(() => undefined);
  if (!nc) return; // a private server already gone takes its streams with it
  try {
    const jsm = await jetstreamManager(nc);
    for (const stream of streams) await jsm.streams.delete(stream).catch(() => false);
  } finally {
    await nc.close();
  }
}

// ——— the two contexts ———

interface Contexts {
  catalogUrl: string;
  inventoryUrl: string;
  /** Plain connections, for producing (catalog) and checking (both). */
  catalog: pg.Client;
  inventory: pg.Client;
  /** The inventory's Prisma client, for consumers in this process. */
  inventoryDb: InventoryClient;
  /** Commits `count` transactions, each inserting a product and appending its ProductCreated. */
  produce(count: number, options?: { poison?: boolean }): Promise<EventEnvelope[]>;
  /** Begins one such transaction on a connection of its own and leaves it open until `commit`. */
  begin(): Promise<{ event: EventEnvelope; commit(): Promise<void> }>;
}

async function contexts(): Promise<Contexts> {
  const runPrefix = inject('runPrefix');
  const clone = async (context: 'catalog' | 'inventory') => {
    const url = await cloneDatabase(inject('testServerUrl'), templateDatabaseName(runPrefix, context), freshDatabaseName(runPrefix, context));
    cleanups.push(() => dropDatabase(url));
    return url;
  };
  const catalogUrl = await clone('catalog');
  const inventoryUrl = await clone('inventory');
  const catalog = await connect(catalogUrl);
  const inventory = await connect(inventoryUrl);
  cleanups.push(() => catalog.end(), () => inventory.end());
  const inventoryDb = new InventoryClient(prismaClientOptions(inventoryUrl, 4));
  cleanups.push(() => inventoryDb.$disconnect());
  const categoryId = randomUUID();
  await catalog.query('INSERT INTO categories (id, slug, name) VALUES ($1, $2, $3)', [categoryId, `tools-${hex()}`, 'Tools']);
  let produced = 0;

  return {
    catalogUrl,
    inventoryUrl,
    catalog,
    inventory,
    inventoryDb,
    async produce(count, { poison = false } = {}) {
      const events: EventEnvelope[] = [];
      for (let i = 0; i < count; i++) {
        await catalog.query('BEGIN');
        try {
          events.push(await insertProduct(catalog, poison));
          await catalog.query('COMMIT');
        } catch (error) {
          await catalog.query('ROLLBACK').catch(() => {});
          throw error;
        }
      }
      return events;
    },
    async begin() {
      const own = await connect(catalogUrl);
      cleanups.push(() => own.end());
      await own.query('BEGIN');
      const event = await insertProduct(own, false);
      return { event, commit: async () => void (await own.query('COMMIT')) };
    },
  };

  /** Inserts a product and appends its event, in the transaction open on `client`. */
  async function insertProduct(client: pg.Client, poison: boolean): Promise<EventEnvelope> {
    const productId = randomUUID();
    const sku = `F-${++produced}-${hex()}`;
    const name = poison ? 'poison' : `Hammer ${produced}`;
    const event = createEnvelope(
      'catalog',
      {
        type: faultEventType,
        aggregateType: 'Product',
        aggregateId: productId,
        aggregateVersion: 1,
        payload: { productId, sku, name, price: 1_000 + produced, currency: 'EUR', categoryId },
      },
      { correlationId: randomUUID(), causationId: randomUUID() },
    );
    await client.query(
      `INSERT INTO products (id, sku, name, price_amount, currency, category_id, updated_at) VALUES ($1, $2, $3, $4, 'EUR', $5, now())`,
      [productId, sku, name, 1_000 + produced, categoryId],
    );
    await appendToOutbox(asTransaction(client), [event]);
    return event;
  }
}

// ——— relays, consumers, processes ———

function startRelay(databaseUrl: string, publish: (event: EventEnvelope) => Promise<void>): OutboxRelay {
  const relay = new OutboxRelay({ databaseUrl, publish, pollIntervalMs: 100, retryBackoffMs: [100, 250, 500], logger: quietLogger }).start();
  cleanups.push(() => relay.stop());
  return relay;
}

/** The inventory consumer in this process; every delivery is recorded in `deliveries`. */
async function consumeHere(
  bus: EventBus,
  db: InventoryClient,
  deliveries: FaultDelivery[],
  options: Partial<SubscribeOptions> & {
    fail?: (event: EventEnvelope) => string | false;
    /** Runs once the inbox committed, before the handler returns (and the bus acknowledges). */
    afterCommit?: (event: EventEnvelope) => Promise<void>;
  } = {},
): Promise<void> {
  const { fail, afterCommit, ...subscribeOptions } = options;
  const subscription = await bus.subscribe(consumer, { types: [faultEventType], ...subscribeOptions }, async (event, { attempt }) => {
    try {
      const outcome = await receiveStock(db, consumer, event, fail);
      deliveries.push({ process: 'test', eventId: event.eventId, attempt, outcome, at: Date.now() });
      await afterCommit?.(event);
    } catch (error) {
      deliveries.push({ process: 'test', eventId: event.eventId, attempt, outcome: `failed: ${(error as Error).message}`, at: Date.now() });
      throw error;
    }
  });
  cleanups.push(() => subscription.stop());
}

/** A test script in a process of its own (node itself, not the tsx CLI: a SIGKILL kills the very process). */
function startChild(script: string, args: string[], bus: FaultBus): TestProcess {
  const child = startProcess(
    process.execPath,
    ['--import', 'tsx', script, ...args, '--bus-options', JSON.stringify(bus.options)],
    childEnv(bus.env),
    repoRoot,
  );
  cleanups.push(() => child.kill('SIGKILL'));
  return child;
}

async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'event-faults-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves once `condition` holds; the error says what was awaited and, from `details`, what was seen. */
/**
 * Waits for a condition. The budgets are 3× what a quiet machine needs: on a loaded 2-core CI
 * machine a slow pass is not a failure, only a condition that never holds is.
 */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>, quietTimeoutMs: number, details?: () => string | Promise<string>) {
  const timeoutMs = quietTimeoutMs * 3;
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${details ? `\n${await details()}` : ''}`);
    await sleep(50);
  }
}

async function inboxIds(inventory: pg.Client): Promise<string[]> {
  const { rows } = await inventory.query<{ id: string }>('SELECT event_id::text AS id FROM inbox_events WHERE consumer = $1', [consumer]);
  return rows.map((row) => row.id);
}

async function stockByProduct(inventory: pg.Client): Promise<Record<string, number>> {
  const { rows } = await inventory.query<{ id: string; available: number }>('SELECT product_id::text AS id, available FROM stock_items');
  return Object.fromEntries(rows.map((row) => [row.id, row.available]));
}

/**
 * Nothing lost, nothing applied twice: waits until the inbox holds every event, lets late
 * redeliveries arrive, then checks every product's stock (exactly 1 each, no other rows), the
 * inbox (exactly these events) and the outbox (every row published).
 */
async function expectEachAppliedOnce(ctx: Contexts, events: EventEnvelope[], timeoutMs: number, details?: () => string): Promise<void> {
  const wanted = new Set(events.map((e) => e.eventId));
  await waitFor(`all ${events.length} events applied`, async () => (await inboxIds(ctx.inventory)).filter((id) => wanted.has(id)).length === wanted.size, timeoutMs, async () => {
    const seen = new Set(await inboxIds(ctx.inventory));
    const missing = events.filter((e) => !seen.has(e.eventId)).map((e) => e.eventId);
    const { rows } = await ctx.catalog.query<{ n: string }>('SELECT count(*) AS n FROM outbox_events WHERE published_at IS NULL');
    return `missing ${missing.length}: ${missing.join(', ')}\nunpublished outbox rows: ${rows[0]!.n}\n${details?.() ?? ''}`;
  });
  await sleep(300); // a redelivery applied twice would show by now

  expect(await stockByProduct(ctx.inventory)).toEqual(Object.fromEntries(events.map((e) => [e.aggregateId, 1])));
  expect((await inboxIds(ctx.inventory)).sort()).toEqual([...wanted].sort());
  // Every row marked published in the end. Not necessarily by now: a publish the broker accepted
  // while its answer was lost (the outage) is retried after the relay's back-off, and the
  // consumer may well have applied the first copy already.
  const outbox = async () =>
    (
      await ctx.catalog.query<{ total: string; unpublished: string }>(
        'SELECT count(*) AS total, count(*) FILTER (WHERE published_at IS NULL) AS unpublished FROM outbox_events',
      )
    ).rows[0]!;
  await waitFor('every outbox row marked published', async () => (await outbox()).unpublished === '0', timeoutMs, async () => JSON.stringify(await outbox()));
  expect(await outbox()).toEqual({ total: String(events.length), unpublished: '0' });
}

const outcomesOf = (deliveries: FaultDelivery[], event: EventEnvelope) =>
  deliveries.filter((d) => d.eventId === event.eventId).sort((a, b) => a.attempt - b.attempt || a.at - b.at);

// ——— the tests ———

describe.each<Kind>(['postgres', 'nats'])('events end to end on the %s bus', { timeout: 120_000 }, (kind) => {
  it('holds back events committed while an earlier transaction is still open, then delivers all of them in transaction order, each once', async () => {
    const ctx = await contexts();
    const bus = await faultBus(kind);
    const here = await bus.open();
    const deliveries: FaultDelivery[] = [];
    await consumeHere(here, ctx.inventoryDb, deliveries);
    startRelay(ctx.catalogUrl, (event) => here.publish(event));

    const slow = await ctx.begin();
    const fast = await ctx.produce(3);
    // A relay reading "id > last id" would publish the three now and never come back for the slow one.
    await sleep(500);
    expect(deliveries).toEqual([]);

    await slow.commit();
    await expectEachAppliedOnce(ctx, [slow.event, ...fast], 20_000);
    expect(deliveries.map((d) => d.eventId)).toEqual([slow.event, ...fast].map((e) => e.eventId));
  });

  it('loses nothing and applies nothing twice when the relay is SIGKILLed between publishing and marking rows published', async () => {
    const ctx = await contexts();
    const bus = await faultBus(kind);
    const here = await bus.open();
    const deliveries: FaultDelivery[] = [];
    await consumeHere(here, ctx.inventoryDb, deliveries);
    const publishedFile = join(await scratchDir(), 'published.txt');
    const doomed = startChild('test/support/fault-relay.ts', [ctx.catalogUrl, publishedFile, '--crash-after', '5'], bus);
    await doomed.waitForOutput(/^leading$/, 20_000);
    // A second relay waits on the lock, to take over from the one about to die.
    const publishedBySuccessor: string[] = [];
    const successor = startRelay(ctx.catalogUrl, async (event) => {
      await here.publish(event);
      publishedBySuccessor.push(event.eventId);
    });
    await waitFor('the successor to wait for the lock', () => successor.state === 'waiting', 5_000);

    const events = await ctx.produce(20);

    await doomed.exited;
    expect(doomed.child.signalCode).toBe('SIGKILL');
    const publishedByDoomed = (await readFile(publishedFile, 'utf8')).trim().split('\n');
    expect(publishedByDoomed).toHaveLength(5);
    await expectEachAppliedOnce(ctx, events, 20_000, () => doomed.output());
    // The killed relay's last event reached the broker but its row was never marked: the
    // successor published it again, and the broker and the inbox absorbed the copy.
    expect(publishedBySuccessor).toContain(publishedByDoomed.at(-1));
    expect(new Set([...publishedByDoomed, ...publishedBySuccessor])).toEqual(new Set(events.map((e) => e.eventId)));
    expect(deliveries.filter((d) => d.outcome === 'applied')).toHaveLength(events.length);
  }, 40_000);

  it('loses nothing when the broker is unreachable for several seconds while events are produced', async () => {
    const ctx = await contexts();
    const { bus, breakBroker, restoreBroker } = await breakableBus(kind);
    // The relay and the consumer each have a connection of their own, as in two processes.
    const relayBus = await bus.open();
    const consumerBus = await bus.open();
    const deliveries: FaultDelivery[] = [];
    await consumeHere(consumerBus, ctx.inventoryDb, deliveries);
    let refused = 0;
    startRelay(ctx.catalogUrl, (event) =>
      relayBus.publish(event).catch((error: unknown) => {
        refused += 1;
        throw error;
      }),
    );

    const events: EventEnvelope[] = [];
    let producing = true;
    const producer = (async () => {
      while (producing) {
        events.push(...(await ctx.produce(1)));
        await sleep(100);
      }
    })();
    cleanups.push(async () => {
      producing = false;
      await producer.catch(() => {});
    });
    await waitFor('events to flow before the outage', () => deliveries.length >= 5, 10_000);

    await breakBroker();
    const producedBeforeOutage = events.length;
    await sleep(3_000);
    await restoreBroker();
    const producedDuringOutage = events.length - producedBeforeOutage;
    await sleep(500);
    producing = false;
    await producer;

    expect(producedDuringOutage).toBeGreaterThanOrEqual(10);
    await expectEachAppliedOnce(ctx, events, 30_000);
    // The relay did meet the outage: its publishes were refused until the broker was back.
    expect(refused).toBeGreaterThan(0);
    expect(deliveries.filter((d) => d.outcome === 'applied')).toHaveLength(events.length);
  }, 60_000);

  it('leaves nothing unacknowledged when the broker goes away between the committed effect and the acknowledgement', async () => {
    const ctx = await contexts();
    const { bus, breakBroker, restoreBroker } = await breakableBus(kind);
    const relayBus = await bus.open();
    const consumerBus = await bus.open();
    const deliveries: FaultDelivery[] = [];
    let outage: Promise<void> | undefined;
    await consumeHere(consumerBus, ctx.inventoryDb, deliveries, {
      // The third event's effect is committed; then the broker goes away, for 3 s, before the
      // handler returns: its acknowledgement (NATS ack, pg-boss complete) cannot reach the broker.
      afterCommit: async () => {
        if (outage || deliveries.length < 3) return;
        await breakBroker();
        outage = sleep(3_000).then(restoreBroker);
      },
    });
    startRelay(ctx.catalogUrl, (event) => relayBus.publish(event));

    const events = await ctx.produce(10);
    await waitFor('the outage', () => outage !== undefined, 10_000);
    await outage;

    await expectEachAppliedOnce(ctx, events, 20_000);
    // Nothing left hanging at the broker: the acknowledgement arrived after all, or the event was
    // redelivered, found in the inbox and acknowledged then. (handlerTimeoutMs is 5 min, the ack wait 2 s.)
    await waitFor('no lag', async () => (await consumerBus.status().catch(() => []))
      .find((s) => s.consumer === consumer)?.lag === 0, 10_000, async () => JSON.stringify(await consumerBus.status()));
  }, 45_000);

  it('applies each event exactly once when every message is delivered three times', async () => {
    const ctx = await contexts();
    const bus = await faultBus(kind);
    const file = join(await scratchDir(), 'deliveries.jsonl');
    // Two processes of the same durable consumer; each loses the acknowledgement of the first two
    // deliveries of every event (after the inbox committed), so the bus delivers each one three
    // times, to either process.
    const processes: TestProcess[] = [];
    for (const name of ['one', 'two']) {
      const child = startChild(
        'test/support/fault-consumer.ts',
        [ctx.inventoryUrl, consumer, file, '--name', name, '--lose-acks-below', '3', '--max-deliveries', '5', '--backoff-ms', '50', '--concurrency', '2'],
        bus,
      );
      // One after the other: two processes declaring a new consumer at the very same moment is
      // the next test's subject.
      await child.waitForOutput(/^subscribed$/, 20_000);
      processes.push(child);
    }
    const relayBus = await bus.open();
    const relay = startRelay(ctx.catalogUrl, (event) => relayBus.publish(event));
    const since = new Date(Date.now() - 1_000);

    const events = await ctx.produce(20);
    // And the relay publishes every envelope three times, with the same eventId.
    for (let copy = 2; copy <= 3; copy++) {
      await waitFor('the outbox published', async () => (await relay.backlog()) === 0, 10_000);
      expect(await relay.republish({ since })).toBe(events.length);
    }

    const output = () => processes.map((child) => child.output()).join('\n');
    await expectEachAppliedOnce(ctx, events, 30_000, output);
    await waitFor('every event acknowledged on its third delivery', () => readDeliveries(file).length >= 3 * events.length, 20_000, output);
    await waitFor('no lag', async () => (await relayBus.status()).find((s) => s.consumer === consumer)?.lag === 0, 10_000);
    await sleep(300);
    const deliveries = readDeliveries(file);
    for (const event of events) {
      // The republished copies were dropped by the broker's de-duplication: three deliveries, not more.
      expect(outcomesOf(deliveries, event).map((d) => [d.attempt, d.outcome])).toEqual([
        [1, 'applied'],
        [2, 'duplicate'],
        [3, 'duplicate'],
      ]);
    }
    expect(new Set(deliveries.map((d) => d.process))).toEqual(new Set(['one', 'two']));
    expect(await relayBus.deadLetters(consumer)).toEqual([]);
  }, 60_000);

  it('loses nothing when two processes of a new consumer subscribe at the same moment', async () => {
    // As two replicas of a context starting together on a fresh bus (or every process declaring
    // every consumer at start, see platform/events/consumers.ts). Two bus connections of this
    // process stand for the two processes: each has its own connections, as a process would, and
    // the two subscribe calls are made to overlap, which two real processes only do by chance.
    const ctx = await contexts();
    const bus = await faultBus(kind);
    const [one, two] = [await bus.open(), await bus.open()];
    const deliveries: FaultDelivery[] = [];
    const subscribed = await Promise.allSettled([one, two].map((replica) => consumeHere(replica, ctx.inventoryDb, deliveries)));
    expect(subscribed.filter((result) => result.status === 'rejected').map((result) => String((result as PromiseRejectedResult).reason))).toEqual([]);
    startRelay(ctx.catalogUrl, (event) => one.publish(event));

    const events = await ctx.produce(20);

    await expectEachAppliedOnce(ctx, events, 15_000);
    expect(deliveries.filter((d) => d.outcome === 'applied')).toHaveLength(events.length);
  }, 30_000);

  it('keeps healthy events flowing past a poison event, and parks the poison one', async () => {
    const ctx = await contexts();
    const bus = await faultBus(kind);
    const here = await bus.open();
    const deliveries: FaultDelivery[] = [];
    let fixed = false;
    await consumeHere(here, ctx.inventoryDb, deliveries, {
      maxDeliveries: 3,
      backoffMs: [1_000],
      fail: (event) => !fixed && (event.payload as { name?: string }).name === 'poison' && 'no stock record can be made for this product',
    });
    startRelay(ctx.catalogUrl, (event) => here.publish(event));

    const before = await ctx.produce(5);
    const [poison] = (await ctx.produce(1, { poison: true })) as [EventEnvelope];
    const after = await ctx.produce(15);
    const healthy = [...before, ...after];

    await waitFor('the poison event parked', async () => (await here.deadLetters(consumer)).length === 1, 15_000, () => JSON.stringify(deliveries));
    const [parked] = await here.deadLetters(consumer);
    expect(parked).toMatchObject({ consumer, event: poison, error: 'no stock record can be made for this product', attempts: 3 });
    await waitFor('no lag', async () => (await here.status()).find((s) => s.consumer === consumer)?.lag === 0, 10_000);
    // Each healthy event applied once, and all of them before the poison's last attempt: none waited for it.
    const applied = deliveries.filter((d) => d.outcome === 'applied');
    expect(applied.map((d) => d.eventId).sort()).toEqual(healthy.map((e) => e.eventId).sort());
    const poisonAttempts = outcomesOf(deliveries, poison);
    expect(poisonAttempts.map((d) => [d.attempt, d.outcome])).toEqual([1, 2, 3].map((attempt) => [attempt, 'failed: no stock record can be made for this product']));
    expect(Math.max(...applied.map((d) => d.at))).toBeLessThan(poisonAttempts[2]!.at);
    // The failed effect left nothing behind: no stock, no inbox row.
    expect(await stockByProduct(ctx.inventory)).not.toHaveProperty(poison.aggregateId);
    expect(await inboxIds(ctx.inventory)).not.toContain(poison.eventId);

    // Fixed and replayed: the poison event is applied too, once, and nothing else again.
    fixed = true;
    expect(await here.replayDeadLetters({ all: true, consumer })).toBe(1);
    await expectEachAppliedOnce(ctx, [...before, poison, ...after], 15_000, () => JSON.stringify(deliveries));
    expect(outcomesOf(deliveries, poison).at(-1)).toMatchObject({ attempt: 4, outcome: 'applied' });
    expect(await here.status()).toContainEqual({ consumer, lag: 0, deadLetters: 0 });
  }, 40_000);
});

describe.each(['postgres', 'nats'] as const)('a consumer killed between its commit and its acknowledgement (%s)', { timeout: 120_000 }, (kind) => {
  // The broker redelivers a delivery whose process died once its ack wait (NATS) or its expiry
  // (pg-boss, noticed by a maintenance run every half of it) has passed: 1.5 s here.
  it('does not apply an effect twice when the consumer process is SIGKILLed after committing its effect and before acknowledging', async () => {
    const ctx = await contexts();
    const bus = await faultBus(kind, kind === 'nats' ? { nats: { ackWaitMs: 1_500 } } : { postgres: { handlerTimeoutMs: 1_500 } });
    const file = join(await scratchDir(), 'deliveries.jsonl');
    const consumerArgs = (name: string, ...more: string[]) => [ctx.inventoryUrl, consumer, file, '--name', name, ...more];
    const first = startChild('test/support/fault-consumer.ts', consumerArgs('first', '--kill-after-first'), bus);
    await first.waitForOutput(/^subscribed$/, 20_000);
    const relayBus = await bus.open();
    startRelay(ctx.catalogUrl, (event) => relayBus.publish(event));

    const events = await ctx.produce(20);

    await first.exited;
    expect(first.child.signalCode).toBe('SIGKILL');
    const [killed, ...none] = readDeliveries(file);
    expect(none).toEqual([]);
    expect(killed).toMatchObject({ process: 'first', attempt: 1, outcome: 'applied' });
    // Its effect is committed although the bus never heard of it.
    const killedEvent = events.find((e) => e.eventId === killed!.eventId)!;
    expect((await stockByProduct(ctx.inventory))[killedEvent.aggregateId]).toBe(1);

    // A fresh process of the same durable consumer.
    const second = startChild('test/support/fault-consumer.ts', consumerArgs('second'), bus);
    await expectEachAppliedOnce(ctx, events, 20_000, () => `${first.output()}\n${second.output()}`);
    await waitFor('the redelivery of the killed delivery', () => readDeliveries(file).some((d) => d.process === 'second' && d.eventId === killed!.eventId), 10_000);
    const deliveries = readDeliveries(file);
    expect(deliveries.filter((d) => d.eventId === killed!.eventId).map((d) => [d.process, d.outcome])).toEqual([
      ['first', 'applied'],
      ['second', 'duplicate'],
    ]);
    expect(deliveries.find((d) => d.process === 'second' && d.eventId === killed!.eventId)!.attempt).toBeGreaterThanOrEqual(2);
    for (const event of events) expect(deliveries.filter((d) => d.eventId === event.eventId && d.outcome === 'applied')).toHaveLength(1);
  }, 40_000);
});

describe('events end to end on the nats bus, where the broker can forget an eventId', { timeout: 120_000 }, () => {
  it('applies each event exactly once when the relay republishes every event twice after the broker forgot it', async () => {
    // After a broker restore (or days later), the de-duplication window has passed: the copies are
    // new messages to the broker, and only the inbox stands between them and a second effect.
    // The PostgreSQL queue keeps a job's id for as long as the job (up to duplicateWindowMs, 12 h,
    // and at least until a maintenance run archives it), so there the copies are dropped instead.
    const duplicateWindowMs = 500;
    const ctx = await contexts();
    const bus = await faultBus('nats', { nats: { duplicateWindowMs } });
    const here = await bus.open();
    const deliveries: FaultDelivery[] = [];
    await consumeHere(here, ctx.inventoryDb, deliveries, { concurrency: 4 });
    const relay = startRelay(ctx.catalogUrl, (event) => here.publish(event));
    const since = new Date(Date.now() - 1_000);

    const events = await ctx.produce(20);
    await waitFor('every event delivered once', () => deliveries.length >= events.length, 10_000);
    for (let copy = 2; copy <= 3; copy++) {
      await waitFor('the outbox published', async () => (await relay.backlog()) === 0, 10_000);
      await sleep(duplicateWindowMs * 2 + 200);
      expect(await relay.republish({ since })).toBe(events.length);
      await waitFor(`every event delivered ${copy} times`, () => deliveries.length >= copy * events.length, 10_000);
    }

    await expectEachAppliedOnce(ctx, events, 10_000);
    for (const event of events) {
      expect(outcomesOf(deliveries, event).map((d) => d.outcome).sort()).toEqual(['applied', 'duplicate', 'duplicate']);
    }
  }, 40_000);
});
