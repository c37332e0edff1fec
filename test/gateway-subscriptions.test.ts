import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import type { RunningOrdersSubgraph } from '../subgraphs/orders/subgraph.ts';
import { readFileSync } from 'node:fs';
import { startGateway, type GatewayOptions, type RunningGateway } from '../gateway/server.ts';
import { startStack, type Stack } from './support/stack.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';
import { advanceShipment, inStockProducts as inStock, placeOrder } from './support/orders.ts';
import { waitFor } from './support/wait.ts';
import { recordSubscription, watchOrder, type Received } from './support/subscriptions.ts';




describe('subscriptions through the gateway over graphql-ws', () => {
  let stack: Stack;
  let orders: RunningOrdersSubgraph;
  const clients: Client[] = [];
  const customerId = deterministicUuid('customer', demoUsers.customer.email);
  const adminId = deterministicUuid('customer', demoUsers.admin.email);
  let customerToken: string;
  let adminToken: string;

  beforeAll(async () => {
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

  const wsUrl = () => stack.gatewayUrl.replace(/^http/, 'ws');
  const subscribe = recordSubscription;

  function connect(token: string | undefined, on: { closed?: (event: { code: number; reason: string }) => void } = {}): Client {
    const client = createClient({
      url: wsUrl(),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
      connectionParams: token ? { Authorization: `Bearer ${token}` } : {},
      on: { closed: (event) => on.closed?.(event as { code: number; reason: string }) },
    });
    clients.push(client);
    return client;
  }

  
  const place = (token: string, paymentToken = 'tok_visa') => placeOrder(stack.gatewayUrl, token, { paymentToken, quantity: 2 });

  const advance = (orderId: string, to: 'DISPATCHED' | 'IN_TRANSIT' | 'DELIVERED') => advanceShipment(stack.gatewayUrl, adminToken, orderId, to);

  const statuses = (received: Received) => received.data.map((d) => d.orderStatusChanged.status);
  const reached = (received: Received, status: string) => () => (statuses(received).includes(status) ? true : undefined);

  it('streams an order placed through the gateway from PENDING to CONFIRMED to DELIVERED, each event resolved across four subgraphs', async () => {
    const id = await place(customerToken, 'tok_slow');
    const received = subscribe(connect(customerToken), watchOrder, { id });
    await waitFor('CONFIRMED', reached(received, 'CONFIRMED'));
    for (const step of ['DISPATCHED', 'IN_TRANSIT', 'DELIVERED'] as const) await advance(id, step);
    await waitFor('DELIVERED', reached(received, 'DELIVERED'));
    expect(received.errors).toEqual([]);
    expect(statuses(received)).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']);
    const delivered = received.data.at(-1)!.orderStatusChanged;
    expect(delivered).toMatchObject({
      id,
      status: 'DELIVERED',
      items: [{ quantity: 2, product: { name: inStock[0]!.name, stock: { available: expect.any(Number) } } }],
      payment: { status: 'CAPTURED' },
      shipment: { trackingNumber: expect.any(String), status: 'DELIVERED' },
    });
    received.dispose();
    await waitFor('the upstream subscription gone', () => (stack.gateway.subscriptionStats().upstreamSubscriptions === 0 ? true : undefined));
  });

  const feed = () => orders.projectionFeed;
  const noUpstreamLeft = async (gateway: RunningGateway = stack.gateway) => {
    await waitFor('no upstream subscription at the gateway', () => (gateway.subscriptionStats().upstreamSubscriptions === 0 && gateway.subscriptionStats().upstreamConnections === 0 ? true : undefined));
    await waitFor('no subscription left at the orders subgraph', () => (feed().subscriberCount === 0 ? true : undefined));
  };

  /** Another gateway process-alike over the same subgraphs, with its own subscription settings. */
  const extraGateways: RunningGateway[] = [];
  async function extraGateway(overrides: Partial<GatewayOptions> = {}): Promise<RunningGateway> {
    const gateway = await startGateway({
      supergraphSdl: readFileSync(new URL('../schema/supergraph.graphql', import.meta.url), 'utf8'),
      port: 0,
      host: '127.0.0.1',
      subgraphUrls: Object.fromEntries(Object.entries(stack.subgraphs).map(([name, subgraph]) => [name, subgraph.url])),
      customerTokenPublicKey: stack.keys.authToken.publicKey,
      identitySigner: stack.signer,
      production: false,
      ...overrides,
    });
    extraGateways.push(gateway);
    return gateway;
  }
  afterAll(async () => {
    for (const gateway of extraGateways) await gateway.stop();
  });

  it("refuses a customer watching someone else's order with FORBIDDEN, then completes, and leaves nothing subscribed", async () => {
    const id = await place(customerToken);
    const strangerToken = await stack.tokenFor({ customerId: randomUUID() });
    const received = subscribe(connect(strangerToken), watchOrder, { id });
    await waitFor('the refusal', () => (received.completed ? true : undefined));
    expect(received.errors.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    expect(received.data).toEqual([]);
    await noUpstreamLeft();
  });

  it('closes the connection with 4403 and the reason when connection_init carries a bad or expired token', async () => {
    const expired = await stack.tokenFor({ customerId }, -60);
    for (const token of ['not-a-token', expired]) {
      let closed: { code: number; reason: string } | undefined;
      const received = subscribe(connect(token, { closed: (event) => (closed = event) }), watchOrder, { id: randomUUID() });
      await waitFor('the close', () => closed);
      expect(closed!.code).toBe(4403);
      expect(closed!.reason).toMatch(token === expired ? /expired/ : /invalid/);
      expect(received.data).toEqual([]);
    }
  });

  it('closes the connection with 4403 when the token it was opened with expires, ending its subscriptions upstream', async () => {
    const id = await place(customerToken);
    let closed: { code: number; reason: string } | undefined;
    const received = subscribe(connect(await stack.tokenFor({ customerId }, 2), { closed: (event) => (closed = event) }), watchOrder, { id });
    await waitFor('a first event', () => (received.data.length > 0 ? true : undefined));
    await waitFor('the close', () => closed, 10_000);
    expect({ code: closed!.code, reason: closed!.reason }).toEqual({ code: 4403, reason: 'The token has expired: sign in again' });
    await noUpstreamLeft();
  });

  it('validates the operation against the supergraph before subscribing anything', async () => {
    const client = connect(customerToken);
    const unknownField = subscribe(client, `subscription { orderStatusChanged(orderId: "x") { nope } }`);
    const query = subscribe(client, `query { products(first: 1) { totalCount } }`);
    const badVariable = subscribe(client, watchOrder, { id: 42.5 });
    await waitFor('three refusals', () => (unknownField.errors.length && query.errors.length && badVariable.errors.length ? true : undefined));
    expect(unknownField.errors[0]!.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(query.errors[0]).toMatchObject({ extensions: { code: 'BAD_REQUEST' }, message: expect.stringMatching(/HTTP/) });
    expect(badVariable.errors[0]!.extensions?.code).toBe('BAD_USER_INPUT');
    expect(stack.gateway.subscriptionStats().upstreamSubscriptions).toBe(0);
  });

  it('shares one upstream subscription among identical subscriptions of one caller, and ends it when the last one leaves', async () => {
    const id = await place(customerToken, 'tok_slow');
    const first = subscribe(connect(customerToken), watchOrder, { id });
    const second = subscribe(connect(customerToken), watchOrder, { id });
    const fewerFields = subscribe(connect(customerToken), `subscription ($id: ID!) { orderStatusChanged(orderId: $id) { id status } }`, { id });
    const byAdmin = subscribe(connect(adminToken), watchOrder, { id });
    await waitFor('CONFIRMED everywhere', () => ([first, second, byAdmin].every((r) => statuses(r).includes('CONFIRMED')) && fewerFields.data.length >= 2 ? true : undefined));
    // Same caller, same operation and variables: one upstream; the other operation plans another primary fetch; the admin is another caller.
    const stats = stack.gateway.subscriptionStats();
    expect(stats.clients).toBe(4);
    expect(stats.upstreamSubscriptions).toBe(3);
    // All three on one socket to the orders subgraph, each subscribe carrying its caller's signed identity.
    expect(stats.upstreamConnections).toBe(1);
    expect(feed().subscriberCount).toBe(3);
    expect(statuses(first)).toEqual(['PENDING', 'CONFIRMED']);
    expect(statuses(second)).toEqual(['PENDING', 'CONFIRMED']);
    expect(second.data).toEqual(first.data);

    // A late joiner of a shared upstream first gets the latest state, as a lone subscriber would.
    const late = subscribe(connect(customerToken), watchOrder, { id });
    await waitFor('the late joiner’s first event', () => (late.data.length > 0 ? true : undefined));
    expect(statuses(late)).toEqual(['CONFIRMED']);
    expect(stack.gateway.subscriptionStats().upstreamSubscriptions).toBe(3);

    first.dispose();
    late.dispose();
    await advance(id, 'DISPATCHED');
    await waitFor('SHIPPED for the one left', () => (statuses(second).includes('SHIPPED') ? true : undefined));
    expect(statuses(first)).toEqual(['PENDING', 'CONFIRMED']);
    expect(stack.gateway.subscriptionStats().upstreamSubscriptions).toBe(3);
    second.dispose();
    fewerFields.dispose();
    byAdmin.dispose();
    await noUpstreamLeft();
  });

  it('leaves no upstream subscription behind when a client disconnects mid-stream', async () => {
    const id = await place(customerToken, 'tok_slow');
    const client = connect(customerToken);
    const received = subscribe(client, watchOrder, { id });
    await waitFor('PENDING', reached(received, 'PENDING'));
    expect(feed().subscriberCount).toBe(1);
    await client.dispose(); // the socket closes without completing the subscription
    await noUpstreamLeft();
    expect(stack.gateway.subscriptionStats().webSocketConnections).toBe(0);
  });

  it('limits subscriptions per connection and connections per caller', async () => {
    const gateway = await extraGateway({ subscriptions: { maxSubscriptionsPerConnection: 2, maxConnectionsPerCaller: 2 } });
    const url = gateway.url.replace(/^http/, 'ws');
    const open = (on: { closed?: (event: { code: number; reason: string }) => void } = {}) => {
      const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${customerToken}` }, on: { closed: (event) => on.closed?.(event as { code: number; reason: string }) } });
      clients.push(client);
      return client;
    };
    const id = await place(customerToken);
    const one = open();
    const subscriptions = [0, 1, 2].map(() => subscribe(one, watchOrder, { id }));
    await waitFor('the third refused', () => (subscriptions[2]!.errors.length > 0 ? true : undefined));
    expect(subscriptions[2]!.errors[0]!.extensions?.code).toBe('TOO_MANY_SUBSCRIPTIONS');
    await waitFor('the first two served', () => (subscriptions[0]!.data.length && subscriptions[1]!.data.length ? true : undefined));

    const two = open();
    const second = subscribe(two, watchOrder, { id });
    // Connected first, so the third is the one over the limit (two at once would race for the slot).
    await waitFor('the second connection served', () => (second.data.length > 0 ? true : undefined));
    let closed: { code: number; reason: string } | undefined;
    const three = open({ closed: (event) => (closed = event) });
    const refused = subscribe(three, watchOrder, { id });
    await waitFor('the third connection closed', () => closed);
    expect(closed).toMatchObject({ code: 4429, reason: expect.stringMatching(/Too many connections/) });
    expect(refused.data).toEqual([]);
    await Promise.all([one.dispose(), two.dispose(), three.dispose()]);
    await noUpstreamLeft(gateway);

    // Clients that vanish right after connection_init (while their token is being checked) give their slot back.
    for (let i = 0; i < 5; i++) {
      const socket = new WebSocket(url, 'graphql-transport-ws');
      await new Promise((resolve) => socket.on('open', resolve));
      socket.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${customerToken}` } }));
      socket.terminate();
    }
    await waitFor('the vanished sockets gone', () => (gateway.subscriptionStats().webSocketConnections === 0 ? true : undefined));
    const four = open();
    const again = subscribe(four, watchOrder, { id });
    await waitFor('served again', () => (again.data.length > 0 || again.errors.length > 0 ? true : undefined));
    expect(again.errors).toEqual([]);
    await four.dispose();
    await noUpstreamLeft(gateway);
  });

  it('closes a socket that does not send connection_init in time (4408), pings idle sockets, and answers protocol pings', async () => {
    const gateway = await extraGateway({ subscriptions: { connectionInitWaitTimeoutMs: 300, keepAliveMs: 200 } });
    const url = gateway.url.replace(/^http/, 'ws');
    const silent = new WebSocket(url, 'graphql-transport-ws');
    const closedWith = await new Promise<number>((resolve) => silent.on('close', (code) => resolve(code)));
    expect(closedWith).toBe(4408);

    const socket = new WebSocket(url, 'graphql-transport-ws');
    const messages: { type: string }[] = [];
    let pings = 0;
    socket.on('ping', () => pings++);
    socket.on('message', (data) => messages.push(JSON.parse(String(data)) as { type: string }));
    await new Promise((resolve) => socket.on('open', resolve));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${customerToken}` } }));
    await waitFor('the ack', () => (messages.some((m) => m.type === 'connection_ack') ? true : undefined));
    socket.send(JSON.stringify({ type: 'ping' }));
    await waitFor('the pong', () => (messages.some((m) => m.type === 'pong') ? true : undefined));
    await waitFor('WebSocket pings from the gateway', () => (pings >= 2 ? true : undefined));
    expect(socket.readyState).toBe(WebSocket.OPEN); // ws answers pings with pongs: kept alive
    socket.close();
  });

  describe('when the orders subgraph connection drops', () => {
    let proxy: TcpProxy;
    beforeAll(async () => {
      const target = new URL(orders.url);
      proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
    });
    afterAll(async () => proxy?.close());

    const viaProxy = (upstream: NonNullable<GatewayOptions['subscriptions']>['upstream']) =>
      extraGateway({
        subgraphUrls: { ...Object.fromEntries(Object.entries(stack.subgraphs).map(([name, subgraph]) => [name, subgraph.url])), orders: `http://${proxy.address}/graphql` },
        subscriptions: { upstream: { retryWaitMs: 100, maxRetryWaitMs: 300, ...upstream } },
      });

    it('re-subscribes transparently once the subgraph is reachable again: the client keeps its subscription and gets the status the order reached meanwhile', async () => {
      const gateway = await viaProxy({ retryAttempts: 20 });
      const id = await place(customerToken);
      const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${customerToken}` } });
      clients.push(client);
      const received = subscribe(client, watchOrder, { id });
      await waitFor('CONFIRMED', reached(received, 'CONFIRMED'));

      proxy.pause(); // cuts the gateway's socket to the orders subgraph and refuses new ones
      await advance(id, 'DISPATCHED'); // happens while the gateway cannot hear it
      await new Promise((resolve) => setTimeout(resolve, 500));
      proxy.resume();
      await waitFor('SHIPPED after the reconnection', reached(received, 'SHIPPED'));
      await advance(id, 'IN_TRANSIT');
      await advance(id, 'DELIVERED');
      await waitFor('DELIVERED', reached(received, 'DELIVERED'));
      expect(received.errors).toEqual([]);
      expect(received.completed).toBe(false);
      // Each status once (the re-subscription's replay of the current state is not sent twice), none missed.
      expect(statuses(received).filter((status) => status !== 'PENDING')).toEqual(['CONFIRMED', 'SHIPPED', 'DELIVERED']);
      received.dispose();
      await noUpstreamLeft(gateway);
    });

    it('ends the subscription with SUBGRAPH_UNAVAILABLE, then complete, when the subgraph does not come back in time', async () => {
      const gateway = await viaProxy({ retryAttempts: 2 });
      const id = await place(customerToken);
      const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${customerToken}` } });
      clients.push(client);
      const received = subscribe(client, watchOrder, { id });
      await waitFor('a first event', () => (received.data.length > 0 ? true : undefined));
      proxy.pause();
      try {
        await waitFor('the end', () => (received.completed ? true : undefined));
      } finally {
        proxy.resume();
      }
      expect(received.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'SUBGRAPH_UNAVAILABLE' }), message: expect.stringMatching(/orders subgraph is unreachable/) })]);
      expect(gateway.subscriptionStats()).toMatchObject({ clients: 0, upstreamSubscriptions: 0, upstreamConnections: 0 });
      await waitFor('the subgraph side cleaned up', () => (feed().subscriberCount === 0 ? true : undefined));
    });
  });
});
