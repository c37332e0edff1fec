/**
 * "Subscriptions that survive a subgraph restart without gaps" (issue 10, item 8;
 * docs/decisions/0020): the gateway's socket to orders drops when the orders process is killed;
 * changes committed while orders is down and while it starts again reach every subscriber of
 * `myOrderUpdates` exactly once and in order, because the gateway re-subscribes from the
 * position of the last event it delivered and orders replays what came after it. A subgraph that
 * stays away longer than the reconnection budget ends its subscriptions with SUBGRAPH_UNAVAILABLE.
 *
 * Every context runs in this process except orders, which runs in a child process
 * (support/restart-orders-child.ts) that the tests SIGKILL and start again on the same database
 * and port, with the real gateway in front of it all.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import { exportSPKI } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startGateway, type GatewayOptions, type RunningGateway } from '../gateway/server.ts';
import { keyNames } from '../platform/config.ts';
import type { ContextName } from '../platform/contexts.ts';
import { dropDatabase } from '../platform/database/provision.ts';
import { positionExtension, resumeAfterExtension } from '../platform/graphql/subscription-position.ts';
import { issueCustomerToken } from '../platform/identity/customer-token.ts';
import { GatewayIdentitySigner } from '../platform/identity/gateway-identity.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { startAccountsSubgraph } from '../subgraphs/accounts/subgraph.ts';
import { startCatalogSubgraph } from '../subgraphs/catalog/subgraph.ts';
import { startInventorySubgraph } from '../subgraphs/inventory/subgraph.ts';
import { startPaymentsSubgraph } from '../subgraphs/payments/subgraph.ts';
import { startShippingSubgraph } from '../subgraphs/shipping/subgraph.ts';
import { graphql } from './support/graphql.ts';
import { advanceShipment, inStockProducts, testAddress } from './support/orders.ts';
import { freePort, startProcess, type TestProcess } from './support/processes.ts';
import { freshDatabases, generateTestKeys, startTestBus, type TestBus, type TestKeys } from './support/stack.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';
import { recordSubscription, statusChanges, statusesHeardTwice, type Received } from './support/subscriptions.ts';
import type { OrderEvent } from '../subgraphs/orders/domain/order.ts';
import { waitFor } from './support/wait.ts';
import { inheritedEnv } from './support/fault-harness.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const supergraphSdl = readFileSync(new URL('../schema/supergraph.graphql', import.meta.url), 'utf8');
const updatesQuery = `subscription { myOrderUpdates { id status timeline { status } customer { id } } }`;

interface Customer {
  id: string;
  token: string;
}

/** Every context in this process but orders, which runs (and dies) in a child process. */
class RestartableOrders {
  readonly clients: Client[] = [];
  readonly gateways: RunningGateway[] = [];
  readonly subgraphs: RunningContextSubgraph[] = [];
  orders: TestProcess | undefined;
  ordersPort = 0;
  /** Between the gateways and orders: holding it keeps a gateway from reconnecting. */
  proxy!: TcpProxy;
  /** The orders database, read directly. */
  ordersDb!: pg.Pool;
  #children: TestProcess[] = [];
  #env: NodeJS.ProcessEnv = {};

  constructor(
    readonly keys: TestKeys,
    readonly databaseUrls: Record<ContextName, string>,
    readonly bus: TestBus,
  ) {}

