/**
 * The outbox and its relay on a real PostgreSQL: events commit with their transaction or not at
 * all, and the relay publishes them in transaction order, at least once, never skipping a row of
 * a transaction still in flight, through crashes, broker outages and changes of leader. Most
 * tests drive the relay with a publish function that records what it was given: they test the
 * relay, not a broker.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PrismaClient as CatalogClient } from '../prisma/catalog/client/client.ts';
import { PrismaClient as InventoryClient } from '../prisma/inventory/client/client.ts';
import { prismaClientOptions } from '../platform/database/prisma.ts';
import type { EventEnvelope } from '../platform/events/envelope.ts';
import { createEventBus } from '../platform/events/bus/factory.ts';
import { handleOnce, type InboxOutcome } from '../platform/events/inbox.ts';
import { appendToOutbox } from '../platform/events/outbox.ts';
import { OutboxRelay, type OutboxRelayOptions } from '../platform/events/relay.ts';
import { testNatsUrl } from './support/nats.ts';
import { startProcess, type TestProcess } from './support/processes.ts';
import { asTransaction, connect, productEvent, quietLogger, recordingPublisher, sleep, testDatabases, waitFor } from './support/events.ts';

const databases = testDatabases();
const cleanups: (() => Promise<unknown>)[] = [];
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => databases.dropAll());

/** A started relay, stopped after the test. Fast polling and retries keep the tests short. */
function startRelay(options: OutboxRelayOptions): OutboxRelay {
  const relay = new OutboxRelay({ pollIntervalMs: 50, retryBackoffMs: [10, 20, 40], logger: quietLogger, ...options }).start();
  cleanups.push(() => relay.stop());
  return relay;
}

function catalogClient(databaseUrl: string): CatalogClient {
  const db = new CatalogClient(prismaClientOptions(databaseUrl, 4));
  cleanups.push(() => db.$disconnect());
  return db;
}

/** Appends events in a transaction of their own, committed when this resolves. */
async function commitEvents(db: CatalogClient, events: EventEnvelope[]): Promise<void> {
  await db.$transaction((tx) => appendToOutbox(tx, events));
}

async function outboxRows(databaseUrl: string): Promise<{ event_id: string; published: boolean }[]> {
  const client = await connect(databaseUrl);
  try {
    const { rows } = await client.query('SELECT event_id, published_at IS NOT NULL AS published FROM outbox_events ORDER BY id');
    return rows;
  } finally {
    await client.end();
  }
}

