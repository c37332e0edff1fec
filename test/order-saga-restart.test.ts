/**
 * "Kill the orders process at any point of the saga and start it again: every saga in flight
 * resumes and ends in a consistent terminal state. Commands carry deterministic ids so re-sent
 * commands are idempotent downstream."
 *
 * Every context runs in this process except orders, which runs in a child process
 * (support/restart-orders-child.ts) that the tests SIGKILL at chosen points of a saga and start
 * again on the same database and port, the gateway in front of it all. Each new orders process is
 * booted ahead (Node and the code loaded, nothing connected) and started when a test needs it, so
 * a restart costs about half a second. Payments' provider holds
 * `tok_slow` authorizations until a test lets them go, so a test can kill orders while a payment
 * is pending and decide whether the answer comes while orders is down or after it is back.
 * Shipping, likewise, gets a CreateShipment to the address line `heldShipmentLine` only when a
 * test lets it go.
 *
 * After each scenario the four databases are checked directly: the order's status and its
 * saga's step, the stock (available and reserved, and reserved = the sum of live reservations for
 * every product), the payment (authorized at most once, captured at most once, one provider
 * hold) and the shipments (exactly one, or none when the saga was compensated before it).
 *
 * Kill points: (a) right after placeOrder; (b) while the payment is pending, answered while orders
 * is down, and (b′) answered after the restart; (c) after CONFIRMED, dispatched while down, and
 * again in AWAITING_DELIVERY, delivered while down; (d) a step deadline passing while orders is
 * down, the payment still pending (the time down does not count: the step gets its full time
 * again, then times out), and (d′) answered while down after the deadline (the waiting reply is
 * applied first: CONFIRMED; see docs/decisions/0019); (e) while
 * orders is in the middle of handling a reply (held on a table lock, then killed); (f) while the
 * shipment is being created, created while orders is down, and (f′) down past that step's
 * deadline, the shipment created only after it timed out once orders was back. Then every command of those orders is published again
 * with its own id past the broker's de-duplication.
 *
 * (e) needs the platform's rule that a saga step's deadline stays well above the bus's
 * redelivery time (EVENT_REDELIVERY_AFTER_MS): the delivery the killed process held is only
 * redelivered when the bus times it out.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats, headers as natsHeaders } from '@nats-io/transport-node';
import { exportSPKI } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningGateway } from '../gateway/server.ts';
import { keyNames } from '../platform/config.ts';
import { contextNames, type ContextName } from '../platform/contexts.ts';
import { dropDatabase } from '../platform/database/provision.ts';
import { commandId, sagaCommandTypes, type SagaCommandType } from '../platform/events/contracts/order-saga.ts';
import type { EventBus } from '../platform/events/bus.ts';
import type { EventEnvelope } from '../platform/events/envelope.ts';
import { issueCustomerToken } from '../platform/identity/customer-token.ts';
import { deterministicUuid } from '../platform/ids.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { startAccountsSubgraph } from '../subgraphs/accounts/subgraph.ts';
import { startCatalogSubgraph } from '../subgraphs/catalog/subgraph.ts';
import { startInventorySubgraph } from '../subgraphs/inventory/subgraph.ts';
import type { AuthorizationAnswer, AuthorizationRequest, PaymentProvider, RefundAnswer, SettlementRequest } from '../subgraphs/payments/domain/payment-provider.ts';
import { SimulatedPaymentProvider } from '../subgraphs/payments/infrastructure/simulated-provider.ts';
import { startPaymentsSubgraph } from '../subgraphs/payments/subgraph.ts';
import { startShippingSubgraph } from '../subgraphs/shipping/subgraph.ts';
import { graphql } from './support/graphql.ts';
import { freePort, startProcess, type TestProcess } from './support/processes.ts';
import { freshDatabases, generateTestKeys, startTestBus, type TestBus, type TestBusKind, startGatewayWithOrdersChild } from './support/stack.ts';
import { inheritedEnv } from './support/fault-harness.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const inStock = demoProducts.filter((p) => p.stock >= 20);
const address = { name: 'Carl Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };
/**
 * The step timeout is the orders process's: a saga's deadline is set by the process that moves it
 * into a waiting step. Long enough never to pass in the scenarios that must not time out...
 */
const longStepTimeoutMs = 20_000;
/**
 * ...and short for those whose deadline passes while orders is down; still long enough for the
 * steps before it (reserving stock) on a loaded machine.
 */
const shortStepTimeoutMs = 4_000;
const downstreamConsumers = ['inventory', 'payments', 'shipping'];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * The simulated provider, except that a `tok_slow` authorization is held until the test releases
 * it (a slow provider whose delay the test controls). Counts the distinct holds it placed per order.
 */
class HeldSlowPayments implements PaymentProvider {
  private readonly held = new Map<string, { entered: boolean; released: boolean; release: () => void; gate: Promise<void> }>();
  /** Provider references of approved authorizations, by order: more than one is a double authorization. */
  readonly references = new Map<string, Set<string>>();

  constructor(private readonly inner: PaymentProvider) {}

  private hold(orderId: string) {
    let hold = this.held.get(orderId);
    if (!hold) {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      hold = { entered: false, released: false, release, gate };
      this.held.set(orderId, hold);
    }
    return hold;
  }

