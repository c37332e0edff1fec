import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import { deterministicUuid } from '../platform/ids.ts';
import type { Identity } from '../platform/identity/identity.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import type { RunningOrdersSubgraph } from '../subgraphs/orders/subgraph.ts';
import { startStack, type Stack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';
import { inStockProducts as inStock, placeOrder } from './support/orders.ts';
import { recordSubscription } from './support/subscriptions.ts';



describe('order subscriptions on the orders subgraph (graphql-ws, fed by LISTEN order_projections)', () => {
  let stack: Stack;
  let orders: RunningOrdersSubgraph;
  const clients: Client[] = [];
  const customerId = deterministicUuid('customer', demoUsers.customer.email);
  const adminId = deterministicUuid('customer', demoUsers.admin.email);
  const customer: Identity = { customerId, roles: ['customer'] };
  const admin: Identity = { customerId: adminId, roles: ['customer', 'admin'] };
  let customerToken: string;
  let adminToken: string;

  beforeAll(async () => {
    // tok_slow keeps an order PENDING for a while before the saga confirms it.
    stack = await startStack({ eventBus: 'postgres', slowPaymentDelayMs: 2_500 });
    await seedDemoData(stack.databaseUrls);
    orders = stack.subgraphs.orders as RunningOrdersSubgraph;
    customerToken = await stack.tokenFor({ customerId });
    adminToken = await stack.tokenFor({ customerId: adminId, roles: ['customer', 'admin'] });
  }, 120_000);
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.dispose()));
    await stack?.stop();
  });

  const wsUrl = () => orders.url.replace(/^http/, 'ws');
  /** Subscribes with the given extensions, else with the identity the client was connected with. */
  const subscribe = (client: Client, query: string, variables: Record<string, unknown> = {}, extensions?: Record<string, unknown>) =>
    recordSubscription(client, query, variables, extensions ?? subscriptionIdentities.get(client));

  /** Each test client's subscriptions carry its identity, signed for orders, as the gateway's do. */
  const subscriptionIdentities = new WeakMap<Client, Record<string, string>>();

  async function connect(identity: Identity | null, closed?: (event: { code: number; reason: string }) => void): Promise<Client> {
    const token = identity ? await stack.signer.sign(identity, 'orders') : undefined;
    const client = createClient({
      url: wsUrl(),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
      connectionParams: token ? { 'x-commerce-identity': token } : {},
      on: { closed: (event) => closed?.(event as { code: number; reason: string }) },
    });
    clients.push(client);
    if (identity) subscriptionIdentities.set(client, { 'x-commerce-identity': await stack.signer.sign(identity, 'orders', 'subscription') });
    return client;
  }

  
  const place = (token: string, paymentToken = 'tok_visa') => placeOrder(stack.gatewayUrl, token, { paymentToken });

  async function listenConnections(): Promise<number> {
    const client = new pg.Client({ connectionString: stack.databaseUrls.orders });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN order_projections' AND state = 'idle'`,
      );
      return rows[0]!.n;
    } finally {
      await client.end();
    }
  }

  it('sends PENDING, the payment authorized (still PENDING), then CONFIRMED to a client subscribed with a signed identity, for an order placed through the gateway', async () => {
    const id = await place(customerToken, 'tok_slow');
    const client = await connect(customer);
    const received = subscribe(client, `subscription ($id: ID!) { orderStatusChanged(orderId: $id) { id status total customer { id } } }`, { id });
    await waitFor('CONFIRMED', () => (received.data.some((d) => d.orderStatusChanged.status === 'CONFIRMED') ? true : undefined));
    expect(received.errors).toEqual([]);
    expect(received.data.map((d) => d.orderStatusChanged.status)).toEqual(['PENDING', 'PENDING', 'CONFIRMED']);
    expect(received.data[2]!.orderStatusChanged).toMatchObject({ id, total: inStock[0]!.price, customer: { id: customerId } });
    received.dispose();
  });

  it("refuses another customer's subscription to an order with FORBIDDEN, and lets an admin subscribe", async () => {
    const id = await place(customerToken);
    const stranger = subscribe(await connect({ customerId: randomUUID(), roles: ['customer'] }), `subscription { orderStatusChanged(orderId: "${id}") { id status } }`);
    await waitFor('the refusal', () => (stranger.errors.length > 0 ? true : undefined));
    expect(stranger.errors.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    expect(stranger.data).toEqual([]);

    const byAdmin = subscribe(await connect(admin), `subscription { orderStatusChanged(orderId: "${id}") { id } }`);
    await waitFor('the admin’s first event', () => (byAdmin.data.length > 0 ? true : undefined));
    expect(byAdmin.errors).toEqual([]);
    expect(byAdmin.data[0]!.orderStatusChanged.id).toBe(id);
    byAdmin.dispose();
  });

  it('refuses a connection without the gateway signature (4403), or with a forged one', async () => {
    for (const connectionParams of [{}, { 'x-commerce-identity': 'not-a-jws' }]) {
      let closedWith: number | undefined;
      const client = createClient({ url: wsUrl(), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams, on: { closed: (event) => void (closedWith = (event as { code: number }).code) } });
      clients.push(client);
      const received = subscribe(client, `subscription { myOrderUpdates { id } }`);
      await waitFor('the close', () => closedWith);
      expect(closedWith).toBe(4403);
      expect(received.data).toEqual([]);
    }
  });

  it("sends myOrderUpdates only the caller's own orders", async () => {
    const mine = subscribe(await connect(customer), `subscription { myOrderUpdates { id status customer { id } } }`);
    const theirs = subscribe(await connect(admin), `subscription { myOrderUpdates { id status customer { id } } }`);
    await waitFor('both subscribed', () => (orders.projectionFeed.subscriberCount >= 2 ? true : undefined));
    const myOrder = await place(customerToken);
    const adminOrder = await place(adminToken);
    await waitFor('my order CONFIRMED', () => (mine.data.some((d) => d.myOrderUpdates.id === myOrder && d.myOrderUpdates.status === 'CONFIRMED') ? true : undefined));
    await waitFor('their order CONFIRMED', () =>
      theirs.data.some((d) => d.myOrderUpdates.id === adminOrder && d.myOrderUpdates.status === 'CONFIRMED') ? true : undefined,
    );
    expect(mine.errors).toEqual([]);
    expect(new Set(mine.data.map((d) => d.myOrderUpdates.customer.id))).toEqual(new Set([customerId]));
    expect(mine.data.map((d) => d.myOrderUpdates.id)).not.toContain(adminOrder);
    expect(new Set(theirs.data.map((d) => d.myOrderUpdates.customer.id))).toEqual(new Set([adminId]));
    expect(theirs.data.map((d) => d.myOrderUpdates.id)).not.toContain(myOrder);
    mine.dispose();
    theirs.dispose();
  });

  it('runs each subscription on a shared gateway socket as the identity signed into its extensions, and refuses a forged one with UNAUTHENTICATED', async () => {
    const id = await place(customerToken, 'tok_slow');
    // One socket, as the gateway opens it: signed, but as nobody in particular.
    const socket = await connect({ customerId: null, roles: [] });
    const as = async (identity: Identity) => ({ 'x-commerce-identity': await stack.signer.sign(identity, 'orders', 'subscription') });
    const query = `subscription ($id: ID!) { orderStatusChanged(orderId: $id) { id status customer { id } } }`;
    const owner = subscribe(socket, query, { id }, await as(customer));
    const stranger = subscribe(socket, query, { id }, await as({ customerId: randomUUID(), roles: ['customer'] }));
    const forged = subscribe(socket, query, { id }, { 'x-commerce-identity': 'not-a-jws' });
    const nobody = recordSubscription(socket, query, { id });
    onTestFinished(() => owner.dispose());
    await waitFor('CONFIRMED for the owner, and three refusals', () =>
      owner.data.some((d) => d.orderStatusChanged.status === 'CONFIRMED') && stranger.completed && forged.errors.length > 0 && nobody.errors.length > 0 ? true : undefined,
    );
    expect(owner.errors).toEqual([]);
    expect(owner.data.map((d) => d.orderStatusChanged.status)).toEqual(['PENDING', 'PENDING', 'CONFIRMED']);
    expect(owner.data[0]!.orderStatusChanged.customer.id).toBe(customerId);
    expect(stranger.errors.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    expect(forged.errors.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    // Without an identity of its own, an operation is refused: there is no fallback to the socket's.
    expect(nobody.errors.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    expect([...stranger.data, ...forged.data, ...nobody.data]).toEqual([]);
  });

  it('sends every change once and in order, even two committed in one transaction and so heard as one notification', async () => {
    const client = await connect(customer);
    const everything = subscribe(client, `subscription { myOrderUpdates { id status timeline { status } } }`);
    onTestFinished(() => everything.dispose());
    await waitFor('subscribed', () => (orders.projectionFeed.subscriberCount >= 1 ? true : undefined));
    const id = await place(customerToken, 'tok_slow');
    const one = subscribe(client, `subscription ($id: ID!) { orderStatusChanged(orderId: $id) { status timeline { status } } }`, { id });
    onTestFinished(() => one.dispose());
    await waitFor('CONFIRMED', () => (one.data.some((d) => d.orderStatusChanged.status === 'CONFIRMED') ? true : undefined));

    // Shipped and delivered in ONE transaction: the projector applies both in one batch and
    // notifies once; reading the order's current state then would skip SHIPPED.
    const at = () => new Date().toISOString();
    const causation = { correlationId: randomUUID(), causationId: randomUUID() };
    await orders.store.execute(id, { type: 'MarkShipped', at: at() }, causation, async (tx) => {
      await orders.store.executeInTransaction(tx, id, { type: 'MarkDelivered', at: at() }, causation);
    });
    await waitFor('DELIVERED twice', () =>
      one.data.some((d) => d.orderStatusChanged.status === 'DELIVERED') && everything.data.some((d) => d.myOrderUpdates.id === id && d.myOrderUpdates.status === 'DELIVERED') ? true : undefined,
    );

    expect(one.errors).toEqual([]);
    // The second PENDING is the payment's authorization: a change of the order's view, not of its status.
    expect(one.data.map((d) => d.orderStatusChanged.status)).toEqual(['PENDING', 'PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']);
    // Each event is the order as it was then, its timeline (one entry per status) included.
    expect(one.data.map((d) => d.orderStatusChanged.timeline.map((t: { status: string }) => t.status).join(','))).toEqual([
      'PENDING',
      'PENDING',
      'PENDING,CONFIRMED',
      'PENDING,CONFIRMED,SHIPPED',
      'PENDING,CONFIRMED,SHIPPED,DELIVERED',
    ]);
    expect(everything.errors).toEqual([]);
    // PENDING too, unless the order was placed before the subscription's snapshot was taken.
    expect(['PENDING,PENDING,CONFIRMED,SHIPPED,DELIVERED', 'PENDING,CONFIRMED,SHIPPED,DELIVERED', 'CONFIRMED,SHIPPED,DELIVERED']).toContain(
      everything.data.filter((d) => d.myOrderUpdates.id === id).map((d) => d.myOrderUpdates.status).join(','),
    );
  });

  it('sends myOrderUpdates only what changes after the subscription started', async () => {
    const before = await place(customerToken);
    const client = await connect(customer);
    await waitFor('CONFIRMED before subscribing', async () => {
      const response = await fetch(stack.gatewayUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${customerToken}` },
        body: JSON.stringify({ query: `{ order(id: "${before}") { status } }` }),
      });
      return ((await response.json()) as { data?: { order?: { status: string } } }).data?.order?.status === 'CONFIRMED' ? true : undefined;
    });
    const updates = subscribe(client, `subscription { myOrderUpdates { id status } }`);
    onTestFinished(() => updates.dispose());
    await waitFor('subscribed', () => (orders.projectionFeed.subscriberCount >= 1 ? true : undefined));
    // A late notification of the earlier order (a lagging projector, a rebuild) sends nothing:
    // all of its changes committed before the subscription started.
    const notifier = new pg.Client({ connectionString: stack.databaseUrls.orders });
    await notifier.connect();
    await notifier.query(`SELECT pg_notify('order_projections', $1)`, [JSON.stringify([before])]);
    await notifier.end();
    const after = await place(customerToken);
    await waitFor('the new order CONFIRMED', () => (updates.data.some((d) => d.myOrderUpdates.id === after && d.myOrderUpdates.status === 'CONFIRMED') ? true : undefined));
    expect(updates.data.map((d) => d.myOrderUpdates.id)).not.toContain(before);
    expect(['PENDING,PENDING,CONFIRMED', 'PENDING,CONFIRMED', 'CONFIRMED']).toContain(updates.data.map((d) => d.myOrderUpdates.status).join(','));
  });

  it('releases the LISTEN fan-out when the last subscriber unsubscribes', async () => {
    const feed = orders.projectionFeed;
    await waitFor('earlier subscriptions gone', () => (feed.subscriberCount === 0 ? true : undefined));
    expect(feed.listening).toBe(false);
    expect(await listenConnections()).toBe(0);

    const client = await connect(customer);
    const first = subscribe(client, `subscription { myOrderUpdates { id } }`);
    const second = subscribe(client, `subscription { myOrderUpdates { id } }`);
    await waitFor('two subscribers', () => (feed.subscriberCount === 2 && feed.listening ? true : undefined));
    expect(await listenConnections()).toBe(1); // one LISTEN connection for the whole process

    first.dispose();
    await waitFor('one subscriber', () => (feed.subscriberCount === 1 ? true : undefined));
    expect(feed.listening).toBe(true);

    second.dispose();
    await waitFor('no subscriber', () => (feed.subscriberCount === 0 && !feed.listening ? true : undefined));
    await waitFor('the LISTEN connection closed', async () => ((await listenConnections()) === 0 ? true : undefined));
  });
});
