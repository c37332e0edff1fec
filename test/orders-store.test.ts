/**
 * The Order event store on a real PostgreSQL: optimistic concurrency between real transactions
 * interleaved by hand, snapshots, and the public events in the outbox of the same transaction.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { withDatabase } from '../platform/config.ts';
import { applyMigrations, migrationsDirOf } from '../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../platform/database/provision.ts';
import { DomainError } from '../platform/errors/domain-error.ts';
import type { EventEnvelope } from '../platform/events/envelope.ts';
import { fold, type OrderCommand, type OrderEvent, type OrderState } from '../subgraphs/orders/domain/order.ts';
import { connectOrdersDatabase, type OrdersDatabase } from '../subgraphs/orders/infrastructure/database.ts';
import { ConcurrencyError, OrderStore } from '../subgraphs/orders/infrastructure/order-store.ts';

/** A migrated orders database of this run (global teardown drops it by its prefix too). */
async function freshOrdersDatabase(): Promise<string> {
  const url = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_orders_${randomBytes(4).toString('hex')}`);
  await ensureDatabase(url);
  await applyMigrations({ databaseUrl: url, migrationsDir: migrationsDirOf('orders' as never) });
  return url;
}

let databaseUrl: string;
let db: OrdersDatabase;
let sql: pg.Pool;

beforeAll(async () => {
  databaseUrl = await freshOrdersDatabase();
  db = connectOrdersDatabase(databaseUrl).db;
  sql = new pg.Pool({ connectionString: databaseUrl, max: 2 });
});
afterAll(async () => {
  await db?.$disconnect();
  await sql?.end();
  if (databaseUrl) await dropDatabase(databaseUrl);
});

const causation = { correlationId: 'req-1', causationId: 'req-1' };
const at = (n: number) => new Date(Date.UTC(2026, 10, 21, 10, 0, n)).toISOString();

function placeOrder(orderId: string): OrderCommand {
  return {
    type: 'PlaceOrder',
    orderId,
    customerId: randomUUID(),
    lines: [{ productId: randomUUID(), quantity: 2, unitPrice: 1_000 }],
    currency: 'EUR',
    shippingAddress: { name: 'Ada', line1: '1 Main St', line2: null, city: 'London', postalCode: 'N1', country: 'GB' },
    idempotencyKey: randomUUID(),
    at: at(0),
  };
}
const confirm: OrderCommand = { type: 'ConfirmOrder', at: at(1) };
const cancel: OrderCommand = { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED', at: at(2) };

async function placedOrder(store: OrderStore): Promise<string> {
  const orderId = randomUUID();
  await store.execute(orderId, placeOrder(orderId), causation);
  return orderId;
}

async function streamTypes(orderId: string): Promise<string[]> {
  const { rows } = await sql.query('SELECT type FROM order_events WHERE order_id = $1 ORDER BY version', [orderId]);
  return rows.map((row) => row.type);
}

/** Resolves once some session of the database waits on a lock (a blocked insert). */
async function someoneWaitsOnALock(): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const { rows } = await sql.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
    if (rows[0].n > 0) return;
    if (Date.now() > deadline) throw new Error('timed out waiting for a blocked transaction');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('appending and loading', () => {
  it('appends the events of a command at the next versions and loads the folded state back', async () => {
    const store = new OrderStore(db);
    const orderId = randomUUID();

    const placed = await store.execute(orderId, placeOrder(orderId), causation);
    const confirmed = await store.execute(orderId, confirm, causation);

    expect(placed.version).toBe(1);
    expect(placed.events.map((e) => [e.type, e.version])).toEqual([['OrderPlaced', 1]]);
    expect(confirmed).toMatchObject({ version: 2, order: { status: 'CONFIRMED' } });
    expect(await store.load(orderId)).toEqual({ order: confirmed.order, version: 2 });
    expect(await store.load(randomUUID())).toEqual({ order: null, version: 0 });
  });

  it('decides a function command on the current state, and appends nothing when it returns null', async () => {
    const store = new OrderStore(db);
    const orderId = await placedOrder(store);
    const seen: (string | undefined)[] = [];

    const unchanged = await store.execute(orderId, (state) => (seen.push(state?.status), null), causation);

    expect(seen).toEqual(['PENDING']);
    expect(unchanged).toMatchObject({ version: 1, events: [] });
    expect(await streamTypes(orderId)).toEqual(['OrderPlaced']);
  });

  it('refuses what the aggregate refuses, and writes nothing', async () => {
    const store = new OrderStore(db);
    const orderId = await placedOrder(store);

    await expect(store.execute(orderId, { type: 'MarkShipped', at: at(3) }, causation)).rejects.toMatchObject({ code: 'CONFLICT' });
    expect(await streamTypes(orderId)).toEqual(['OrderPlaced']);
  });
});

describe('optimistic concurrency', () => {
  /**
   * The first command appends and then waits in its transaction; the second loads the same
   * version, decides, and its insert blocks on the first one's row. Then the first commits.
   */
  async function race(first: OrderCommand, second: OrderCommand) {
    const store = new OrderStore(db);
    const orderId = await placedOrder(store);
    const hold = gate();
    const secondSaw: (string | undefined)[] = [];

    const appended = gate();
    const winner = store.execute(orderId, first, causation, async () => {
      appended.open();
      await hold.opened;
    });
    await appended.opened;
    const loser = store
      .execute(orderId, (state) => (secondSaw.push(state?.status), second), causation)
      .then((change) => ({ change }), (error: unknown) => ({ error }));
    await someoneWaitsOnALock();
    hold.open();

    return { orderId, store, winner: await winner, loser: await loser, secondSaw };
  }

  it('retries the losing command on the new state: confirmed, then cancelled', async () => {
    const { orderId, loser, secondSaw } = await race(confirm, cancel);

    // It first decided on PENDING (version 1), lost, and decided again on CONFIRMED.
    expect(secondSaw).toEqual(['PENDING', 'CONFIRMED']);
    expect(loser).toMatchObject({ change: { version: 3, order: { status: 'CANCELLED' } } });
    expect(await streamTypes(orderId)).toEqual(['OrderPlaced', 'OrderConfirmed', 'OrderCancelled']);
  });

  it('rejects the losing command when the new state forbids it: cancelled, so not confirmed', async () => {
    const { orderId, loser, secondSaw } = await race(cancel, confirm);

    expect(secondSaw).toEqual(['PENDING', 'CANCELLED']);
    expect((loser as { error: DomainError }).error).toMatchObject({ code: 'CONFLICT', message: 'Cannot confirm an order that is cancelled' });
    expect(await streamTypes(orderId)).toEqual(['OrderPlaced', 'OrderCancelled']);
  });

  it('never applies two commands on one stale state: 10 concurrent confirmations give one OrderConfirmed', async () => {
    const store = new OrderStore(db);
    const orderId = await placedOrder(store);

    const results = await Promise.allSettled(Array.from({ length: 10 }, () => store.execute(orderId, confirm, causation)));

    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    for (const r of results.filter((r) => r.status === 'rejected')) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'CONFLICT' });
    expect(await streamTypes(orderId)).toEqual(['OrderPlaced', 'OrderConfirmed']);
  });

  it('throws a typed ConcurrencyError from executeInTransaction when the version was taken meanwhile', async () => {
    const store = new OrderStore(db);
    const orderId = await placedOrder(store);
    const [appended, hold] = [gate(), gate()];

    const first = db.$transaction(async (tx) => {
      await store.executeInTransaction(tx, orderId, confirm, causation);
      appended.open();
      await hold.opened;
    });
    await appended.opened;
    const second = db.$transaction((tx) => store.executeInTransaction(tx, orderId, cancel, causation)).catch((error: unknown) => error);
    await someoneWaitsOnALock();
    hold.open();
    await first;

    const error = await second;
    expect(error).toBeInstanceOf(ConcurrencyError);
    expect(error).toMatchObject({ orderId, expectedVersion: 1 });
    expect(await streamTypes(orderId)).toEqual(['OrderPlaced', 'OrderConfirmed']);
  });

  it('answers CONFLICT after 3 retries when the order keeps changing', async () => {
    const store = new OrderStore(db);
    const orderId = await placedOrder(store);
    let attempts = 0;

    const attempt = store.execute(orderId, (state) => (state ? null : null), causation, async () => {
      attempts += 1;
      throw new ConcurrencyError(orderId, 1);
    });

    await expect(attempt).rejects.toMatchObject({ code: 'CONFLICT', message: expect.stringMatching(/try again/) });
    expect(attempts).toBe(4);
  });
});

describe('snapshots', () => {
  async function snapshotOf(orderId: string): Promise<{ version: number; state: OrderState } | undefined> {
    const { rows } = await sql.query('SELECT version, state FROM order_snapshots WHERE order_id = $1', [orderId]);
    return rows[0];
  }

  it('writes one each time the version reaches a multiple of snapshotEvery', async () => {
    const store = new OrderStore(db, { snapshotEvery: 2 });
    const orderId = await placedOrder(store);
    expect(await snapshotOf(orderId)).toBeUndefined();

    await store.execute(orderId, confirm, causation);
    expect(await snapshotOf(orderId)).toMatchObject({ version: 2, state: { status: 'CONFIRMED' } });
    await store.execute(orderId, { type: 'MarkShipped', at: at(3) }, causation);
    expect((await snapshotOf(orderId))?.version).toBe(2);
    const delivered = await store.execute(orderId, { type: 'MarkDelivered', at: at(4) }, causation);
    expect(await snapshotOf(orderId)).toEqual({ version: 4, state: delivered.order });
  });

  it('loads a 100-event stream from its snapshot and the events after it', async () => {
    const store = new OrderStore(db, { snapshotEvery: 20 });
    const orderId = await placedOrder(store);
    // 98 more events written straight into the stream (the aggregate has no 100-event life).
    await sql.query(
      `INSERT INTO order_events (order_id, version, type, data, event_id)
       SELECT $1, v, 'OrderConfirmed', jsonb_build_object('at', $2::text), gen_random_uuid() FROM generate_series(2, 99) AS v`,
      [orderId, at(1)],
    );
    await store.execute(orderId, { type: 'MarkShipped', at: at(3) }, causation); // version 100: a snapshot
    await store.execute(orderId, { type: 'MarkDelivered', at: at(4) }, causation); // version 101: the tail
    const { rows } = await sql.query('SELECT type, data FROM order_events WHERE order_id = $1 ORDER BY version', [orderId]);
    const allEvents = rows as OrderEvent[];
    expect(allEvents).toHaveLength(101);
    expect((await snapshotOf(orderId))).toEqual({ version: 100, state: fold(allEvents.slice(0, 100)) });

    // Mark the snapshot: a load that folded all 101 events would not see the mark.
    await sql.query(`UPDATE order_snapshots SET state = jsonb_set(state, '{total}', '7') WHERE order_id = $1`, [orderId]);
    const loaded = await store.load(orderId);

    expect(loaded.version).toBe(101);
    expect(loaded.order).toMatchObject({ status: 'DELIVERED', total: 7, updatedAt: at(4) });
    expect(loaded.order).toEqual({ ...fold(allEvents), total: 7 });
  });
});

describe('public events in the outbox', () => {
  async function outboxOf(orderId: string): Promise<EventEnvelope[]> {
    const { rows } = await sql.query(`SELECT envelope FROM outbox_events WHERE envelope->>'aggregateId' = $1 ORDER BY id`, [orderId]);
    return rows.map((row) => row.envelope);
  }

  it('writes each public event with the order as aggregate, its stream version and its data', async () => {
    const store = new OrderStore(db);
    const orderId = randomUUID();
    const placed = await store.execute(orderId, placeOrder(orderId), { correlationId: 'req-7', causationId: 'req-7', traceparent: null });
    await store.execute(orderId, cancel, { correlationId: 'req-8', causationId: 'req-8' });

    const outbox = await outboxOf(orderId);
    const { rows: stream } = await sql.query('SELECT event_id, data FROM order_events WHERE order_id = $1 ORDER BY version', [orderId]);

    expect(outbox.map((e) => [e.type, e.aggregateVersion])).toEqual([
      ['OrderPlaced', 1],
      ['OrderCancelled', 2],
    ]);
    expect(outbox[0]).toMatchObject({
      eventId: placed.events[0]!.eventId,
      source: 'orders',
      aggregateType: 'Order',
      aggregateId: orderId,
      correlationId: 'req-7',
      payload: stream[0].data,
    });
    expect(outbox.map((e) => e.eventId)).toEqual(stream.map((row) => row.event_id));
    expect(outbox[1]!.payload).toEqual({ reason: 'CUSTOMER_CANCELLED', at: at(2) });
  });

  it('writes neither the events nor their outbox rows when the transaction fails afterwards', async () => {
    const store = new OrderStore(db);
    const orderId = randomUUID();

    const failing = store.execute(orderId, placeOrder(orderId), causation, async () => {
      throw new Error('the saga could not start');
    });

    await expect(failing).rejects.toThrow('the saga could not start');
    expect(await streamTypes(orderId)).toEqual([]);
    expect(await outboxOf(orderId)).toEqual([]);
  });
});
