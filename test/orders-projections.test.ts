/**
 * The order projector on a real PostgreSQL: read models that a rebuild reproduces exactly (also
 * through `npm run projections -- rebuild orders`), no event skipped behind a slow transaction, a
 * checkpoint that survives a restart, and `onProjected` called once the projection is committed.
 */
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { withDatabase } from '../platform/config.ts';
import { applyMigrations, migrationsDirOf } from '../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../platform/database/provision.ts';
import type { OrderCommand } from '../subgraphs/orders/domain/order.ts';
import { connectOrdersDatabase, type OrdersDatabase } from '../subgraphs/orders/infrastructure/database.ts';
import { OrderStore } from '../subgraphs/orders/infrastructure/order-store.ts';
import { OrderProjector, type OrderProjectorOptions } from '../subgraphs/orders/projections/projector.ts';

async function freshOrdersDatabase(): Promise<string> {
  const url = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_orders_${randomBytes(4).toString('hex')}`);
  await ensureDatabase(url);
  await applyMigrations({ databaseUrl: url, migrationsDir: migrationsDirOf('orders' as never) });
  return url;
}

const databases: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(async () => {
  for (const url of databases) await dropDatabase(url);
});

interface Fixture {
  databaseUrl: string;
  db: OrdersDatabase;
  store: OrderStore;
  sql: pg.Pool;
  projector(options?: Partial<OrderProjectorOptions>): OrderProjector;
}

/** A database of its own per test: the read models are compared whole. */
async function fixture(): Promise<Fixture> {
  const databaseUrl = await freshOrdersDatabase();
  databases.push(databaseUrl);
  const db = connectOrdersDatabase(databaseUrl).db;
  const sql = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  cleanups.push(() => db.$disconnect(), () => sql.end());
  return {
    databaseUrl,
    db,
    store: new OrderStore(db, { snapshotEvery: 3 }),
    sql,
    projector: (options = {}) => {
      const projector = new OrderProjector({ databaseUrl, pollIntervalMs: 50, ...options });
      cleanups.push(() => projector.stop());
      return projector;
    },
  };
}

const causation = { correlationId: 'req', causationId: 'req' };
let clock = Date.UTC(2026, 10, 21, 10, 0, 0);
const now = () => new Date((clock += 1_000)).toISOString();

function placeOrder(orderId: string, customerId: string = randomUUID()): OrderCommand {
  return {
    type: 'PlaceOrder',
    orderId,
    customerId,
    lines: [
      { productId: randomUUID(), quantity: 2, unitPrice: 1_250 },
      { productId: randomUUID(), quantity: 1, unitPrice: 999 },
    ],
    currency: 'EUR',
    shippingAddress: { name: 'Ada', line1: '1 Main St', line2: null, city: 'London', postalCode: 'N1', country: 'GB' },
    idempotencyKey: randomUUID(),
    at: now(),
  };
}

async function place(store: OrderStore, customerId?: string): Promise<string> {
  const orderId = randomUUID();
  await store.execute(orderId, placeOrder(orderId, customerId), causation);
  return orderId;
}

/** Orders in every state the aggregate allows, several per customer. */
async function variedOrders(store: OrderStore): Promise<string[]> {
  const customer: string = randomUUID();
  const ids: string[] = [];
  const lifecycles: OrderCommand['type'][][] = [
    [],
    ['ConfirmOrder'],
    ['RejectOrder'],
    ['CancelOrder'],
    ['ConfirmOrder', 'CancelOrder'],
    ['ConfirmOrder', 'MarkShipped'],
    ['ConfirmOrder', 'MarkShipped', 'MarkDelivered'],
  ];
  for (const [i, steps] of [...lifecycles, ...lifecycles].entries()) {
    const orderId = await place(store, i % 2 === 0 ? customer : undefined);
    ids.push(orderId);
    for (const step of steps) await store.execute(orderId, command(step), causation);
  }
  return ids;
}

function command(type: OrderCommand['type']): OrderCommand {
  switch (type) {
    case 'RejectOrder':
      return { type, lines: [{ productId: randomUUID(), requested: 2, available: 0 }], at: now() };
    case 'CancelOrder':
      return { type, reason: 'CUSTOMER_CANCELLED', at: now() };
    case 'ConfirmOrder':
    case 'MarkShipped':
    case 'MarkDelivered':
      return { type, at: now() };
    default:
      throw new Error(`not a follow-up command: ${type}`);
  }
}

async function readModels(sql: pg.Pool) {
  const summaries = (await sql.query('SELECT * FROM order_summaries ORDER BY order_id')).rows;
  const timeline = (await sql.query('SELECT * FROM order_timeline ORDER BY order_id, position')).rows;
  return { summaries, timeline };
}

/**
 * Rejected orders carry the lines stock could not cover (as `command('RejectOrder')` gives them),
 * every other order none: so comparing read models compares those lines too.
 */
function expectRejectedLinesProjected(summaries: Record<string, any>[]): void {
  const rejected = summaries.filter((s) => s.status === 'REJECTED');
  expect(rejected.length).toBeGreaterThan(0);
  for (const summary of rejected) expect(summary.rejected_lines).toEqual([{ productId: expect.any(String), requested: 2, available: 0 }]);
  for (const summary of summaries.filter((s) => s.status !== 'REJECTED')) expect(summary.rejected_lines).toEqual([]);
}

/** Whether every event has its timeline entry, i.e. has been projected. */
async function everyEventProjected(sql: pg.Pool): Promise<boolean> {
  const { rows } = await sql.query(
    'SELECT count(*)::int AS n FROM order_events e WHERE NOT EXISTS (SELECT 1 FROM order_timeline t WHERE t.order_id = e.order_id AND t.position = e.version)',
  );
  return rows[0].n === 0;
}

async function summaryOf(sql: pg.Pool, orderId: string) {
  return (await sql.query('SELECT status, reason, version, total, item_count FROM order_summaries WHERE order_id = $1', [orderId])).rows[0];
}

async function waitFor(what: string, condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Catches up until `orderIds` were projected, in the order they were. The scan's horizon is
 * server-wide: a transaction of any database on the server may hold it back for a moment.
 */
async function catchUpOn(projector: OrderProjector, orderIds: string[], timeoutMs = 10_000): Promise<string[]> {
  const projected: string[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!orderIds.every((id) => projected.includes(id))) {
    if (Date.now() > deadline) throw new Error(`timed out projecting ${orderIds.join(', ')}; projected ${projected.join(', ')}`);
    projected.push(...(await projector.catchUp()).orderIds);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return projected;
}

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('projecting order events', () => {
  it('keeps a summary and a timeline per order, in the background', async () => {
    const { store, sql, projector } = await fixture();
    projector().start();

    const orderId = await place(store);
    await store.execute(orderId, command('ConfirmOrder'), causation);
    await store.execute(orderId, command('CancelOrder'), causation);

    await waitFor('the cancellation projected', async () => (await summaryOf(sql, orderId))?.status === 'CANCELLED');
    expect(await summaryOf(sql, orderId)).toEqual({ status: 'CANCELLED', reason: 'CUSTOMER_CANCELLED', version: 3, total: 3_499, item_count: 3 });
    const timeline = (await sql.query('SELECT position, status FROM order_timeline WHERE order_id = $1 ORDER BY position', [orderId])).rows;
    expect(timeline).toEqual([
      { position: 1, status: 'PENDING' },
      { position: 2, status: 'CONFIRMED' },
      { position: 3, status: 'CANCELLED' },
    ]);
  });

  it('rebuilding the projections from scratch gives exactly the live result', async () => {
    const { store, sql, projector } = await fixture();
    const live = projector().start();
    const ids = await variedOrders(store);
    await waitFor('every event projected live', () => everyEventProjected(sql));
    await live.stop();
    const liveResult = await readModels(sql);
    expect(liveResult.summaries).toHaveLength(ids.length);
    expect(new Set(liveResult.summaries.map((s) => s.status))).toEqual(new Set(['PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'SHIPPED', 'DELIVERED']));
    expectRejectedLinesProjected(liveResult.summaries);

    const rebuilt = await projector().rebuild();

    expect(rebuilt.scanned).toBe(liveResult.timeline.length);
    expect(await readModels(sql)).toEqual(liveResult);
  });

  it('applies an order’s events by version when transaction order differs from it', async () => {
    const { db, store, sql, projector } = await fixture();
    const orderId = await place(store);
    const [started, confirmed] = [gate(), gate()];

    // This transaction takes its id first (its first write), then cancels after a later
    // transaction confirmed: version 3 gets the older transaction id than version 2.
    const cancelling = db.$transaction(
      async (tx) => {
        await tx.$executeRaw`INSERT INTO order_idempotency (customer_id, idempotency_key, order_id) VALUES (gen_random_uuid(), 'k', gen_random_uuid())`;
        started.open();
        await confirmed.opened;
        await store.executeInTransaction(tx, orderId, command('CancelOrder'), causation);
      },
      { timeout: 10_000 },
    );
    await started.opened;
    await store.execute(orderId, command('ConfirmOrder'), causation);
    confirmed.open();
    await cancelling;
    const { rows } = await sql.query('SELECT version, tx_id::text FROM order_events WHERE order_id = $1 ORDER BY tx_id, global_position', [orderId]);
    expect(rows.map((row) => row.version)).toEqual([1, 3, 2]);

    await catchUpOn(projector(), [orderId]);

    expect(await summaryOf(sql, orderId)).toMatchObject({ status: 'CANCELLED', version: 3 });
    const timeline = (await sql.query('SELECT status FROM order_timeline WHERE order_id = $1 ORDER BY position', [orderId])).rows;
    expect(timeline.map((row) => row.status)).toEqual(['PENDING', 'CONFIRMED', 'CANCELLED']);
  });
});

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** `npm run projections -- <args>`, as an operator runs it, on the orders database `databaseUrl`. */
function projectionsCli(databaseUrl: string, ...args: string[]): Promise<{ code: number; output: string }> {
  const env = { ...process.env, ORDERS_DATABASE_URL: databaseUrl, LOG_LEVEL: 'error' };
  return new Promise((resolve) => {
    execFile('npm', ['run', '--silent', 'projections', '--', ...args], { env, cwd: repoRoot }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

describe('npm run projections -- rebuild orders', () => {
  it('rebuilds, as a process of its own beside the running projector, exactly the live projections', async () => {
    const { databaseUrl, store, sql, projector } = await fixture();
    projector().start();
    const ids = await variedOrders(store);
    await waitFor('every event projected live', () => everyEventProjected(sql));
    const liveResult = await readModels(sql);
    expect(liveResult.summaries).toHaveLength(ids.length);
    expectRejectedLinesProjected(liveResult.summaries);

    // Damaged read models, as a projector bug would leave them: the running projector is past
    // these events and never looks at them again, so only a replay from the events repairs them.
    await sql.query(`UPDATE order_summaries SET status = 'PENDING', reason = NULL, rejected_lines = '[]' WHERE status = 'REJECTED'`);
    await sql.query('DELETE FROM order_timeline WHERE position > 1');
    expect(await readModels(sql)).not.toEqual(liveResult);

    const { code, output } = await projectionsCli(databaseUrl, 'rebuild', 'orders');

    expect(code, output).toBe(0);
    // The running projector takes turns with the CLI's batches, so either may replay an event.
    expect(output).toMatch(/^orders: replayed \d+ events into the read models of \d+ orders in \d+ ms$/m);
    expect(await readModels(sql)).toEqual(liveResult);

    // The running projector carries on from the rebuilt checkpoint.
    const later = await place(store);
    await waitFor('an order placed after the rebuild projected', async () => (await summaryOf(sql, later))?.status === 'PENDING');
  }, 60_000);

});

describe('never skipping an event', () => {
  it('does not skip an event of a slow transaction that began before a faster one', async () => {
    const { db, store, sql, projector } = await fixture();
    const slowOrder = randomUUID();
    const [appended, release] = [gate(), gate()];
    const slow = db.$transaction(
      async (tx) => {
        await store.executeInTransaction(tx, slowOrder, placeOrder(slowOrder), causation);
        appended.open();
        await release.opened;
      },
      { timeout: 10_000 },
    );
    await appended.opened;
    const fastOrder = await place(store);
    const reader = projector();

    // The fast order is committed; it waits for the slow one, which is not.
    expect((await reader.catchUp()).scanned).toBe(0);
    expect(await summaryOf(sql, fastOrder)).toBeUndefined();

    release.open();
    await slow;
    expect(await catchUpOn(reader, [slowOrder, fastOrder])).toEqual([slowOrder, fastOrder]);
  });

  it('does not skip a slow transaction’s event when a transaction with an older id committed a later position first', async () => {
    const { db, store, sql, projector } = await fixture();
    const [slowOrder, fastOrder] = [randomUUID(), randomUUID()];
    const [fastHasId, slowAppended, release] = [gate(), gate(), gate()];

    // The fast transaction takes its id first, then appends AFTER the slow one appended, so its
    // event has the higher position but the older transaction id, and commits first.
    const fast = db.$transaction(
      async (tx) => {
        await tx.$executeRaw`INSERT INTO order_idempotency (customer_id, idempotency_key, order_id) VALUES (gen_random_uuid(), 'k', ${fastOrder}::uuid)`;
        fastHasId.open();
        await slowAppended.opened;
        await store.executeInTransaction(tx, fastOrder, placeOrder(fastOrder), causation);
      },
      { timeout: 10_000 },
    );
    await fastHasId.opened;
    const slow = db.$transaction(
      async (tx) => {
        await store.executeInTransaction(tx, slowOrder, placeOrder(slowOrder), causation);
        slowAppended.open();
        await release.opened;
      },
      { timeout: 10_000 },
    );
    await fast;
    const reader = projector();

    // Only the fast event can be read yet; a checkpoint at its position would pass the slow one.
    expect(await catchUpOn(reader, [fastOrder])).toEqual([fastOrder]);
    release.open();
    await slow;

    expect(await catchUpOn(reader, [slowOrder])).toEqual([slowOrder]);
    expect(await summaryOf(sql, slowOrder)).toMatchObject({ status: 'PENDING' });
    const { rows } = await sql.query('SELECT order_id::text, tx_id::text FROM order_events ORDER BY global_position');
    expect(rows.map((row) => row.order_id)).toEqual([slowOrder, fastOrder]);
    expect(BigInt(rows[0].tx_id)).toBeGreaterThan(BigInt(rows[1].tx_id));
  });
});

describe('the checkpoint', () => {
  it('resumes after a restart from where the projector stopped, not from the start', async () => {
    const { store, sql, projector } = await fixture();
    const first = projector();
    const before = [await place(store), await place(store)];
    await catchUpOn(first, before);
    const checkpoint = await first.checkpoint();
    await first.stop();

    const after = await place(store);
    await store.execute(before[0]!, command('ConfirmOrder'), causation);
    const projected: string[][] = [];
    const second = projector({ onProjected: (ids) => void projected.push(ids) }).start();

    await waitFor('the new events projected', async () => projected.flat().length >= 2);
    expect(projected.flat().sort()).toEqual([after, before[0]!].sort());
    expect(BigInt((await second.checkpoint()).position)).toBeGreaterThan(BigInt(checkpoint.position));
    expect(await summaryOf(sql, before[0]!)).toMatchObject({ status: 'CONFIRMED', version: 2 });
    expect(await summaryOf(sql, before[1]!)).toMatchObject({ status: 'PENDING', version: 1 });
  });

  it('calls onProjected after its transaction has committed', async () => {
    const { store, sql, projector } = await fixture();
    const seenByOthers: unknown[] = [];
    const projected = gate();
    projector({
      onProjected: async (ids) => {
        // Another connection sees the change already: the batch was committed before the call.
        seenByOthers.push(await summaryOf(sql, ids[0]!));
        projected.open();
      },
    }).start();

    await place(store);
    await projected.opened;

    expect(seenByOthers).toEqual([expect.objectContaining({ status: 'PENDING', version: 1 })]);
  });
});
