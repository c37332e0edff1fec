/**
 * Saga deadlines count only time the platform was working (docs/decisions/0019): an outage of
 * the bus, of the orders database or of the orders process longer than a step's deadline
 * cancels nothing, and replies that waited in the queue are applied before any deadline is
 * judged; a payment provider that is really slow (`tok_slow`) still times out.
 *
 * Every context runs in this process except orders, which runs in a child process
 * (support/restart-orders-child.ts) so that it can be SIGKILLed, and which reaches its database
 * through a TCP proxy the test can cut. The bus is the test's own: a private nats-server it can
 * stop, or a pg-boss database behind a second proxy. A short step deadline keeps it quick.
 * Last, the shared heartbeat of several replicas' sweepers, ticked by hand on one database.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportSPKI } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { RunningGateway } from '../gateway/server.ts';
import { keyNames, withDatabase } from '../platform/config.ts';
import { contextNames, type ContextName } from '../platform/contexts.ts';
import { dropDatabase, ensureDatabase } from '../platform/database/provision.ts';
import type { EventBus } from '../platform/events/bus.ts';
import { createJetStreamBus } from '../platform/events/bus/nats-jetstream.ts';
import { createPostgresQueueBus } from '../platform/events/bus/postgres-queue.ts';
import { commandId } from '../platform/events/contracts/order-saga.ts';
import { issueCustomerToken } from '../platform/identity/customer-token.ts';
import { deterministicUuid } from '../platform/ids.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { startAccountsSubgraph } from '../subgraphs/accounts/subgraph.ts';
import { startCatalogSubgraph } from '../subgraphs/catalog/subgraph.ts';
import { startInventorySubgraph } from '../subgraphs/inventory/subgraph.ts';
import { startPaymentsSubgraph } from '../subgraphs/payments/subgraph.ts';
import { connectOrdersDatabase, type OrdersTransaction } from '../subgraphs/orders/infrastructure/database.ts';
import { DeadlineSweeper } from '../subgraphs/orders/saga/deadline-sweeper.ts';
import { OrderSagaRunner } from '../subgraphs/orders/saga/saga-runner.ts';
import { startShippingSubgraph } from '../subgraphs/shipping/subgraph.ts';
import { graphql } from './support/graphql.ts';
import { inStockProducts, testAddress } from './support/orders.ts';
import { cloneDatabase } from './support/postgres.ts';
import { freePort, startProcess, type TestProcess } from './support/processes.ts';
import { freshDatabaseName, templateDatabaseName } from './support/run.ts';
import { freshDatabases, generateTestKeys, type TestBusKind, startGatewayWithOrdersChild } from './support/stack.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';
import { waitFor } from './support/wait.ts';
import { inheritedEnv } from './support/fault-harness.ts';
import { sleep } from './support/events.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
/**
 * Each waiting step's deadline, in time the platform works. Above what recovery itself takes:
 * the orders relay retries a failed publish after up to 5 s (the other relays here after 1 s).
 */
const stepTimeoutMs = 6_000;
/** Every outage lasts longer than a step's deadline. */
const outageMs = 9_000;
/** `tok_slow` answers this long after AuthorizePayment reaches payments: past the deadline. */
const slowPaymentMs = 9_000;
/** Orders in flight when an outage starts. */
const ordersPerOutage = 5;

/** A bus the test can take away: a private nats-server (stopped), or a pg-boss database behind a proxy (cut). */
interface BreakableBus {
  bus: EventBus;
  /** What the orders child's createEventBus reads to reach the same bus. */
  env: Record<string, string>;
  stop(): Promise<void>;
  restore(): Promise<void>;
  dispose(): Promise<void>;
}