  static async start(): Promise<RestartableOrders> {
    const keys = await generateTestKeys();
    const stack = new RestartableOrders(keys, await freshDatabases(), await startTestBus('postgres'));
    try {
      await seedDemoData(stack.databaseUrls);
      const base = { port: 0, host: '127.0.0.1', gatewayPublicKey: keys.gatewayIdentity.publicKey, production: false, eventBus: stack.bus.bus, relay: { pollIntervalMs: 200 } };
      const urls = stack.databaseUrls;
      stack.subgraphs.push(await startAccountsSubgraph({ ...base, databaseUrl: urls.accounts, authTokenPrivateKey: keys.authToken.privateKey }));
      stack.subgraphs.push(await startCatalogSubgraph({ ...base, databaseUrl: urls.catalog }));
      stack.subgraphs.push(await startInventorySubgraph({ ...base, databaseUrl: urls.inventory }));
      stack.subgraphs.push(await startPaymentsSubgraph({ ...base, databaseUrl: urls.payments }));
      stack.subgraphs.push(await startShippingSubgraph({ ...base, databaseUrl: urls.shipping }));
      stack.ordersPort = await freePort();
      // The child finds the bus and its database from this environment only.
      const inherited = inheritedEnv();
      stack.#env = {
        ...inherited,
        ...stack.bus.env,
        ORDERS_DATABASE_URL: urls.orders,
        PORT: String(stack.ordersPort),
        [keyNames.gatewayIdentityPublic]: await exportSPKI(keys.gatewayIdentity.publicKey),
        SAGA_STEP_TIMEOUT_MS: '60000',
      };
      stack.proxy = await startTcpProxy({ host: '127.0.0.1', port: stack.ordersPort });
      stack.ordersDb = new pg.Pool({ connectionString: urls.orders, max: 1 });
      await stack.startOrders();
      await stack.ordersReady();
    } catch (error) {
      await stack.stop().catch(() => {});
      throw error;
    }
    return stack;
  }

  get ordersUrl(): string {
    return `http://127.0.0.1:${this.ordersPort}/graphql`;
  }

  /** The statuses the orders projection holds for these orders, each as `id:STATUS`. */
  /** An order's stream, read from the orders database (orders runs in a child process). */
  async readStream(orderId: string): Promise<(OrderEvent & { version: number })[]> {
    const { rows } = await this.ordersDb.query<{ version: number; type: OrderEvent['type']; data: OrderEvent['data'] }>(
      'SELECT version, type, data FROM order_events WHERE order_id = $1::uuid ORDER BY version',
      [orderId],
    );
    return rows.map((row) => ({ type: row.type, data: row.data, version: row.version }) as OrderEvent & { version: number });
  }

  async projected(orderIds: string[]): Promise<Set<string>> {
    const { rows } = await this.ordersDb.query<{ entry: string }>(`SELECT order_id::text || ':' || status AS entry FROM order_timeline WHERE order_id = ANY($1::uuid[])`, [orderIds]);
    return new Set(rows.map((row) => row.entry));
  }

  /** Starts an orders process; `ordersReady` waits until it serves. */
  async startOrders(): Promise<void> {
    if (this.orders) throw new Error('orders is already running');
    // node itself, not the tsx CLI (which would outlive its killed child): the very process dies.
    this.orders = startProcess(process.execPath, ['--import', 'tsx', 'test/support/restart-orders-child.ts'], this.#env, repoRoot);
    this.#children.push(this.orders);
  }

  async ordersReady(): Promise<void> {
    await this.orders!.waitForOutput(/^ready /, 90_000);
  }

  async killOrders(): Promise<void> {
    const child = this.orders!;
    this.orders = undefined;
    await child.kill('SIGKILL');
    expect(child.child.signalCode).toBe('SIGKILL');
  }

  /** A gateway in front of every subgraph, reaching orders directly or through the proxy. */
  async gateway(subscriptions: GatewayOptions['subscriptions'] = {}, throughProxy = false): Promise<RunningGateway> {
    const [accounts, catalog, inventory, payments, shipping] = this.subgraphs as [RunningContextSubgraph, RunningContextSubgraph, RunningContextSubgraph, RunningContextSubgraph, RunningContextSubgraph];
    const gateway = await startGateway({
      supergraphSdl,
      port: 0,
      host: '127.0.0.1',
      subgraphUrls: { accounts: accounts.url, catalog: catalog.url, inventory: inventory.url, orders: throughProxy ? `http://${this.proxy.address}/graphql` : this.ordersUrl, payments: payments.url, shipping: shipping.url },
      customerTokenPublicKey: this.keys.authToken.publicKey,
      identitySigner: new GatewayIdentitySigner(this.keys.gatewayIdentity.privateKey),
      production: false,
      subscriptions,
    });
    this.gateways.push(gateway);
    return gateway;
  }

  async customer(roles: ('customer' | 'admin')[] = ['customer']): Promise<Customer> {
    const id = randomUUID();
    return { id, token: await issueCustomerToken(this.keys.authToken.privateKey, { customerId: id, roles }, 900) };
  }

  /** A graphql-ws client of `gateway`, signed in as `customer`. */
  connect(gateway: RunningGateway, customer: Customer): Client {
    const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${customer.token}` } });
    this.clients.push(client);
    return client;
  }

  async stop(): Promise<void> {
    await Promise.all(this.clients.map((client) => client.dispose()));
    for (const child of this.#children) await child.kill('SIGKILL');
    for (const gateway of this.gateways) await gateway.stop();
    await this.proxy?.close();
    await this.ordersDb?.end();
    for (const subgraph of this.subgraphs) await subgraph.stop();
    await this.bus.bus.close();
    await this.bus.dispose();
    for (const url of Object.values(this.databaseUrls)) await dropDatabase(url);
  }
}

describe('myOrderUpdates across a restart of the orders process', () => {
  let stack: RestartableOrders;
  let gateway: RunningGateway;
  let admin: Customer;

  beforeAll(async () => {
    stack = await RestartableOrders.start();
    gateway = await stack.gateway({}, true);
    admin = await stack.customer(['customer', 'admin']);
  }, 180_000);
  afterAll(() => stack?.stop(), 120_000);

  /** Places an order as a client would: told SERVICE_OVERLOADED (a busy machine), it retries with the same key. */
  async function place(customer: Customer, product: number): Promise<string> {
    const input = { lines: [{ productId: inStockProducts[product % inStockProducts.length]!.id, quantity: 1 }], shippingAddress: testAddress, paymentToken: 'tok_visa', idempotencyKey: randomUUID() };
    return waitFor('the order placed', async () => {
      const response = await graphql(gateway.url, { query: `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }`, variables: { input }, token: customer.token });
      if (response.errors?.every((error) => error.extensions?.code === 'SERVICE_OVERLOADED')) return undefined;
      expect(response.errors).toBeUndefined();
      return response.data!.placeOrder.id as string;
    }, 60_000);
  }

  async function readOrder(customer: Customer, id: string) {
    const response = await graphql(gateway.url, { query: `query ($id: ID!) { order(id: $id) { id status timeline { status } customer { id } } }`, variables: { id }, token: customer.token });
    return response.data?.order as { id: string; status: string; timeline: { status: string }[]; customer: { id: string } } | null | undefined;
  }

  const untilStatus = (customer: Customer, id: string, status: string) =>
    waitFor(`order ${id} ${status}`, async () => ((await readOrder(customer, id))?.status === status ? true : undefined), 60_000);

  /** Each order's statuses as the subscriber received them, in the order received. */
  const statusesByOrder = (received: Received) => {
    const byOrder = new Map<string, string[]>();
    for (const event of received.data) byOrder.set(event.myOrderUpdates.id, [...(byOrder.get(event.myOrderUpdates.id) ?? []), event.myOrderUpdates.status]);
    return byOrder;
  };

  it('delivers to each of 5 subscribers every change committed while orders was down and while it restarted, exactly once and in order, and only their own', async () => {
    const customers = await Promise.all([0, 1, 2, 3, 4].map(() => stack.customer()));
    // Two orders each, confirmed before anyone subscribes: their past is not sent.
    const orders = new Map<string, { first: string; second: string; third?: string }>();
    for (const [index, customer] of customers.entries()) orders.set(customer.id, { first: await place(customer, index), second: await place(customer, index + 1) });
    for (const customer of customers) for (const id of [orders.get(customer.id)!.first, orders.get(customer.id)!.second]) await untilStatus(customer, id, 'CONFIRMED');

    const subscribers = customers.map((customer) => ({ customer, received: recordSubscription(stack.connect(gateway, customer), updatesQuery) }));
    await waitFor('five upstream subscriptions at orders', () => (gateway.subscriptionStats().upstreamSubscriptions === 5 ? true : undefined));
    // Live before the fault: each first order ships, and every subscriber hears it.
    for (const { customer } of subscribers) await advanceShipment(gateway.url, admin.token, orders.get(customer.id)!.first, 'DISPATCHED');
    await waitFor('SHIPPED heard by every subscriber', () =>
      subscribers.every(({ customer, received }) => received.data.some((d) => d.myOrderUpdates.id === orders.get(customer.id)!.first && d.myOrderUpdates.status === 'SHIPPED')) ? true : undefined,
    60_000);

    await stack.killOrders();
    // The gateway's socket stays cut until orders has projected every change made meanwhile (as a
    // reconnection back-off would hold it): they all commit between the drop and the
    // re-subscription, which is what a subscription that restarts "from now" loses.
    stack.proxy.pause();
    // While orders is down, shipping goes on: orders projects these once it is back.
    for (const { customer } of subscribers) {
      await advanceShipment(gateway.url, admin.token, orders.get(customer.id)!.first, 'IN_TRANSIT');
      await advanceShipment(gateway.url, admin.token, orders.get(customer.id)!.first, 'DELIVERED');
      await advanceShipment(gateway.url, admin.token, orders.get(customer.id)!.second, 'DISPATCHED');
    }
    await stack.startOrders();
    // ...and while it starts again.
    for (const { customer } of subscribers) {
      await advanceShipment(gateway.url, admin.token, orders.get(customer.id)!.second, 'IN_TRANSIT');
      await advanceShipment(gateway.url, admin.token, orders.get(customer.id)!.second, 'DELIVERED');
    }
    await stack.ordersReady();
    const meanwhile = subscribers.flatMap(({ customer }) => [`${orders.get(customer.id)!.first}:DELIVERED`, `${orders.get(customer.id)!.second}:DELIVERED`]);
    await waitFor('orders back and every change of the outage projected', async () => {
      const projected = await stack.projected(subscribers.flatMap(({ customer }) => [orders.get(customer.id)!.first, orders.get(customer.id)!.second]));
      return meanwhile.every((entry) => projected.has(entry)) ? true : undefined;
    }, 120_000);
    stack.proxy.resume();
    // After the restart, live again: a new order per customer, placed and confirmed.
    for (const [index, { customer }] of subscribers.entries()) orders.get(customer.id)!.third = await place(customer, index + 2);

    const expected = (customer: Customer) => {
      const own = orders.get(customer.id)!;
      return new Map([
        [own.first, ['SHIPPED', 'DELIVERED']],
        [own.second, ['SHIPPED', 'DELIVERED']],
        [own.third!, ['PENDING', 'CONFIRMED']],
      ]);
    };
    const complete = (customer: Customer, received: Received) => {
      const got = statusesByOrder(received);
      return [...expected(customer)].every(([id, statuses]) => statusChanges(got.get(id) ?? []).length >= statuses.length);
    };
    await waitFor('every change at every subscriber', () => (subscribers.every(({ customer, received }) => complete(customer, received)) ? true : undefined), 120_000);

    expect(gateway.subscriptionStats().upstreamReconnections).toBeGreaterThanOrEqual(1);
    for (const { customer, received } of subscribers) {
      expect(received.errors).toEqual([]);
      expect(received.completed).toBe(false);
      // Every status in order (events that keep it tell of the payment or parcel), each version of
      // an order at most once, and nobody else's order.
      expect(new Map([...statusesByOrder(received)].map(([id, statuses]) => [id, statusChanges(statuses)]))).toEqual(expected(customer));
      for (const [id, statuses] of statusesByOrder(received)) expect(await statusesHeardTwice(stack, id, statuses), id).toEqual([]);
      expect(new Set(received.data.map((d) => d.myOrderUpdates.customer.id))).toEqual(new Set([customer.id]));
      // Each event is its order as it was then: its timeline ends with the status it announces.
      for (const { myOrderUpdates: event } of received.data) expect(event.timeline.at(-1).status).toBe(event.status);
      // The last event of each order is what a fresh query reads.
      // (A capture can land after the delivery, as an event of its own: wait for it.)
      for (const id of expected(customer).keys()) {
        const lastIsQuery = async () => {
          const last = received.data.filter((d) => d.myOrderUpdates.id === id).at(-1)!.myOrderUpdates;
          return JSON.stringify(last) === JSON.stringify(await readOrder(customer, id)) ? true : undefined;
        };
        await waitFor(`the last event of ${id} equal to a query`, lastIsQuery);
      }
    }
    for (const { received } of subscribers) received.dispose();
  }, 300_000);

  it("replays to a resumed subscription only its caller's changes after the position, then a checkpoint, and refuses a malformed position", async () => {
    const mine = await stack.customer();
    const theirs = await stack.customer();
    const myOrder = await place(mine, 0);
    const theirOrder = await place(theirs, 1);
    // Projected, not only committed: a replay reads the projection.
    await waitFor('both orders CONFIRMED in the projection', async () => {
      const projected = await stack.projected([myOrder, theirOrder]);
      return projected.has(`${myOrder}:CONFIRMED`) && projected.has(`${theirOrder}:CONFIRMED`) ? true : undefined;
    }, 60_000);

    // Straight at the orders subgraph, as the gateway's socket is, resuming from the very start.
    const signer = new GatewayIdentitySigner(stack.keys.gatewayIdentity.privateKey);
    const socket = createClient({
      url: stack.ordersUrl.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { 'x-commerce-identity': await signer.sign({ customerId: null, roles: [] }, 'orders') },
    });
    stack.clients.push(socket);
    const identity = { 'x-commerce-identity': await signer.sign({ customerId: mine.id, roles: ['customer'] }, 'orders', 'subscription') };
    const positions: (string | undefined)[] = [];
    const resumed: { id: string; status: string; customer: { id: string } }[] = [];
    const dispose = socket.subscribe<{ myOrderUpdates: { id: string; status: string; customer: { id: string } } }>(
      { query: 'subscription { myOrderUpdates { id status customer { id } } }', extensions: { ...identity, [resumeAfterExtension]: '0' } },
      {
        next: (result) => {
          positions.push((result.extensions as Record<string, unknown> | undefined)?.[positionExtension] as string | undefined);
          if (result.data) resumed.push(result.data.myOrderUpdates);
        },
        error: () => {},
        complete: () => {},
      },
    );
    // The replay ends with a checkpoint: a position and no data.
    await waitFor('the replay and its checkpoint', () => (positions.length > resumed.length ? true : undefined));
    dispose();
    // The second PENDING: the payment authorized, a change of the order's view that keeps its status.
    expect(resumed.map((order) => `${order.id}:${order.status}`)).toEqual([`${myOrder}:PENDING`, `${myOrder}:PENDING`, `${myOrder}:CONFIRMED`]);
    expect(resumed.every((order) => order.customer.id === mine.id)).toBe(true);
    const numbers = positions.map((position) => BigInt(position!));
    expect([...numbers].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(numbers);

    const refused = recordSubscription(socket, 'subscription { myOrderUpdates { id } }', {}, { ...identity, [resumeAfterExtension]: '-1 OR 1=1' });
    await waitFor('the refusal', () => (refused.errors.length > 0 ? true : undefined));
    expect(refused.errors.map((error) => error.extensions?.code)).toEqual(['BAD_REQUEST']);
    expect(refused.data).toEqual([]);
  }, 120_000);

  it('ends a subscription with SUBGRAPH_UNAVAILABLE, then complete, only once orders stays away longer than the reconnection budget', async () => {
    const impatient = await stack.gateway({ upstream: { reconnectBudgetMs: 3_000, retryWaitMs: 100, maxRetryWaitMs: 500 } });
    const customer = await stack.customer();
    const order = await place(customer, 3);
    await untilStatus(customer, order, 'CONFIRMED');
    const short = recordSubscription(stack.connect(impatient, customer), updatesQuery);
    const patient = recordSubscription(stack.connect(gateway, customer), updatesQuery);
    await waitFor('both subscribed upstream', () => (impatient.subscriptionStats().upstreamSubscriptions === 1 && gateway.subscriptionStats().upstreamSubscriptions === 1 ? true : undefined));
    await advanceShipment(gateway.url, admin.token, order, 'DISPATCHED');
    await waitFor('SHIPPED at both', () => (short.data.length > 0 && patient.data.length > 0 ? true : undefined), 60_000);

    await stack.killOrders();
    try {
      await waitFor('the impatient gateway giving up', () => (short.completed ? true : undefined), 60_000);
    } finally {
      await stack.startOrders();
    }
    expect(short.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'SUBGRAPH_UNAVAILABLE' }) })]);
    expect(impatient.subscriptionStats()).toMatchObject({ clients: 0, upstreamSubscriptions: 0, upstreamConnections: 0 });

    // The default budget outlasts the restart: that subscriber carries on, and misses nothing.
    await advanceShipment(gateway.url, admin.token, order, 'IN_TRANSIT');
    await advanceShipment(gateway.url, admin.token, order, 'DELIVERED');
    await stack.ordersReady();
    await waitFor('DELIVERED after the restart', () => (patient.data.some((d) => d.myOrderUpdates.status === 'DELIVERED') ? true : undefined), 120_000);
    expect(patient.errors).toEqual([]);
    expect(statusChanges(patient.data.map((d) => d.myOrderUpdates.status))).toEqual(['SHIPPED', 'DELIVERED']);
    expect(await statusesHeardTwice(stack, order, patient.data.map((d) => d.myOrderUpdates.status))).toEqual([]);
    patient.dispose();
  }, 240_000);
});