  /** Whether the provider is working on this order's authorization right now. */
  pending(orderId: string): boolean {
    const hold = this.held.get(orderId);
    return !!hold && hold.entered && !hold.released;
  }

  release(orderId: string): void {
    const hold = this.hold(orderId);
    hold.released = true;
    hold.release();
  }

  releaseAll(): void {
    for (const orderId of this.held.keys()) this.release(orderId);
  }

  async authorize(request: AuthorizationRequest): Promise<AuthorizationAnswer> {
    if (request.paymentToken === 'tok_slow') {
      const hold = this.hold(request.idempotencyKey);
      hold.entered = true;
      // Never forever: a failed test must not leave the payments consumer stuck.
      await Promise.race([hold.gate, sleep(30_000)]);
    }
    const answer = await this.inner.authorize(request);
    if (answer.approved) {
      const references = this.references.get(request.idempotencyKey) ?? new Set<string>();
      references.add(answer.reference);
      this.references.set(request.idempotencyKey, references);
    }
    return answer;
  }

  capture(request: SettlementRequest): Promise<void> {
    return this.inner.capture(request);
  }

  void(request: Omit<SettlementRequest, 'amount'>): Promise<void> {
    return this.inner.void(request);
  }

  refund(request: SettlementRequest): Promise<RefundAnswer> {
    return this.inner.refund(request);
  }
}

/** The address line of shipments that shipping creates only when a test lets it (see HeldShipments). */
const heldShipmentLine = '7 Held Street';

/**
 * Holds the deliveries of a CreateShipment to `heldShipmentLine` before shipping's handler sees
 * them, until the test releases that order's (a slow warehouse whose pace the test controls).
 * Held outside any transaction: a transaction held open would hold back every outbox relay on
 * the server (see (e)).
 */
class HeldShipments {
  private readonly held = new Map<string, { entered: boolean; released: boolean; release: () => void; gate: Promise<void> }>();

  private hold(orderId: string) {
    let hold = this.held.get(orderId);
    if (!hold) {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      hold = { entered: false, released: false, release, gate };
      this.held.set(orderId, hold);
    }
    return hold;
  }

  /** `bus` as shipping is to consume it: with held CreateShipment deliveries. */
  wrap(bus: EventBus): EventBus {
    return {
      ...bus,
      subscribe: (consumer, options, handler) =>
        bus.subscribe(consumer, options, async (event, delivery) => {
          const address = (event.payload as { address?: { line1?: string } }).address;
          if (event.type === 'CreateShipment' && address?.line1 === heldShipmentLine) {
            const hold = this.hold(event.aggregateId);
            hold.entered = true;
            // Never forever: a failed test must not leave the shipping consumer stuck.
            await Promise.race([hold.gate, sleep(30_000)]);
          }
          return handler(event, delivery);
        }),
    };
  }

  /** Whether shipping has this order's CreateShipment and is held from handling it. */
  pending(orderId: string): boolean {
    const hold = this.held.get(orderId);
    return !!hold && hold.entered && !hold.released;
  }

  release(orderId: string): void {
    const hold = this.hold(orderId);
    hold.released = true;
    hold.release();
  }

  releaseAll(): void {
    for (const orderId of this.held.keys()) this.release(orderId);
  }
}

/** Every context in this process but orders, which runs (and dies) in a child process. */
interface RestartStack {
  bus: TestBus;
  busKind: TestBusKind;
  databaseUrls: Record<ContextName, string>;
  gateway: RunningGateway;
  payments: HeldSlowPayments;
  shipments: HeldShipments;
  customer: string;
  admin: string;
  /** The running orders process, if any, and its step timeout. */
  orders: TestProcess | undefined;
  stepTimeoutMs: number;
  startOrders(stepTimeoutMs: number): Promise<void>;
  killOrders(): Promise<void>;
  query<T extends pg.QueryResultRow = Record<string, any>>(context: ContextName, text: string, values?: unknown[]): Promise<T[]>;
  stop(): Promise<void>;
}