describe('outbox and relay', () => {
  it('publishes outbox rows in commit order', async () => {
    const databaseUrl = await databases.fresh('catalog');
    const db = catalogClient(databaseUrl);
    const broker = recordingPublisher();
    const relay = startRelay({ databaseUrl, publish: broker.publish, batchSize: 3 });
    const productId = randomUUID();
    const events = Array.from({ length: 10 }, (_, i) => productEvent(i + 1, productId));

    // Five transactions of two events each, committed one after the other, the relay running.
    for (let i = 0; i < events.length; i += 2) await commitEvents(db, events.slice(i, i + 2));

    await waitFor('10 events published', () => broker.published.length >= 10);
    expect(broker.ids()).toEqual(events.map((e) => e.eventId));
    expect(broker.published).toEqual(events);
    await waitFor('the backlog to drain', async () => (await relay.backlog()) === 0);
  });

  it('does not skip a row written by a slow transaction that began before a faster one', async () => {
    const databaseUrl = await databases.fresh('catalog');
    const slow = await connect(databaseUrl);
    const fast = await connect(databaseUrl);
    cleanups.push(() => slow.end(), () => fast.end());
    const [first, second] = [productEvent(1), productEvent(1)];

    await slow.query('BEGIN');
    await appendToOutbox(asTransaction(slow), [first]);
    await fast.query('BEGIN');
    await appendToOutbox(asTransaction(fast), [second]);
    await fast.query('COMMIT');
    const broker = recordingPublisher();
    const relay = startRelay({ databaseUrl, publish: broker.publish });
    await waitFor('the relay to lead', () => relay.state === 'leading');
    // The faster row has the higher id and is committed: a relay reading "id > last id" would
    // publish it now and never come back for the slow one.
    await sleep(300);

    expect(broker.published).toEqual([]);
    expect(await relay.backlog()).toBe(1);

    await slow.query('COMMIT');
    await waitFor('both events published', () => broker.published.length >= 2);
    expect(broker.ids()).toEqual([first.eventId, second.eventId]);
  });

  it('a failed transaction leaves no event', async () => {
    const databaseUrl = await databases.fresh('catalog');
    const db = catalogClient(databaseUrl);
    const broker = recordingPublisher();
    startRelay({ databaseUrl, publish: broker.publish });
    const category = await db.category.create({ data: { id: randomUUID(), slug: `c-${randomUUID()}`, name: 'Tools' } });
    const productId = randomUUID();
    const created = productEvent(1, productId, 'ProductCreated');

    const attempt = db.$transaction(async (tx) => {
      await tx.product.create({
        data: { id: productId, sku: 'HAM-1', name: 'Hammer', priceAmount: 1_000, currency: 'EUR', categoryId: category.id },
      });
      await appendToOutbox(tx, [created]);
      throw new Error('the use case failed after writing');
    });

    await expect(attempt).rejects.toThrow('the use case failed after writing');
    expect(await db.product.findUnique({ where: { id: productId } })).toBeNull();
    expect(await outboxRows(databaseUrl)).toEqual([]);
    // A later transaction's event is published, and only that one.
    const later = productEvent(1);
    await commitEvents(db, [later]);
    await waitFor('the later event published', () => broker.published.length >= 1);
    await sleep(100);
    expect(broker.ids()).toEqual([later.eventId]);
  });

  it('republishes after the relay was killed (SIGKILL) between publishing and marking rows published', async () => {
    const [databaseUrl, consumerUrl] = [await databases.fresh('catalog'), await databases.fresh('inventory')];
    const db = catalogClient(databaseUrl);
    const dir = await mkdtemp(join(tmpdir(), 'relay-child-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'published.txt');
    const child: TestProcess = startProcess(
      // node itself, not the tsx CLI (which would outlive its killed child): the very process dies.
      process.execPath,
      ['--import', 'tsx', 'test/support/relay-child.ts', databaseUrl, file, '--crash-after', '1'],
      process.env,
      repoRoot,
    );
    cleanups.push(() => child.kill('SIGKILL'));
    await child.waitForOutput(/^leading$/, 15_000);
    // A second relay waits on the lock, to take over from the one about to die.
    const broker = recordingPublisher();
    const successor = startRelay({ databaseUrl, publish: broker.publish });
    await waitFor('the successor to wait for the lock', () => successor.state === 'waiting');
    const productId = randomUUID();
    const events = Array.from({ length: 5 }, (_, i) => productEvent(i + 1, productId));

    await commitEvents(db, events);

    await child.exited;
    expect(child.child.signalCode).toBe('SIGKILL');
    const publishedBeforeCrash = (await readFile(file, 'utf8')).trim().split('\n');
    expect(publishedBeforeCrash).toEqual([events[0]!.eventId]);
    await waitFor('the successor to publish everything', () => broker.published.length >= 5);
    expect(broker.ids()).toEqual(events.map((e) => e.eventId));
    await waitFor('every row marked published', async () => (await outboxRows(databaseUrl)).every((row) => row.published));

    // Every event was published at least once, the first one twice; the consumer's inbox
    // (de-duplicating by eventId) applies each exactly once.
    const deliveries = [...publishedBeforeCrash, ...broker.ids()].map((id) => events.find((e) => e.eventId === id)!);
    const consumer = new InventoryClient(prismaClientOptions(consumerUrl, 2));
    cleanups.push(() => consumer.$disconnect());
    await consumer.$executeRaw`CREATE TABLE applied (event_id uuid NOT NULL)`;
    const outcomes = [];
    for (const event of deliveries) {
      outcomes.push(
        await handleOnce(consumer, 'relay-test', event, (tx) => tx.$executeRaw`INSERT INTO applied VALUES (${event.eventId}::uuid)`.then(() => {}), {
          ordering: 'strict',
        }),
      );
    }
    expect(outcomes).toEqual(['applied', 'duplicate', 'applied', 'applied', 'applied', 'applied']);
    const applied = await consumer.$queryRaw<{ event_id: string }[]>`SELECT event_id::text FROM applied`;
    expect(applied.map((row) => row.event_id).sort()).toEqual(events.map((e) => e.eventId).sort());
  }, 30_000);

  it('keeps events while the broker is unreachable and publishes them all, in order, when it is back', async () => {
    const databaseUrl = await databases.fresh('catalog');
    const db = catalogClient(databaseUrl);
    const published: EventEnvelope[] = [];
    let brokerUp = true;
    let refused = 0;
    const relay = startRelay({
      databaseUrl,
      publish: async (event) => {
        if (!brokerUp) {
          refused += 1;
          throw new Error('connect ECONNREFUSED 127.0.0.1:4222');
        }
        published.push(event);
      },
    });
    const productId = randomUUID();
    const events = Array.from({ length: 8 }, (_, i) => productEvent(i + 1, productId));
    await commitEvents(db, events.slice(0, 2));
    await waitFor('the first two published', () => published.length === 2);

    brokerUp = false;
    for (const event of events.slice(2)) await commitEvents(db, [event]);
    await waitFor('several refused attempts', () => refused >= 5);

    expect(published).toHaveLength(2);
    expect(await relay.backlog()).toBe(6);

    brokerUp = true;
    await waitFor('every event published and marked', async () => published.length >= 8 && (await relay.backlog()) === 0);
    await sleep(100); // a republication would show by now
    expect(published.map((e) => e.eventId)).toEqual(events.map((e) => e.eventId));
  });

  it('only one relay publishes at a time, and another takes over when it stops', async () => {
    const databaseUrl = await databases.fresh('catalog');
    const db = catalogClient(databaseUrl);
    const brokers = [recordingPublisher(), recordingPublisher()] as const;
    const relays = brokers.map((broker) => startRelay({ databaseUrl, publish: broker.publish }));
    await waitFor('one relay to lead and the other to wait', () =>
      relays.some((r) => r.state === 'leading') && relays.some((r) => r.state === 'waiting'),
    );
    const leader = relays.findIndex((r) => r.state === 'leading');
    const follower = 1 - leader;
    const before = Array.from({ length: 3 }, (_, i) => productEvent(i + 1));
    const after = Array.from({ length: 3 }, (_, i) => productEvent(i + 1));

    for (const event of before) await commitEvents(db, [event]);
    await waitFor('the leader to publish', () => brokers[leader]!.published.length >= 3);
    await relays[leader]!.stop();
    await waitFor('the other relay to take over', () => relays[follower]!.state === 'leading');
    for (const event of after) await commitEvents(db, [event]);
    await waitFor('the new leader to publish', () => brokers[follower]!.published.length >= 3);
    await sleep(100);

    expect(brokers[leader]!.ids()).toEqual(before.map((e) => e.eventId));
    expect(brokers[follower]!.ids()).toEqual(after.map((e) => e.eventId));
  });

  it('a leader whose lock connection is cut stops publishing, and the waiting relay takes over', async () => {
    const databaseUrl = await databases.fresh('catalog');
    const db = catalogClient(databaseUrl);
    const sql = await connect(databaseUrl);
    cleanups.push(() => sql.end());
    const brokers = [recordingPublisher(), recordingPublisher()] as const;
    const relays = brokers.map((broker) => startRelay({ databaseUrl, publish: broker.publish }));
    await waitFor('one relay to lead and the other to wait', () =>
      relays.some((r) => r.state === 'leading') && relays.some((r) => r.state === 'waiting'),
    );
    const leader = relays.findIndex((r) => r.state === 'leading');
    const follower = 1 - leader;

    // As a network cut or a server restart would: the leader's session, and its lock, are gone.
    await sql.query(
      `SELECT pg_terminate_backend(pid) FROM pg_locks
       WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    await waitFor('the other relay to take over', () => relays[follower]!.state === 'leading');
    await waitFor('the old leader to wait again', () => relays[leader]!.state === 'waiting');
    const events = Array.from({ length: 3 }, (_, i) => productEvent(i + 1));
    for (const event of events) await commitEvents(db, [event]);
    await waitFor('the new leader to publish', () => brokers[follower]!.published.length >= 3);
    await sleep(100);

    expect(brokers[follower]!.ids()).toEqual(events.map((e) => e.eventId));
    expect(brokers[leader]!.published).toEqual([]);
  });

  it('deletes published rows after the retention, never unpublished ones', async () => {
    const databaseUrl = await databases.fresh('catalog');
    const db = catalogClient(databaseUrl);
    const sql = await connect(databaseUrl);
    cleanups.push(() => sql.end());
    const [old1, old2, recent, unpublishable] = [productEvent(1), productEvent(1), productEvent(1), productEvent(1)];
    const published: string[] = [];
    startRelay({
      databaseUrl,
      retentionMs: 60_000,
      cleanupIntervalMs: 50,
      publish: async (event) => {
        if (event.eventId === unpublishable.eventId) throw new Error('broker down');
        published.push(event.eventId);
      },
    });
    await commitEvents(db, [old1, old2, recent]);
    // Marked, not only handed to the broker: the relay's own mark would overwrite the backdating.
    await waitFor('three events published and marked', async () => published.length === 3 && (await outboxRows(databaseUrl)).every((row) => row.published));
    await sql.query(`UPDATE outbox_events SET published_at = now() - interval '2 minutes' WHERE event_id = ANY($1::uuid[])`, [
      [old1.eventId, old2.eventId],
    ]);
    await commitEvents(db, [unpublishable]);
    await sql.query(`UPDATE outbox_events SET created_at = now() - interval '1 year' WHERE event_id = $1`, [unpublishable.eventId]);

    await waitFor('the expired rows deleted', async () => (await outboxRows(databaseUrl)).length === 2);
    await sleep(150);

    expect(await outboxRows(databaseUrl)).toEqual([
      { event_id: recent.eventId, published: true },
      { event_id: unpublishable.eventId, published: false },
    ]);
  });

  it('publishes through NATS JetStream to a consumer that applies each event once, even when republished', async () => {
    const [databaseUrl, consumerUrl] = [await databases.fresh('catalog'), await databases.fresh('inventory')];
    const db = catalogClient(databaseUrl);
    const consumerDb = new InventoryClient(prismaClientOptions(consumerUrl, 2));
    cleanups.push(() => consumerDb.$disconnect());
    // A stream and subjects of this test only, deleted afterwards.
    const suffix = randomUUID().replaceAll('-', '').slice(0, 12);
    const stream = `OUTBOX_RELAY_TEST_${suffix}`;
    const bus = await createEventBus({ NATS_URL: testNatsUrl }, { nats: { stream, subjectPrefix: `relaytest${suffix}`, logger: quietLogger } });
    cleanups.push(() => deleteStreams(stream, `${stream}_DEAD_LETTERS`));
    cleanups.push(() => bus.close());
    await consumerDb.$executeRaw`CREATE TABLE applied (event_id uuid NOT NULL)`;
    const outcomes: InboxOutcome[] = [];
    const subscription = await bus.subscribe('inventory', { types: ['ProductPriceChanged'] }, async (event) => {
      const outcome = await handleOnce(
        consumerDb,
        'inventory',
        event,
        (tx) => tx.$executeRaw`INSERT INTO applied VALUES (${event.eventId}::uuid)`.then(() => {}),
        { ordering: 'strict' },
      );
      outcomes.push(outcome);
    });
    cleanups.push(() => subscription.stop());
    const relay = startRelay({ databaseUrl, publish: (event) => bus.publish(event) });
    const productId = randomUUID();
    const events = Array.from({ length: 6 }, (_, i) => productEvent(i + 1, productId));
    const start = new Date(Date.now() - 1_000);

    for (let i = 0; i < events.length; i += 2) await commitEvents(db, events.slice(i, i + 2));
    await waitFor('every event applied', () => outcomes.length >= 6, 10_000);
    // A broker loss is suspected: everything is published again.
    expect(await relay.republish({ since: start })).toBe(6);
    await waitFor('the republished events published', async () => (await relay.backlog()) === 0);
    await sleep(300);

    expect(outcomes.every((outcome) => outcome === 'applied')).toBe(true);
    const applied = await consumerDb.$queryRaw<{ event_id: string }[]>`SELECT event_id::text FROM applied ORDER BY ctid`;
    expect(applied.map((row) => row.event_id)).toEqual(events.map((e) => e.eventId));
  }, 20_000);
});

async function deleteStreams(...streams: string[]): Promise<void> {
  const nc = await connectNats({ servers: testNatsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    for (const stream of streams) await jsm.streams.delete(stream).catch(() => false);
  } finally {
    await nc.close();
  }
}