async function breakableBus(kind: TestBusKind, scratch: string): Promise<BreakableBus> {
  if (kind === 'nats') {
    const port = await freePort();
    const args = ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(scratch, 'nats')];
    let server = startProcess('/usr/sbin/nats-server', args, process.env);
    await server.waitForOutput(/Server is ready/, 15_000);
    const servers = `nats://127.0.0.1:${port}`;
    const bus = await createJetStreamBus({ servers, ackWaitMs: 2_000 });
    return {
      bus,
      env: { NATS_URL: servers },
      stop: async () => void (await server.kill('SIGTERM')),
      async restore() {
        server = startProcess('/usr/sbin/nats-server', args, process.env);
        await server.waitForOutput(/Server is ready/, 15_000);
      },
      async dispose() {
        await bus.close();
        await server.kill('SIGKILL');
      },
    };
  }
  const databaseUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_bus_${randomUUID().slice(0, 8)}`);
  await ensureDatabase(databaseUrl);
  const target = new URL(databaseUrl);
  const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  const viaProxy = new URL(databaseUrl);
  viaProxy.host = proxy.address;
  const bus = await createPostgresQueueBus({ databaseUrl: viaProxy.toString(), pollingIntervalMs: 100, poolSize: 3, handlerTimeoutMs: 2_000 });
  return {
    bus,
    env: { EVENT_BUS_DATABASE_URL: viaProxy.toString() },
    stop: async () => proxy.pause(),
    restore: async () => proxy.resume(),
    async dispose() {
      await bus.close();
      await proxy.close();
      await dropDatabase(databaseUrl);
    },
  };
}

interface DeadlineStack {
  bus: BreakableBus;
  gatewayUrl: string;
  customer: string;
  /** The proxy between orders and its database. */
  ordersDatabase: TcpProxy;
  startOrders(): Promise<void>;
  killOrders(): Promise<void>;
  /** What the orders processes printed, for a failure's message. */
  ordersOutput(): string;
  query<T extends pg.QueryResultRow = Record<string, any>>(context: ContextName, text: string, values?: unknown[]): Promise<T[]>;
  stop(): Promise<void>;
}

async function startDeadlineStack(kind: TestBusKind): Promise<DeadlineStack> {
  const scratch = await mkdtemp(join(tmpdir(), 'saga-deadlines-'));
  const keys = await generateTestKeys();
  const databaseUrls = await freshDatabases();
  const pools = Object.fromEntries(contextNames.map((name) => [name, new pg.Pool({ connectionString: databaseUrls[name], max: 1 })])) as Record<ContextName, pg.Pool>;
  const ordersTarget = new URL(databaseUrls.orders);
  const ordersDatabase = await startTcpProxy({ host: ordersTarget.hostname, port: Number(ordersTarget.port || 5432) });
  const ordersViaProxy = new URL(databaseUrls.orders);
  ordersViaProxy.host = ordersDatabase.address;
  const ordersPort = await freePort();
  const gatewayIdentityPem = await exportSPKI(keys.gatewayIdentity.publicKey);
  // The child finds its bus and database from the environment given here only.
  const inherited = inheritedEnv();
  const subgraphs: RunningContextSubgraph[] = [];
  let bus: BreakableBus | undefined;
  let orders: TestProcess | undefined;
  let printed = '';
  let gateway: RunningGateway | undefined;

  const stack: DeadlineStack = {
    get bus() {
      return bus!;
    },
    get gatewayUrl() {
      return gateway!.url;
    },
    customer: await issueCustomerToken(keys.authToken.privateKey, { customerId: deterministicUuid('customer', demoUsers.customer.email), roles: ['customer'] }, 900),
    ordersDatabase,
    async startOrders() {
      if (orders) throw new Error('orders is already running');
      orders = startProcess(
        // node itself, not the tsx CLI (which would outlive its killed child).
        process.execPath,
        ['--import', 'tsx', 'test/support/restart-orders-child.ts'],
        {
          ...inherited,
          ...bus!.env,
          // An event whose handler died is redelivered (2 s) well before a step's deadline.
          EVENT_REDELIVERY_AFTER_MS: '2000',
          SAGA_STEP_TIMEOUT_MS: String(stepTimeoutMs),
          ORDERS_DATABASE_URL: ordersViaProxy.toString(),
          PORT: String(ordersPort),
          [keyNames.gatewayIdentityPublic]: gatewayIdentityPem,
        },
        repoRoot,
      );
      await orders.waitForOutput(/^ready /, 60_000);
    },
    async killOrders() {
      const child = orders;
      orders = undefined;
      await child?.kill('SIGKILL');
      printed += child?.output() ?? '';
    },
    ordersOutput: () => printed + (orders?.output() ?? ''),
    async query(context, text, values = []) {
      return (await pools[context].query(text, values)).rows;
    },
    async stop() {
      await stack.killOrders();
      await gateway?.stop();
      for (const subgraph of subgraphs) await subgraph.stop();
      await bus?.dispose();
      await ordersDatabase.close();
      for (const pool of Object.values(pools)) await pool.end();
      for (const url of Object.values(databaseUrls)) await dropDatabase(url);
      await rm(scratch, { recursive: true, force: true });
    },
  };

  try {
    bus = await breakableBus(kind, scratch);
    await seedDemoData(databaseUrls);
    const base = { port: 0, host: '127.0.0.1', gatewayPublicKey: keys.gatewayIdentity.publicKey, production: false, eventBus: bus.bus, relay: { pollIntervalMs: 200, retryBackoffMs: [100, 500, 1_000] } };
    subgraphs.push(await startAccountsSubgraph({ ...base, databaseUrl: databaseUrls.accounts, authTokenPrivateKey: keys.authToken.privateKey }));
    subgraphs.push(await startCatalogSubgraph({ ...base, databaseUrl: databaseUrls.catalog }));
    subgraphs.push(await startInventorySubgraph({ ...base, databaseUrl: databaseUrls.inventory }));
    subgraphs.push(await startPaymentsSubgraph({ ...base, databaseUrl: databaseUrls.payments, simulatedProvider: { slowTokenDelayMs: slowPaymentMs } }));
    subgraphs.push(await startShippingSubgraph({ ...base, databaseUrl: databaseUrls.shipping }));
    await stack.startOrders();
    gateway = await startGatewayWithOrdersChild(subgraphs, ordersPort, keys);
  } catch (error) {
    await stack.stop().catch(() => {});
    throw error;
  }
  return stack;
}

describe.each(['postgres', 'nats'] as const)('saga deadlines, %s bus', (kind) => {
  let stack: DeadlineStack;
  let nextProduct = 0;

  beforeAll(async () => {
    stack = await startDeadlineStack(kind);
  }, 120_000);
  afterAll(() => stack?.stop(), 60_000);
  // Each test starts on a working platform: the previous one's outage is over for everyone.
  beforeEach(() => waitFor('the bus connected', () => (stack.bus.bus.health().connected ? true : undefined), 60_000));

  async function place(paymentToken = 'tok_visa'): Promise<string> {
    const product = inStockProducts[nextProduct++ % inStockProducts.length]!;
    const response = await graphql(stack.gatewayUrl, {
      query: `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }`,
      variables: { input: { lines: [{ productId: product.id, quantity: 1 }], shippingAddress: testAddress, paymentToken, idempotencyKey: randomUUID() } },
      token: stack.customer,
    });
    expect(response.errors).toBeUndefined();
    return response.data!.placeOrder.id as string;
  }

  async function placeMany(count: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i += 1) ids.push(await place());
    return ids;
  }

  /** The sagas' steps, by order. */
  async function steps(ids: string[]): Promise<Record<string, string>> {
    const rows = await stack.query<{ order_id: string; step: string }>('orders', 'SELECT order_id::text, step FROM order_sagas WHERE order_id = ANY($1::uuid[])', [ids]);
    return Object.fromEntries(rows.map((row) => [row.order_id, row.step]));
  }

  /** Waits until every saga has left its waiting steps, then expects each one CONFIRMED and nothing compensated. */
  async function expectAllConfirmed(ids: string[]): Promise<void> {
    const waiting = new Set(['RESERVING_STOCK', 'AUTHORIZING_PAYMENT', 'CREATING_SHIPMENT']);
    const final = await waitFor('every saga past its waiting steps', async () => {
      const byOrder = await steps(ids);
      return Object.keys(byOrder).length === ids.length && Object.values(byOrder).every((step) => !waiting.has(step)) ? byOrder : undefined;
    }, 90_000);
    const ended = await stack.query('orders', `SELECT type, data->>'reason' AS reason, occurred_at FROM order_events WHERE order_id = ANY($1::uuid[]) AND type NOT IN ('OrderPlaced', 'OrderConfirmed', 'PaymentUpdated', 'ShipmentUpdated')`, [ids]);
    if (ended.length > 0) {
      const stream = await stack.query('orders', `SELECT order_id, type, occurred_at FROM order_events WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, version`, [ids]);
      const commands = await stack.query('orders', `SELECT envelope->>'aggregateId' AS order_id, envelope->>'type' AS type, created_at, published_at FROM outbox_events WHERE envelope->>'aggregateId' = ANY($1) ORDER BY id`, [ids]);
      const deadLetters = await stack.bus.bus.deadLetters().catch((error: Error) => error.message);
      expect.fail(
        `orders cancelled: ${JSON.stringify(ended)}\nstreams: ${JSON.stringify(stream)}\ncommands: ${JSON.stringify(commands)}\n` +
          `dead letters: ${JSON.stringify(deadLetters)}\norders said:\n${stack.ordersOutput().slice(-6_000)}`,
      );
    }
    expect(Object.values(final)).toEqual(ids.map(() => 'AWAITING_DISPATCH'));
    const payments = await stack.query<{ status: string }>('payments', 'SELECT status::text FROM payments WHERE order_id = ANY($1::uuid[])', [ids]);
    expect(payments.map((p) => p.status)).toEqual(ids.map(() => 'AUTHORIZED'));
    const compensations = await stack.query('orders', `SELECT event_id FROM outbox_events WHERE envelope->>'type' IN ('ReleaseStock', 'VoidPayment', 'CancelShipment') AND envelope->>'aggregateId' = ANY($1)`, [ids]);
    expect(compensations).toEqual([]);
  }

  it('the bus stopped for longer than a step deadline while orders are in flight: once it is back, every order ends CONFIRMED and no authorization is voided', async () => {
    const before = await placeMany(ordersPerOutage);
    await stack.bus.stop();
    // Orders placed while the bus is away start their sagas too; their commands wait in the outbox.
    const during = await placeMany(2);
    await sleep(outageMs);
    await stack.bus.restore();
    await expectAllConfirmed([...before, ...during]);
  }, 150_000);

  it('the orders process killed for longer than a step deadline while replies pile up in the queue: restarted, every order ends CONFIRMED', async () => {
    const ids = await placeMany(ordersPerOutage);
    // Every first command is on the bus, so inventory's replies queue up for orders while it is down.
    await waitFor('the ReserveStock commands published', async () => {
      const [row] = await stack.query<{ n: number }>('orders', `SELECT count(*)::int AS n FROM outbox_events WHERE published_at IS NOT NULL AND event_id = ANY($1::uuid[])`, [ids.map((id) => commandId(id, 'ReserveStock'))]);
      return row!.n === ids.length ? true : undefined;
    });
    await stack.killOrders();
    const waiting = await stack.query<{ step: string }>('orders', `SELECT step FROM order_sagas WHERE order_id = ANY($1::uuid[]) AND status = 'RUNNING'`, [ids]);
    expect(waiting.length).toBeGreaterThan(0);
    // Down until every deadline has passed by the wall clock, with the replies waiting.
    await waitFor('every running deadline passed', async () => {
      const [row] = await stack.query<{ n: number }>('orders', `SELECT count(*)::int AS n FROM order_sagas WHERE order_id = ANY($1::uuid[]) AND status = 'RUNNING' AND deadline_at > now() - interval '1 second'`, [ids]);
      return row!.n === 0 ? true : undefined;
    });
    await sleep(outageMs - stepTimeoutMs);
    await stack.startOrders();
    await expectAllConfirmed(ids);
  }, 150_000);

  it('the orders database unreachable for longer than a step deadline: once it is back, every order ends CONFIRMED', async () => {
    const ids = await placeMany(ordersPerOutage);
    stack.ordersDatabase.pause();
    await sleep(outageMs);
    stack.ordersDatabase.resume();
    await expectAllConfirmed(ids);
  }, 150_000);

  it('a payment provider slower than the deadline (tok_slow) on a working platform still times out: CANCELLED with TIMEOUT, the stock released and the late authorization voided', async () => {
    const slow = await place('tok_slow');
    const placedAt = Date.now();
    const reason = await waitFor('the slow order cancelled', async () => {
      const [row] = await stack.query<{ status: string; reason: string | null }>('orders', 'SELECT status, reason FROM order_summaries WHERE order_id = $1', [slow]);
      return row?.status === 'CANCELLED' ? row.reason : undefined;
    }, 60_000);
    expect(reason).toBe('TIMEOUT');
    // Not before its deadline: the step began after the stock was reserved, after placeOrder.
    expect(Date.now() - placedAt).toBeGreaterThanOrEqual(stepTimeoutMs - 500);
    // Sent with the cancellation (a late authorization gets a VoidPayment of its own as well).
    const compensations = await stack.query<{ type: string }>('orders', `SELECT DISTINCT envelope->>'type' AS type FROM outbox_events WHERE envelope->>'aggregateId' = $1 AND envelope->>'type' IN ('ReleaseStock', 'VoidPayment', 'CancelShipment') ORDER BY 1`, [slow]);
    expect(compensations.map((c) => c.type)).toEqual(['ReleaseStock', 'VoidPayment']);
    await waitFor('the stock released', async () => {
      const rows = await stack.query<{ status: string }>('inventory', 'SELECT status FROM stock_reservations WHERE order_id = $1', [slow]);
      return rows.length > 0 && rows.every((row) => row.status === 'RELEASED') ? true : undefined;
    });
    await waitFor('the late authorization voided', async () => {
      const [row] = await stack.query<{ status: string }>('payments', 'SELECT status::text FROM payments WHERE order_id = $1', [slow]);
      return row?.status === 'VOIDED' ? true : undefined;
    }, 60_000);
  }, 120_000);
});

describe('the deadline sweepers of several orders replicas', () => {
  const stepMs = 10_000;
  const outageAfterMs = 1_500;
  let databaseUrl: string;
  let orders: ReturnType<typeof connectOrdersDatabase>['db'];
  let pool: pg.Pool;

  beforeAll(async () => {
    databaseUrl = await cloneDatabase(inject('testServerUrl'), templateDatabaseName(inject('runPrefix'), 'orders'), freshDatabaseName(inject('runPrefix'), 'orders'));
    orders = connectOrdersDatabase(databaseUrl, 2).db;
    pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
  });
  afterAll(async () => {
    await orders?.$disconnect();
    await pool?.end();
    if (databaseUrl) await dropDatabase(databaseUrl);
  });

  /** A replica's sweeper, ticked by hand; no saga is overdue here, so the order store is never asked. */
  function replica(): DeadlineSweeper<OrdersTransaction> {
    const runner = new OrderSagaRunner<OrdersTransaction>(orders, { executeInTransaction: () => Promise.reject(new Error('no saga should be judged here')) }, { stepTimeoutMs: stepMs });
    return new DeadlineSweeper<OrdersTransaction>(orders, runner, undefined, { sweepIntervalMs: 100, outageAfterMs });
  }

  async function sagaWaitingUntil(deadline: string): Promise<string> {
    const id = randomUUID();
    await pool.query(`INSERT INTO order_sagas (order_id, status, step, data, deadline_at, updated_at, version) VALUES ($1, 'RUNNING', 'AUTHORIZING_PAYMENT', '{}', ${deadline}, now(), 1)`, [id]);
    return id;
  }

  const deadlineOf = async (id: string) => ((await pool.query<{ deadline_at: Date }>('SELECT deadline_at FROM order_sagas WHERE order_id = $1', [id])).rows[0]!.deadline_at);

  it('share one heartbeat: a replica back after a pause finds no outage while another kept beating, and after a gap of every replica each waiting step gets a full step again, never a shorter one', async () => {
    const [a, b] = [replica(), replica()];
    await a.tick();
    // Passes by the wall clock during the pause below: its step is the one to get its time back.
    const soon = await sagaWaitingUntil(`now() + interval '3 seconds'`);
    const later = await sagaWaitingUntil(`now() + interval '60 seconds'`);
    const laterDeadline = await deadlineOf(later);

    // b beats for 1.5 s while a is away: the platform worked, nothing moves.
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      expect((await b.tick()).outageMs).toBe(0);
      await sleep(100);
    }
    expect((await a.tick()).outageMs).toBe(0);
    const kept = await deadlineOf(soon);

    // Nobody beats for longer than outageAfterMs: the first beat after finds the outage...
    await sleep(outageAfterMs + 1_000);
    const before = Date.now();
    const outage = await Promise.all([a.tick(), b.tick()]);
    // ...once: the second of two concurrent beats sees the first one's.
    expect(outage.map((tick) => tick.outageMs > outageAfterMs).sort()).toEqual([false, true]);
    const restarted = await deadlineOf(soon);
    expect(restarted.getTime()).toBeGreaterThan(kept.getTime());
    expect(restarted.getTime()).toBeGreaterThanOrEqual(before + stepMs - 1_000);
    expect(await deadlineOf(later)).toEqual(laterDeadline);
  }, 30_000);
});