async function startRestartStack(busKind: TestBusKind): Promise<RestartStack> {
  const keys = await generateTestKeys();
  const databaseUrls = await freshDatabases();
  const bus = await startTestBus(busKind);
  const pools = Object.fromEntries(contextNames.map((name) => [name, new pg.Pool({ connectionString: databaseUrls[name], max: 1 })])) as Record<ContextName, pg.Pool>;
  const base = { port: 0, host: '127.0.0.1', gatewayPublicKey: keys.gatewayIdentity.publicKey, production: false, eventBus: bus.bus, relay: { pollIntervalMs: 200 } };

  let payments!: HeldSlowPayments;
  const shipments = new HeldShipments();
  const subgraphs: RunningContextSubgraph[] = [];
  const children: TestProcess[] = [];
  let gateway: RunningGateway | undefined;
  const ordersPort = await freePort();
  const scratch = await mkdtemp(join(tmpdir(), 'order-saga-restart-'));
  const gatewayIdentityPem = await exportSPKI(keys.gatewayIdentity.publicKey);
  // The child finds the bus from its own environment only: nothing inherited may point elsewhere.
  const inherited = inheritedEnv();

  /**
   * The next orders process, booted ahead (Node and the code loaded, nothing connected) and
   * started on SIGUSR2 when a test starts orders again.
   */
  let standby: { process: TestProcess; configFile: string } | undefined;
  const bootStandby = () => {
    const configFile = join(scratch, `orders-${children.length}.json`);
    const child = startProcess(
      // node itself, not the tsx CLI (which would outlive its killed child): the very process dies.
      process.execPath,
      ['--import', 'tsx', 'test/support/restart-orders-child.ts'],
      // The platform's rule, scaled down for a test: an event whose handler died is redelivered
      // (2 s) well before a saga step's deadline (20 s in the long-deadline scenarios).
      { ...inherited, ...bus.env, EVENT_REDELIVERY_AFTER_MS: '2000', ORDERS_DATABASE_URL: databaseUrls.orders, PORT: String(ordersPort), [keyNames.gatewayIdentityPublic]: gatewayIdentityPem, STANDBY_CONFIG_FILE: configFile },
      repoRoot,
    );
    children.push(child);
    standby = { process: child, configFile };
  };

  const stack: RestartStack = {
    bus,
    busKind,
    databaseUrls,
    get gateway() {
      return gateway!;
    },
    get payments() {
      return payments;
    },
    shipments,
    customer: await issueCustomerToken(keys.authToken.privateKey, { customerId: deterministicUuid('customer', demoUsers.customer.email), roles: ['customer'] }, 600),
    admin: await issueCustomerToken(keys.authToken.privateKey, { customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] }, 600),
    orders: undefined,
    stepTimeoutMs: 0,
    async startOrders(stepTimeoutMs) {
      if (stack.orders) throw new Error('orders is already running');
      stack.stepTimeoutMs = stepTimeoutMs;
      if (!standby) bootStandby();
      const next = standby!;
      standby = undefined;
      await next.process.waitForOutput(/^standby$/, 30_000);
      await writeFile(next.configFile, JSON.stringify({ stepTimeoutMs }));
      next.process.child.kill('SIGUSR2');
      stack.orders = next.process;
      await next.process.waitForOutput(/^ready /, 30_000);
      bootStandby();
    },
    async killOrders() {
      const child = stack.orders;
      if (!child) throw new Error('orders is not running');
      stack.orders = undefined;
      await child.kill('SIGKILL');
      expect(child.child.signalCode).toBe('SIGKILL');
    },
    async query(context, text, values = []) {
      return (await pools[context].query(text, values)).rows;
    },
    async stop() {
      payments?.releaseAll();
      shipments.releaseAll();
      for (const child of children) await child.kill('SIGKILL');
      await gateway?.stop();
      for (const subgraph of subgraphs) await subgraph.stop();
      await bus.bus.close();
      await bus.dispose();
      for (const pool of Object.values(pools)) await pool.end();
      for (const url of Object.values(databaseUrls)) await dropDatabase(url);
      await rm(scratch, { recursive: true, force: true });
    },
  };

  try {
    await seedDemoData(databaseUrls);
    subgraphs.push(await startAccountsSubgraph({ ...base, databaseUrl: databaseUrls.accounts, authTokenPrivateKey: keys.authToken.privateKey }));
    subgraphs.push(await startCatalogSubgraph({ ...base, databaseUrl: databaseUrls.catalog }));
    subgraphs.push(await startInventorySubgraph({ ...base, databaseUrl: databaseUrls.inventory }));
    subgraphs.push(
      await startPaymentsSubgraph({
        ...base,
        databaseUrl: databaseUrls.payments,
        createProvider: (db) => (payments = new HeldSlowPayments(new SimulatedPaymentProvider(db, { slowTokenDelayMs: 0 }))),
      }),
    );
    subgraphs.push(await startShippingSubgraph({ ...base, eventBus: shipments.wrap(bus.bus), databaseUrl: databaseUrls.shipping }));
    await stack.startOrders(longStepTimeoutMs);
    gateway = await startGatewayWithOrdersChild(subgraphs, ordersPort, keys);
  } catch (error) {
    await stack.stop().catch(() => {});
    throw error;
  }
  return stack;
}

