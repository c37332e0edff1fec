import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import type { RunningOrdersSubgraph } from '../subgraphs/orders/subgraph.ts';
import { startGateway, type GatewayOptions, type RunningGateway } from '../gateway/server.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';
import { advanceShipment, deliverOnceCaptured, inStockProducts as inStock, paymentCaptured, placeOrder } from './support/orders.ts';
import { waitFor } from './support/wait.ts';
import { recordSubscription, statusChanges, statusesHeardTwice, watchOrder, type Received } from './support/subscriptions.ts';

/** The caller's order changes, with fields from catalog, inventory, payments and shipping. */
const myUpdates = `subscription MyUpdates {
  myOrderUpdates {
    id
    status
    items { quantity product { name stock { available } } }
    payment { status }
    shipment { trackingNumber status }
  }
}`;

/** A streamed HTTP subscription (multipart or SSE) read as raw text, as it arrives. */
interface Stream {
  status: number;
  /** What arrived so far. */
  text: () => string;
  /** The JSON body of a refusal. */
  json: () => Promise<{ errors?: { message: string; extensions?: { code?: string } }[] }>;
  abort: () => void;
}

async function openStream(url: string, token: string, accept: string, query: string, variables: Record<string, unknown>): Promise<Stream> {
  const controller = new AbortController();
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept, authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
    signal: controller.signal,
  });
  let text = '';
  if (response.status === 200 && response.body) {
    const decoder = new TextDecoder();
    void (async () => {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) text += decoder.decode(chunk, { stream: true });
    })().catch(() => {});
  }
  return { status: response.status, text: () => text, json: () => response.json() as never, abort: () => controller.abort() };
}

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
    await deliverOnceCaptured(stack.gatewayUrl, adminToken, id);
    await waitFor('DELIVERED', reached(received, 'DELIVERED'));
    expect(received.errors).toEqual([]);
    // Events that keep the status tell of the payment or the parcel (authorized, captured, in transit).
    expect(statusChanges(statuses(received))).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']);
    await waitFor('the capture, whenever it lands', () => (received.data.at(-1)!.orderStatusChanged.payment.status === 'CAPTURED' ? true : undefined));
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
    const gateway = await startGateway(gatewayOptionsFor(stack, overrides));
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
    expect(statuses(first)).toEqual(['PENDING', 'PENDING', 'CONFIRMED']);
    expect(statuses(second)).toEqual(['PENDING', 'PENDING', 'CONFIRMED']);
    expect(second.data).toEqual(first.data);

    // A late joiner of a shared upstream first gets the latest state, as a lone subscriber would:
    // its own (catch-up) subscription starts with that state, and then merges into the shared one.
    const late = subscribe(connect(customerToken), watchOrder, { id });
    await waitFor('the late joiner’s first event', () => (late.data.length > 0 ? true : undefined));
    expect(statuses(late)).toEqual(['CONFIRMED']);
    expect(stack.gateway.subscriptionStats().upstreamSubscriptions).toBe(3);
    await waitFor('the catch-up subscription gone at the orders subgraph', () => (feed().subscriberCount === 3 ? true : undefined));

    first.dispose();
    late.dispose();
    await advance(id, 'DISPATCHED');
    await waitFor('SHIPPED for the one left', () => (statuses(second).includes('SHIPPED') ? true : undefined));
    expect(statuses(first)).toEqual(['PENDING', 'PENDING', 'CONFIRMED']);
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

  /** The caller's subscriptions are running at the orders subgraph (a myOrderUpdates one took its snapshot). */
  async function startedAtOrders(clients: number): Promise<void> {
    await waitFor(`${clients} client subscription(s) at the gateway`, () => (stack.gateway.subscriptionStats().clients === clients ? true : undefined));
    await waitFor('every upstream subscription running at the orders subgraph', () => {
      const upstream = stack.gateway.subscriptionStats().upstreamSubscriptions;
      return upstream > 0 && feed().subscriberCount === upstream && feed().listening ? true : undefined;
    });
    await new Promise((resolve) => setTimeout(resolve, 300)); // LISTEN is on: the snapshot follows at once
  }
  const myStatuses = (received: Received, id: string) => received.data.filter((d) => d.myOrderUpdates.id === id).map((d) => d.myOrderUpdates.status as string);

  it("streams myOrderUpdates through the gateway: each change to the caller's orders, resolved across subgraphs, and nobody else's", async () => {
    const shopperToken = await stack.tokenFor({ customerId: randomUUID() });
    const received = subscribe(connect(shopperToken), myUpdates);
    const others = subscribe(connect(customerToken), myUpdates);
    await startedAtOrders(2);
    const id = await placeOrder(stack.gatewayUrl, shopperToken, { paymentToken: 'tok_visa', quantity: 1 });
    const theirs = await placeOrder(stack.gatewayUrl, customerToken, { paymentToken: 'tok_visa', quantity: 1 });
    await waitFor('CONFIRMED', () => (myStatuses(received, id).includes('CONFIRMED') ? true : undefined));
    await deliverOnceCaptured(stack.gatewayUrl, adminToken, id);
    await waitFor('DELIVERED', () => (myStatuses(received, id).includes('DELIVERED') ? true : undefined));
    await waitFor('the other customer’s order CONFIRMED, for them', () => (myStatuses(others, theirs).includes('CONFIRMED') ? true : undefined));

    expect(received.errors).toEqual([]);
    expect(statusChanges(myStatuses(received, id))).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']);
    await waitFor('the capture, whenever it lands', () => (received.data.at(-1)!.myOrderUpdates.payment.status === 'CAPTURED' ? true : undefined));
    expect(new Set(received.data.map((d) => d.myOrderUpdates.id))).toEqual(new Set([id])); // not the other customer's order
    expect(others.data.map((d) => d.myOrderUpdates.id)).not.toContain(id);
    expect(received.data.at(-1)!.myOrderUpdates).toEqual({
      id,
      status: 'DELIVERED',
      items: [{ quantity: 1, product: { name: inStock[0]!.name, stock: { available: expect.any(Number) } } }],
      payment: { status: 'CAPTURED' },
      shipment: { trackingNumber: expect.stringMatching(/\S/), status: 'DELIVERED' },
    });
    received.dispose();
    others.dispose();
    await noUpstreamLeft();
  });

  it('gives a client that joins a shared myOrderUpdates later none of the changes committed before it joined, then shares the upstream again', async () => {
    const shopperToken = await stack.tokenFor({ customerId: randomUUID() });
    const first = subscribe(connect(shopperToken), myUpdates);
    await startedAtOrders(1);
    const id = await placeOrder(stack.gatewayUrl, shopperToken, { paymentToken: 'tok_visa', quantity: 1 });
    await waitFor('CONFIRMED for the first', () => (myStatuses(first, id).includes('CONFIRMED') ? true : undefined));

    // Same caller, same operation: the upstream the first client has is the one it would share.
    const late = subscribe(connect(shopperToken), myUpdates);
    await startedAtOrders(2);
    await advance(id, 'DISPATCHED');
    await waitFor('SHIPPED for both', () => (myStatuses(first, id).includes('SHIPPED') && myStatuses(late, id).includes('SHIPPED') ? true : undefined));
    await advance(id, 'IN_TRANSIT');
    await paymentCaptured(stack.gatewayUrl, adminToken, id);
    await advance(id, 'DELIVERED');
    await waitFor('DELIVERED for both', () => (myStatuses(first, id).includes('DELIVERED') && myStatuses(late, id).includes('DELIVERED') ? true : undefined));

    expect([...first.errors, ...late.errors]).toEqual([]);
    // PENDING and CONFIRMED committed before the late client joined: not for it, not even the latest.
    // The capture may land after the delivery (its own event then): wait until both heard the last change.
    await waitFor('the same last event for both', () => (JSON.stringify(late.data.at(-1)) === JSON.stringify(first.data.at(-1)) ? true : undefined));
    expect(statusChanges(myStatuses(late, id))).toEqual(['SHIPPED', 'DELIVERED']);
    expect(statusChanges(myStatuses(first, id))).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']);
    expect(late.data.at(-1)).toEqual(first.data.at(-1)); // the same event, resolved across the same subgraphs
    expect(late.data.at(-1)!.myOrderUpdates).toMatchObject({ payment: { status: 'CAPTURED' }, shipment: { status: 'DELIVERED' } });
    // Caught up: both on one subscription at the orders subgraph again.
    expect(stack.gateway.subscriptionStats()).toMatchObject({ clients: 2, upstreamSubscriptions: 1 });
    await waitFor('one subscription at the orders subgraph', () => (feed().subscriberCount === 1 ? true : undefined));
    first.dispose();
    late.dispose();
    await noUpstreamLeft();
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

  it("counts a caller's multipart and SSE streams with its WebSockets against one limit: over it, HTTP gets 429 TOO_MANY_CONNECTIONS and a socket 4429", async () => {
    const gateway = await extraGateway({ subscriptions: { maxConnectionsPerCaller: 2 } });
    const id = await placeOrder(stack.gatewayUrl, customerToken, { paymentToken: 'tok_visa', quantity: 1 });
    const multipart = 'multipart/mixed;subscriptionSpec="1.0"';
    const sse = 'text/event-stream';
    const streams: Stream[] = [];
    const stream = async (accept: string) => {
      const opened = await openStream(gateway.url, customerToken, accept, watchOrder, { id });
      streams.push(opened);
      return opened;
    };
    const served = (opened: Stream) => () => (opened.text().includes('"status"') ? true : undefined);
    try {
      // Two HTTP streams: the caller's two slots.
      const one = await stream(sse);
      const two = await stream(multipart);
      expect([one.status, two.status]).toEqual([200, 200]);
      await waitFor('both streams served', () => (served(one)() && served(two)() ? true : undefined));
      for (const accept of [sse, multipart]) {
        const refused = await stream(accept);
        expect(refused.status).toBe(429);
        expect((await refused.json()).errors).toEqual([{ message: expect.stringMatching(/Too many connections: at most 2 per caller/), extensions: { code: 'TOO_MANY_CONNECTIONS', retryAfter: 5 } }]);
      }
      // A WebSocket of the same caller is over the limit too.
      let closed: { code: number; reason: string } | undefined;
      const socket = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${customerToken}` }, on: { closed: (event) => (closed = event as { code: number; reason: string }) } });
      clients.push(socket);
      const refusedSocket = subscribe(socket, watchOrder, { id });
      await waitFor('the socket closed', () => closed);
      expect(closed!.code).toBe(4429);
      expect(refusedSocket.data).toEqual([]);
      // Another caller has its own slots.
      const byAdmin = await openStream(gateway.url, adminToken, sse, watchOrder, { id });
      streams.push(byAdmin);
      expect(byAdmin.status).toBe(200);
      await waitFor('the admin served', served(byAdmin));
      byAdmin.abort();

      // A stream that ends gives its slot back: one WebSocket and one stream together is the limit.
      one.abort();
      await waitFor('the aborted streams gone', () => (gateway.subscriptionStats().httpStreams === 1 ? true : undefined));
      const ws = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${customerToken}` } });
      clients.push(ws);
      const overWs = subscribe(ws, watchOrder, { id });
      await waitFor('served over the WebSocket', () => (overWs.data.length > 0 || overWs.errors.length > 0 ? true : undefined));
      expect(overWs.errors).toEqual([]);
      const third = await stream(multipart);
      expect(third.status).toBe(429);
      overWs.dispose();
      await ws.dispose();
      await waitFor('the WebSocket gone', () => (gateway.subscriptionStats().webSocketConnections === 0 ? true : undefined));
      const again = await stream(multipart);
      expect(again.status).toBe(200);
      await waitFor('served again over HTTP', served(again));
    } finally {
      for (const opened of streams) opened.abort();
    }
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
      const gateway = await viaProxy({ reconnectBudgetMs: 60_000 });
      const id = await place(customerToken);
      const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${customerToken}` } });
      clients.push(client);
      const received = subscribe(client, watchOrder, { id });
      await waitFor('CONFIRMED', reached(received, 'CONFIRMED'));
      expect(feed().subscriberCount).toBe(1);
      expect(gateway.subscriptionStats()).toMatchObject({ upstreamConnections: 1, upstreamReconnections: 0 });

      proxy.pause(); // cuts the gateway's socket to the orders subgraph and refuses new ones
      // The socket really dropped: the subgraph ended the subscription it carried.
      await waitFor('the subscription gone at the orders subgraph', () => (feed().subscriberCount === 0 ? true : undefined));
      await advance(id, 'DISPATCHED'); // happens while the gateway cannot hear it
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(gateway.subscriptionStats().upstreamReconnections).toBe(0); // every attempt refused so far
      proxy.resume();
      await waitFor('SHIPPED after the reconnection', reached(received, 'SHIPPED'));
      // ...and came back: a new socket, the subscription sent again on it.
      expect(gateway.subscriptionStats()).toMatchObject({ upstreamConnections: 1, upstreamReconnections: 1 });
      expect(feed().subscriberCount).toBe(1);
      await advance(id, 'IN_TRANSIT');
      await advance(id, 'DELIVERED');
      await waitFor('DELIVERED', reached(received, 'DELIVERED'));
      expect(received.errors).toEqual([]);
      expect(received.completed).toBe(false);
      // Every status, none missed; events that keep the status (the capture, the transit) collapsed.
      expect(statusChanges(statuses(received).filter((status) => status !== 'PENDING'))).toEqual(['CONFIRMED', 'SHIPPED', 'DELIVERED']);
      // The re-subscription's replay of the current state is not sent twice: each version one event at most.
      expect(await statusesHeardTwice(orders.store, id, statuses(received))).toEqual([]);
      received.dispose();
      await noUpstreamLeft(gateway);
    });

    it('ends the subscription with SUBGRAPH_UNAVAILABLE, then complete, when the subgraph does not come back in time', async () => {
      const gateway = await viaProxy({ reconnectBudgetMs: 1_000 });
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
      expect(received.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'SUBGRAPH_UNAVAILABLE' }), message: expect.stringMatching(/A service this subscription depends on is unreachable/) })]);
      expect(gateway.subscriptionStats()).toMatchObject({ clients: 0, upstreamSubscriptions: 0, upstreamConnections: 0 });
      await waitFor('the subgraph side cleaned up', () => (feed().subscriberCount === 0 ? true : undefined));
    });
  });
});