describe.each(['postgres', 'nats'] as const)('killing the orders process (SIGKILL) at any point of the saga, %s bus', (busKind) => {
  let stack: RestartStack;
  /** Every order placed here, for the re-send test at the end. */
  const placed: string[] = [];

  beforeAll(async () => {
    stack = await startRestartStack(busKind);
  }, 90_000);
  afterAll(() => stack?.stop(), 60_000);

  async function place(productId: string, quantity: number, paymentToken = 'tok_visa', shippingAddress = address): Promise<string> {
    const response = await graphql(stack.gateway.url, {
      query: `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }`,
      variables: { input: { lines: [{ productId, quantity }], shippingAddress, paymentToken, idempotencyKey: randomUUID() } },
      token: stack.customer,
    });
    expect(response.errors).toBeUndefined();
    expect(response.data!.placeOrder.status).toBe('PENDING');
    placed.push(response.data!.placeOrder.id);
    return response.data!.placeOrder.id as string;
  }

  /**
   * Orders running with this step timeout. The tests below run in order and each restart already
   * starts orders with the timeout the next test needs, so this restarts only a test run alone.
   */
  async function ensureStepTimeout(stepTimeoutMs: number): Promise<void> {
    if (stack.orders && stack.stepTimeoutMs === stepTimeoutMs) return;
    if (stack.orders) await stack.killOrders();
    await stack.startOrders(stepTimeoutMs);
  }

  async function advance(orderId: string, to: string): Promise<void> {
    const response = await graphql(stack.gateway.url, { query: `mutation { advanceShipment(orderId: "${orderId}", to: ${to}) { status } }`, token: stack.admin });
    expect(response.errors).toBeUndefined();
  }

  async function saga(orderId: string) {
    const [row] = await stack.query<{ step: string; status: string; deadline_at: Date | null }>('orders', 'SELECT step, status, deadline_at FROM order_sagas WHERE order_id = $1', [orderId]);
    return row;
  }

  /** The order as the gateway shows it, once its status is one of `statuses`. */
  function untilOrder(orderId: string, statuses: string | string[], also: (order: Record<string, any>) => boolean = () => true, timeoutMs = 20_000) {
    return waitFor(`order ${orderId} ${statuses}`, async () => {
      const response = await graphql(stack.gateway.url, {
        query: `query ($id: ID!) { order(id: $id) { id status reason payment { status } shipment { status } timeline { status } } }`,
        variables: { id: orderId },
        token: stack.customer,
      });
      const order = response.data?.order;
      return [statuses].flat().includes(order?.status) && also(order) ? (order as Record<string, any>) : undefined;
    }, timeoutMs);
  }

  async function stockOf(productId: string) {
    const [row] = await stack.query<{ available: number; reserved: number }>('inventory', 'SELECT available, reserved FROM stock_items WHERE product_id = $1', [productId]);
    return row!;
  }

  async function paymentOf(orderId: string) {
    const rows = await stack.query<{ status: string; version: number }>('payments', 'SELECT status::text, version FROM payments WHERE order_id = $1', [orderId]);
    return rows[0]?.status;
  }

  async function shipmentOf(orderId: string) {
    const rows = await stack.query<{ status: string }>('shipping', 'SELECT status::text FROM shipments WHERE order_id = $1', [orderId]);
    return rows[0]?.status;
  }

  interface Expected {
    orderStatus: string;
    sagaStep: string;
    reason?: string | null;
    /** The stock of the product: still held, gone out at dispatch, or back. */
    stock: 'RESERVED' | 'COMMITTED' | 'RELEASED';
    payment: 'AUTHORIZED' | 'CAPTURED' | 'VOIDED';
    shipment: 'CREATED' | 'DELIVERED' | 'CANCELLED' | null;
  }

  /** The four databases agree with each other and with `expected`; nothing happened twice. */
  async function expectConsistent(orderId: string, productId: string, quantity: number, before: { available: number; reserved: number }, expected: Expected) {
    // orders: the order and its saga ended (or wait) where they should.
    const order = await untilOrder(orderId, expected.orderStatus);
    expect(order.reason ?? null).toBe(expected.reason ?? null);
    const sagaRow = await saga(orderId);
    expect(sagaRow).toMatchObject({ step: expected.sagaStep, status: ['COMPLETED', 'REJECTED', 'CANCELLED'].includes(expected.sagaStep) ? 'DONE' : 'RUNNING' });

    // inventory: one reservation line, in the expected state; the stock moved by `quantity` once.
    const reservations = await stack.query('inventory', 'SELECT product_id::text, quantity, status FROM stock_reservations WHERE order_id = $1', [orderId]);
    expect(reservations).toEqual([{ product_id: productId, quantity, status: expected.stock }]);
    const stock = await stockOf(productId);
    if (expected.stock === 'RESERVED') expect(stock).toEqual({ available: before.available - quantity, reserved: before.reserved + quantity });
    if (expected.stock === 'COMMITTED') expect(stock).toEqual({ available: before.available - quantity, reserved: before.reserved });
    if (expected.stock === 'RELEASED') expect(stock).toEqual(before);
    // Nothing is reserved twice anywhere: every product's `reserved` is the sum of its live reservations.
    const mismatched = await stack.query(
      'inventory',
      `SELECT s.product_id::text, s.reserved, COALESCE(SUM(r.quantity) FILTER (WHERE r.status = 'RESERVED'), 0)::int AS held
         FROM stock_items s LEFT JOIN stock_reservations r ON r.product_id = s.product_id
        GROUP BY s.product_id, s.reserved HAVING s.reserved <> COALESCE(SUM(r.quantity) FILTER (WHERE r.status = 'RESERVED'), 0)`,
    );
    expect(mismatched).toEqual([]);

    // payments: one payment, authorized at most once (exactly once here), captured at most once.
    const payments = await stack.query('payments', 'SELECT id::text, status::text FROM payments WHERE order_id = $1', [orderId]);
    expect(payments).toEqual([{ id: expect.any(String), status: expected.payment }]);
    const changes = await stack.query<{ status: string; n: number }>(
      'payments',
      'SELECT c.status::text, count(*)::int AS n FROM payment_status_changes c JOIN payments p ON p.id = c.payment_id WHERE p.order_id = $1 GROUP BY c.status ORDER BY c.status',
      [orderId],
    );
    const times = Object.fromEntries(changes.map((c) => [c.status, c.n]));
    expect(times.AUTHORIZED).toBe(1);
    expect(times.CAPTURED ?? 0).toBe(expected.payment === 'CAPTURED' ? 1 : 0);
    expect(times.VOIDED ?? 0).toBe(expected.payment === 'VOIDED' ? 1 : 0);
    expect(stack.payments.references.get(orderId)?.size).toBe(1);
    const operations = await stack.query<{ operation: string; n: number }>(
      'payments',
      'SELECT operation, count(*)::int AS n FROM provider_operations WHERE idempotency_key = $1 GROUP BY operation ORDER BY operation',
      [orderId],
    );
    expect(Object.fromEntries(operations.map((o) => [o.operation, o.n]))).toEqual({
      authorize: 1,
      ...(expected.payment === 'CAPTURED' ? { capture: 1 } : {}),
      ...(expected.payment === 'VOIDED' ? { void: 1 } : {}),
    });

    // shipping: exactly one shipment, or none when the saga never got that far.
    const shipments = await stack.query('shipping', 'SELECT status::text FROM shipments WHERE order_id = $1', [orderId]);
    expect(shipments).toEqual(expected.shipment ? [{ status: expected.shipment }] : []);

    // The gateway shows the same.
    expect(order.payment?.status).toBe(expected.payment);
    expect(order.shipment?.status ?? null).toBe(expected.shipment === null ? null : expected.shipment);
    return order;
  }

  it('(a) killed right after placeOrder returned (RESERVING_STOCK): on restart the order is CONFIRMED', async () => {
    await ensureStepTimeout(longStepTimeoutMs);
    const product = inStock[0]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 2);
    await stack.killOrders();
    expect(await saga(id)).toMatchObject({ step: 'RESERVING_STOCK', status: 'RUNNING' });

    // The ReserveStock command got out before the kill, and inventory reserves while orders is
    // down (its reply waits on the bus), or it is still in the outbox and goes out after the restart.
    const [command] = await stack.query('orders', 'SELECT published_at FROM outbox_events WHERE event_id = $1', [commandId(id, 'ReserveStock')]);
    expect(command).toBeDefined();
    if (command!.published_at) await waitFor('the reservation while orders is down', async () => (await stockOf(product.id)).reserved === before.reserved + 2);
    await stack.startOrders(longStepTimeoutMs);
    await expectConsistent(id, product.id, 2, before, { orderStatus: 'CONFIRMED', sagaStep: 'AWAITING_DISPATCH', stock: 'RESERVED', payment: 'AUTHORIZED', shipment: 'CREATED' });
  }, 45_000);

  it('(b) killed while the payment is pending (AUTHORIZING_PAYMENT, tok_slow), authorized while orders is down: on restart the order is CONFIRMED', async () => {
    await ensureStepTimeout(longStepTimeoutMs);
    const product = inStock[1]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 1, 'tok_slow');
    await waitFor('the provider working on the authorization', async () => stack.payments.pending(id));
    expect(await saga(id)).toMatchObject({ step: 'AUTHORIZING_PAYMENT', status: 'RUNNING' });
    await stack.killOrders();

    stack.payments.release(id);
    await waitFor('the payment authorized while orders is down', async () => (await paymentOf(id)) === 'AUTHORIZED');
    expect(await saga(id)).toMatchObject({ step: 'AUTHORIZING_PAYMENT' });
    await stack.startOrders(longStepTimeoutMs);
    await expectConsistent(id, product.id, 1, before, { orderStatus: 'CONFIRMED', sagaStep: 'AWAITING_DISPATCH', stock: 'RESERVED', payment: 'AUTHORIZED', shipment: 'CREATED' });
  }, 45_000);

  it('(b′) killed while the payment is pending, restarted while it still is: the answer after the restart CONFIRMS the order', async () => {
    await ensureStepTimeout(longStepTimeoutMs);
    const product = inStock[2]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 1, 'tok_slow');
    await waitFor('the provider working on the authorization', async () => stack.payments.pending(id));
    await stack.killOrders();
    await stack.startOrders(longStepTimeoutMs);
    expect(await saga(id)).toMatchObject({ step: 'AUTHORIZING_PAYMENT', status: 'RUNNING' });
    stack.payments.release(id);
    await expectConsistent(id, product.id, 1, before, { orderStatus: 'CONFIRMED', sagaStep: 'AWAITING_DISPATCH', stock: 'RESERVED', payment: 'AUTHORIZED', shipment: 'CREATED' });
  }, 45_000);

  it('(c) killed after CONFIRMED, dispatched while down → SHIPPED and captured once; killed again, delivered while down → DELIVERED', async () => {
    await ensureStepTimeout(longStepTimeoutMs);
    const product = inStock[3]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 3);
    await untilOrder(id, 'CONFIRMED', (o) => o.shipment?.status === 'CREATED');
    await stack.killOrders();

    await advance(id, 'DISPATCHED');
    await stack.startOrders(longStepTimeoutMs);
    await untilOrder(id, 'SHIPPED', (o) => o.payment?.status === 'CAPTURED');
    await waitFor('the stock committed', async () => (await stockOf(product.id)).reserved === before.reserved);

    await stack.killOrders();
    await advance(id, 'IN_TRANSIT');
    await advance(id, 'DELIVERED');
    // AWAITING_DELIVERY has no deadline; the next test wants a short one.
    await stack.startOrders(shortStepTimeoutMs);
    const delivered = await expectConsistent(id, product.id, 3, before, { orderStatus: 'DELIVERED', sagaStep: 'COMPLETED', stock: 'COMMITTED', payment: 'CAPTURED', shipment: 'DELIVERED' });
    expect(delivered.timeline.map((t: { status: string }) => t.status)).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']);
  }, 45_000);

  /**
   * Kills orders and keeps it down until the saga's deadline has passed by the wall clock, and by
   * more than an outage (2 s without a heartbeat): the restart must give the step its time back.
   */
  async function downPastTheDeadline(id: string): Promise<void> {
    const { deadline_at: deadline } = (await saga(id))!;
    expect(deadline).toBeInstanceOf(Date);
    await stack.killOrders();
    await sleep(Math.max(0, deadline!.getTime() - Date.now()) + 2_500);
  }

  /** The saga's deadline, once the restarted orders has given the step its full time again. */
  async function deadlineRestartedAfter(id: string, restartedAt: number): Promise<Date> {
    return waitFor('the step given its full time again', async () => {
      const row = await saga(id);
      return row?.status === 'RUNNING' && row.deadline_at && row.deadline_at.getTime() >= restartedAt + shortStepTimeoutMs - 1_000 ? row.deadline_at : undefined;
    });
  }

  it('(d) killed in AUTHORIZING_PAYMENT and down past the deadline: the time down does not count, so on restart the step waits its full time again, then with the payment still pending CANCELLED/TIMEOUT, stock released, the late authorization voided, no shipment', async () => {
    await ensureStepTimeout(shortStepTimeoutMs);
    const product = inStock[4]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 2, 'tok_slow');
    await waitFor('the provider working on the authorization', async () => stack.payments.pending(id));
    expect(await saga(id)).toMatchObject({ step: 'AUTHORIZING_PAYMENT', status: 'RUNNING' });
    await downPastTheDeadline(id);

    const restartedAt = Date.now();
    await stack.startOrders(shortStepTimeoutMs);
    await deadlineRestartedAfter(id, restartedAt);
    // Still waiting for the payment: this time the deadline passes on a working platform.
    await untilOrder(id, 'CANCELLED');
    expect(Date.now() - restartedAt).toBeGreaterThanOrEqual(shortStepTimeoutMs - 1_000);
    expect(stack.payments.pending(id)).toBe(true);
    // The provider answers only now: the saga has ended, so its authorization is voided.
    stack.payments.release(id);
    await waitFor('the authorization voided', async () => (await paymentOf(id)) === 'VOIDED');
    await waitFor('the stock released', async () => (await stockOf(product.id)).available === before.available);
    await expectConsistent(id, product.id, 2, before, { orderStatus: 'CANCELLED', reason: 'TIMEOUT', sagaStep: 'CANCELLED', stock: 'RELEASED', payment: 'VOIDED', shipment: null });
  }, 45_000);

  it('(d′) down past the deadline, the payment authorized while down after it: on restart the reply that waited is applied before the deadline is judged, and the order is CONFIRMED', async () => {
    await ensureStepTimeout(shortStepTimeoutMs);
    const product = inStock[5]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 1, 'tok_slow');
    await waitFor('the provider working on the authorization', async () => stack.payments.pending(id));
    expect(await saga(id)).toMatchObject({ step: 'AUTHORIZING_PAYMENT', status: 'RUNNING' });
    await downPastTheDeadline(id);
    // The authorization comes after the deadline; its reply waits on the bus for orders.
    stack.payments.release(id);
    await waitFor('the payment authorized while orders is down', async () => (await paymentOf(id)) === 'AUTHORIZED');

    // The next tests want a long step timeout.
    await stack.startOrders(longStepTimeoutMs);
    await expectConsistent(id, product.id, 1, before, { orderStatus: 'CONFIRMED', sagaStep: 'AWAITING_DISPATCH', stock: 'RESERVED', payment: 'AUTHORIZED', shipment: 'CREATED' });
  }, 45_000);

  it('(f) killed while the shipment is being created (CREATING_SHIPMENT), created while orders is down: on restart the order is CONFIRMED', async () => {
    await ensureStepTimeout(longStepTimeoutMs);
    const product = inStock[7]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 1, 'tok_visa', { ...address, line1: heldShipmentLine });
    await waitFor('shipping about to create the shipment', async () => stack.shipments.pending(id));
    expect(await saga(id)).toMatchObject({ step: 'CREATING_SHIPMENT', status: 'RUNNING' });
    await stack.killOrders();

    stack.shipments.release(id);
    await waitFor('the shipment created while orders is down', async () => (await shipmentOf(id)) === 'CREATED');
    // Its ShipmentCreated waits on the bus: only orders moves the saga on.
    expect(await saga(id)).toMatchObject({ step: 'CREATING_SHIPMENT', status: 'RUNNING' });
    // The saga keeps the deadline it has, and AWAITING_DISPATCH has none; the next test wants a short one.
    await stack.startOrders(shortStepTimeoutMs);
    await expectConsistent(id, product.id, 1, before, { orderStatus: 'CONFIRMED', sagaStep: 'AWAITING_DISPATCH', stock: 'RESERVED', payment: 'AUTHORIZED', shipment: 'CREATED' });
  }, 45_000);

  it('(f′) killed in CREATING_SHIPMENT and down past the deadline: on restart the step waits its full time again, then CANCELLED/TIMEOUT, stock released, authorization voided, the late shipment cancelled', async () => {
    await ensureStepTimeout(shortStepTimeoutMs);
    const product = inStock[8]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 2, 'tok_visa', { ...address, line1: heldShipmentLine });
    await waitFor('shipping about to create the shipment', async () => stack.shipments.pending(id));
    // Still waiting for the shipment: the deadline passes while orders is down.
    expect(await saga(id)).toMatchObject({ step: 'CREATING_SHIPMENT', status: 'RUNNING' });
    await downPastTheDeadline(id);

    // Short again: the step's time given back after the restart is the new process's step timeout.
    const restartedAt = Date.now();
    await stack.startOrders(shortStepTimeoutMs);
    await deadlineRestartedAfter(id, restartedAt);
    await untilOrder(id, 'CANCELLED');
    expect(stack.shipments.pending(id)).toBe(true);
    // Shipping creates the shipment only now, after the saga ended: the compensation cancels it.
    stack.shipments.release(id);
    await waitFor('the shipment cancelled', async () => (await shipmentOf(id)) === 'CANCELLED');
    await waitFor('the authorization voided', async () => (await paymentOf(id)) === 'VOIDED');
    await waitFor('the stock released', async () => (await stockOf(product.id)).available === before.available);
    await expectConsistent(id, product.id, 2, before, { orderStatus: 'CANCELLED', reason: 'TIMEOUT', sagaStep: 'CANCELLED', stock: 'RELEASED', payment: 'VOIDED', shipment: 'CANCELLED' });
  }, 45_000);

  it("commands carry deterministic ids, and re-sent past the broker's de-duplication they change nothing downstream", async () => {
    expect(placed.length).toBeGreaterThan(0);
    const commands = (
      await stack.query<{ envelope: EventEnvelope }>('orders', `SELECT envelope FROM outbox_events WHERE envelope->>'aggregateId' = ANY($1) ORDER BY id`, [placed])
    )
      .map((row) => row.envelope)
      .filter((event) => (sagaCommandTypes as readonly string[]).includes(event.type));
    for (const command of commands) {
      const late = deterministicUuid('order-saga-command', `${command.aggregateId}:${command.type}:late`);
      expect([commandId(command.aggregateId, command.type as SagaCommandType), late]).toContain(command.eventId);
    }
    // Each order's first command is its ReserveStock, under the id anyone can derive from the order id.
    for (const id of placed) expect(commands.find((c) => c.aggregateId === id && c.type === 'ReserveStock')?.eventId).toBe(commandId(id, 'ReserveStock'));

    const downstream = async () => ({
      stock: await stack.query('inventory', 'SELECT product_id::text, available, reserved, version FROM stock_items ORDER BY product_id'),
      reservations: await stack.query('inventory', 'SELECT order_id::text, product_id::text, quantity, status FROM stock_reservations ORDER BY order_id, product_id'),
      payments: await stack.query('payments', 'SELECT order_id::text, status::text, version FROM payments ORDER BY order_id'),
      providerOperations: await stack.query('payments', 'SELECT operation, idempotency_key FROM provider_operations ORDER BY 1, 2'),
      shipments: await stack.query('shipping', 'SELECT order_id::text, status::text, version FROM shipments ORDER BY order_id'),
      inboxes: {
        inventory: await stack.query('inventory', 'SELECT count(*)::int AS n FROM inbox_events'),
        payments: await stack.query('payments', 'SELECT count(*)::int AS n FROM inbox_events'),
        shipping: await stack.query('shipping', 'SELECT count(*)::int AS n FROM inbox_events'),
      },
      outboxes: {
        inventory: await stack.query('inventory', 'SELECT count(*)::int AS n FROM outbox_events'),
        payments: await stack.query('payments', 'SELECT count(*)::int AS n FROM outbox_events'),
        shipping: await stack.query('shipping', 'SELECT count(*)::int AS n FROM outbox_events'),
      },
      sagas: await stack.query('orders', 'SELECT order_id::text, step, version FROM order_sagas ORDER BY order_id'),
    });
    // Every saga ended or waiting on a person, every outbox sent, inventory, payments and shipping
    // caught up (not orders: a delivery a killed process held stays in flight until the bus times it out).
    const quiet = async () => {
      const [waiting] = await stack.query<{ n: number }>('orders', `SELECT count(*)::int AS n FROM order_sagas WHERE status = 'RUNNING' AND deadline_at IS NOT NULL`);
      if (waiting!.n > 0) return false;
      for (const context of ['orders', 'inventory', 'payments', 'shipping'] as const) {
        const [unsent] = await stack.query<{ n: number }>(context, 'SELECT count(*)::int AS n FROM outbox_events WHERE published_at IS NULL');
        if (unsent!.n > 0) return false;
      }
      return (await stack.bus.bus.status()).filter((consumer) => downstreamConsumers.includes(consumer.consumer)).every((consumer) => consumer.lag === 0);
    };
    const settled = async () => {
      await waitFor('everything settled', quiet);
      await sleep(300);
      await waitFor('everything settled', quiet);
    };
    await settled();
    const snapshot = await downstream();

    const delivered = await resend(stack, commands);
    await settled();
    // They did reach the consumers, which recognised every one of them...
    expect(await delivered()).toBe(true);
    // ...and changed nothing: no effect, no reply, no inbox row.
    expect(await downstream()).toEqual(snapshot);
    expect(await stack.bus.bus.deadLetters()).toEqual([]);
  }, 45_000);

  it('(e) killed while handling a reply (PaymentAuthorized, its transaction not committed): on restart that reply moves the saga on, and the order is CONFIRMED', async () => {
    await ensureStepTimeout(longStepTimeoutMs);
    const product = inStock[6]!;
    const before = await stockOf(product.id);
    const id = await place(product.id, 1, 'tok_slow');
    await waitFor('the provider working on the authorization', async () => stack.payments.pending(id));
    // Hold the sagas' table: orders' handler of the reply waits for it inside its transaction
    // (after its inbox row). A table lock, not a row lock: a row lock would give this transaction
    // an id, and every outbox relay on the server waits for the oldest running one (relay.ts),
    // so the reply would never get out of payments.
    const blocker = new pg.Client({ connectionString: stack.databaseUrls.orders });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE order_sagas IN EXCLUSIVE MODE');
      stack.payments.release(id);
      await waitFor('orders handling PaymentAuthorized, waiting for the row', async () => {
        // The saga's read of its row (the deadline sweeper waits too, on another query).
        const [waiting] = await stack.query<{ n: number }>(
          'orders',
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM order_sagas WHERE order_id =%'`,
        );
        return waiting!.n > 0;
      });
      await stack.killOrders();
    } finally {
      await blocker.query('ROLLBACK');
      await blocker.end();
    }
    expect(await saga(id)).toMatchObject({ step: 'AUTHORIZING_PAYMENT', status: 'RUNNING' });
    await stack.startOrders(longStepTimeoutMs);

    // The other scenarios resume within a second or two of the restart; the step deadline is
    // 20 s away, so only a redelivery of the reply (after EVENT_REDELIVERY_AFTER_MS = 2 s, and on
    // pg-boss the next maintenance pass) can move this saga on.
    const graceMs = 10_000;
    const resumed = await untilOrder(id, 'CONFIRMED', () => true, graceMs).catch(() => undefined);
    try {
      const ordersLag = (await stack.bus.bus.status()).find((consumer) => consumer.consumer === 'orders')?.lag;
      expect(
        { order: resumed?.status ?? 'PENDING', saga: (await saga(id))?.step },
        `${graceMs / 1_000} s after the restart the PaymentAuthorized delivery the killed process held is still not redelivered (orders consumer lag ${ordersLag}, ` +
          `payment ${await paymentOf(id)}): the saga waits for its deadline, then cancels the order as TIMEOUT`,
      ).toEqual({ order: 'CONFIRMED', saga: 'AWAITING_DISPATCH' });
      await expectConsistent(id, product.id, 1, before, { orderStatus: 'CONFIRMED', sagaStep: 'AWAITING_DISPATCH', stock: 'RESERVED', payment: 'AUTHORIZED', shipment: 'CREATED' });
    } finally {
      // Not left to time out in the middle of someone else's test: cancelled (and compensated) now.
      if (!resumed) await graphql(stack.gateway.url, { query: `mutation { cancelOrder(id: "${id}") { status } }`, token: stack.customer });
    }
  }, 45_000);
});

/**
 * Publishes the commands again with their own ids, around the broker's de-duplication (which
 * would otherwise drop them before any consumer sees them): what a relay does after its
 * duplicate window, or a bus that lost its de-duplication state.
 */
async function resend(stack: RestartStack, commands: EventEnvelope[]): Promise<() => Promise<boolean>> {
  const ids = commands.map((c) => c.eventId);
  if (stack.busKind === 'postgres') {
    const inBus = async <T extends pg.QueryResultRow>(text: string, values: unknown[]) => {
      const client = new pg.Client({ connectionString: stack.bus.env.EVENT_BUS_DATABASE_URL });
      await client.connect();
      try {
        return (await client.query<T>(text, values)).rows;
      } finally {
        await client.end();
      }
    };
    // The finished jobs keep their ids (the events' ids) and would make the insert a no-op.
    await inBus('DELETE FROM pgboss.job WHERE id = ANY($1::uuid[])', [ids]);
    for (const command of commands) await stack.bus.bus.publish(command);
    // Each command goes to one consumer's queue: one job each, handled without an error.
    return async () => {
      const [row] = await inBus<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE id = ANY($1::uuid[]) AND state = 'completed'`, [ids]);
      return row!.n === commands.length;
    };
  }
  const nc = await connectNats({ servers: stack.bus.env.NATS_URL! });
  let lastSeq = 0;
  try {
    const js = jetstream(nc);
    for (const command of commands) {
      const headers = natsHeaders();
      headers.set('Event-Type', command.type);
      // No msgID: the stream's duplicate window does not drop it.
      const ack = await js.publish(`${stack.bus.env.NATS_SUBJECT_PREFIX}.${command.source}.${command.aggregateType}.${command.type}`, JSON.stringify(command), { headers });
      lastSeq = ack.seq;
    }
  } finally {
    await nc.close();
  }
  // Every downstream consumer has acknowledged the stream past the last re-sent command.
  return async () => {
    const nc = await connectNats({ servers: stack.bus.env.NATS_URL! });
    try {
      const jsm = await jetstreamManager(nc);
      const floors = await Promise.all(downstreamConsumers.map(async (name) => (await jsm.consumers.info(stack.bus.env.NATS_STREAM!, name)).ack_floor.stream_seq));
      return floors.every((seq) => seq >= lastSeq);
    } finally {
      await nc.close();
    }
  };
}
