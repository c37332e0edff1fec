/**
 * The gateway's subscriptions as real client libraries see them: Apollo Client over graphql-ws
 * (GraphQLWsLink) and over multipart HTTP (HttpLink), and graphql-sse's client over Server-Sent
 * Events. Each watches an order placed through the gateway while the saga and an admin move it
 * along, with a selection that five subgraphs resolve; each is refused what it may not see; and
 * each leaves nothing subscribed, at the gateway or at the orders subgraph, when it goes away.
 */
import { randomUUID } from 'node:crypto';
import { ApolloClient, CombinedGraphQLErrors, HttpLink, InMemoryCache, ServerError, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { createClient as createSseClient, NetworkError, type Client as SseClient } from 'graphql-sse';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import type { RunningOrdersSubgraph } from '../subgraphs/orders/subgraph.ts';
import { graphql } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';
import { advanceShipment, deliverOnceCaptured, inStockProducts as inStock, placeOrder } from './support/orders.ts';
import { statusChanges, watchOrder } from './support/subscriptions.ts';


const unknownField = `subscription Nope($id: ID!) { orderStatusChanged(orderId: $id) { id nope } }`;

interface OrderEvent {
  id: string;
  status: string;
  items: { quantity: number; product: { name: string; stock: { available: number } } }[];
  payment: { status: string } | null;
  shipment: { trackingNumber: string; status: string } | null;
}

/** An error as the client library handed it over: a GraphQL error, or an HTTP refusal. */
interface Refusal {
  message: string;
  code?: string;
  status?: number;
}

/** What one client subscription received, whatever the library. */
interface Watch {
  events: OrderEvent[];
  errors: Refusal[];
  completed: boolean;
  stop(): void;
}

const statuses = (watch: Watch) => watch.events.map((event) => event.status);
const reached = (watch: Watch, status: string) => () => (statuses(watch).includes(status) ? true : undefined);
const ended = (watch: Watch) => () => (watch.completed ? true : undefined);

/** Apollo Client's errors (CombinedGraphQLErrors, ServerError, anything else) as refusals. */
function refusalsOf(error: unknown): Refusal[] {
  if (CombinedGraphQLErrors.is(error)) return error.errors.map((e) => ({ message: e.message, code: e.extensions?.code as string | undefined }));
  if (ServerError.is(error)) {
    const body = JSON.parse(error.bodyText) as { errors?: { message: string; extensions?: { code?: string } }[] };
    return (body.errors ?? []).map((e) => ({ message: e.message, code: e.extensions?.code, status: error.statusCode }));
  }
  return [{ message: error instanceof Error ? error.message : String(error) }];
}

/** A `fetch` that copies every chunk of each response body, as it arrives, into `wire`. */
function recordingFetch(wire: string[]): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    if (!response.body) return response;
    const decoder = new TextDecoder();
    const body = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          wire.push(decoder.decode(chunk, { stream: true }));
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

describe('subscriptions through the gateway with real client libraries', () => {
  let stack: Stack;
  let orders: RunningOrdersSubgraph;
  const customerId = deterministicUuid('customer', demoUsers.customer.email);
  const adminId = deterministicUuid('customer', demoUsers.admin.email);
  let customerToken: string;
  let strangerToken: string;
  let adminToken: string;
  const disposers: (() => unknown)[] = [];
  const watches: Watch[] = [];

  beforeAll(async () => {
    stack = await startStack({ eventBus: 'postgres', slowPaymentDelayMs: 2_500 });
    await seedDemoData(stack.databaseUrls);
    orders = stack.subgraphs.orders as RunningOrdersSubgraph;
    customerToken = await stack.tokenFor({ customerId });
    strangerToken = await stack.tokenFor({ customerId: randomUUID() });
    adminToken = await stack.tokenFor({ customerId: adminId, roles: ['customer', 'admin'] });
    // GraphQLWsLink reads the global WebSocket (`WebSocket.CLOSED`) when graphql-ws reports an
    // `error` message; Node 20 has none, and the refusal would surface as "WebSocket is not
    // defined" (apollographql/apollo-client#11761). What a Node app using the link must do too.
    if (!('WebSocket' in globalThis)) {
      Object.assign(globalThis, { WebSocket });
      disposers.push(() => Reflect.deleteProperty(globalThis, 'WebSocket'));
    }
  }, 120_000);
  afterEach(() => {
    // A failed test must not leave its subscriptions to the next one's "nothing left" checks.
    for (const watch of watches.splice(0)) watch.stop();
  });
  afterAll(async () => {
    try {
      for (const dispose of disposers.splice(0)) await dispose();
    } finally {
      await stack?.stop();
    }
  });

  // ---- the three client libraries ----

  function apolloOverWebSocket(token: string): ApolloClient {
    const ws = createWsClient({
      url: stack.gatewayUrl.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      connectionParams: { Authorization: `Bearer ${token}` },
    });
    const client = new ApolloClient({ link: new GraphQLWsLink(ws), cache: new InMemoryCache() });
    disposers.push(() => client.stop(), () => ws.dispose());
    return client;
  }

  function apolloOverHttp(token: string, options: { fetch?: typeof fetch } = {}): ApolloClient {
    const client = new ApolloClient({
      link: new HttpLink({ uri: stack.gatewayUrl, headers: { Authorization: `Bearer ${token}` }, ...options }),
      cache: new InMemoryCache(),
    });
    disposers.push(() => client.stop());
    return client;
  }

  function sseClient(token: string): SseClient {
    const client = createSseClient({ url: stack.gatewayUrl, singleConnection: false, retryAttempts: 0, headers: { Authorization: `Bearer ${token}` } });
    disposers.push(() => client.dispose());
    return client;
  }

  function watchWithApollo(client: ApolloClient, id: string, query = watchOrder): Watch {
    const watch: Watch = { events: [], errors: [], completed: false, stop: () => {} };
    const subscription = client
      .subscribe<{ orderStatusChanged: OrderEvent }>({ query: gql(query), variables: { id }, fetchPolicy: 'no-cache' })
      .subscribe({
        next: (result) => {
          if (result.data) watch.events.push(result.data.orderStatusChanged);
          if (result.error) watch.errors.push(...refusalsOf(result.error));
        },
        error: (error: unknown) => {
          watch.errors.push(...refusalsOf(error));
          watch.completed = true;
        },
        complete: () => {
          watch.completed = true;
        },
      });
    watch.stop = () => subscription.unsubscribe();
    watches.push(watch);
    return watch;
  }

  function watchWithSse(client: SseClient, id: string, query = watchOrder): Watch {
    const watch: Watch = { events: [], errors: [], completed: false, stop: () => {} };
    watch.stop = client.subscribe<{ orderStatusChanged: OrderEvent }>(
      { query, variables: { id } },
      {
        next: (result) => {
          if (result.data) watch.events.push(result.data.orderStatusChanged);
          if (result.errors) watch.errors.push(...result.errors.map((e) => ({ message: e.message, code: e.extensions?.code as string | undefined })));
        },
        error: (error: unknown) => {
          // A refused request: graphql-sse hands over the Response, its JSON body still unread.
          if (error instanceof NetworkError && error.response) {
            const response = error.response as Response;
            void response
              .text()
              .then((text) => {
                const body = JSON.parse(text) as { errors?: { message: string; extensions?: { code?: string } }[] };
                watch.errors.push(...(body.errors ?? []).map((e) => ({ message: e.message, code: e.extensions?.code, status: response.status })));
              })
              .catch((unreadable: unknown) => watch.errors.push({ message: `HTTP ${response.status}: ${String(unreadable)}`, status: response.status }))
              .finally(() => (watch.completed = true));
            return;
          }
          watch.errors.push({ message: error instanceof Error ? error.message : String(error) });
          watch.completed = true;
        },
        complete: () => {
          watch.completed = true;
        },
      },
    );
    watches.push(watch);
    return watch;
  }

  // ---- the platform ----

  const place = (token: string, paymentToken = 'tok_slow') => placeOrder(stack.gatewayUrl, token, { paymentToken, quantity: 2 });

  const advance = (orderId: string, to: 'DISPATCHED' | 'IN_TRANSIT' | 'DELIVERED') => advanceShipment(stack.gatewayUrl, adminToken, orderId, to);

  async function statusOf(orderId: string): Promise<string | undefined> {
    const response = await graphql(stack.gatewayUrl, { query: `query { order(id: "${orderId}") { status } }`, token: customerToken });
    return response.data?.order?.status as string | undefined;
  }

  /** Watches `watch` through confirmation and the whole shipment, and checks every event's shape. */
  async function followToDelivery(id: string, watch: Watch): Promise<void> {
    await waitFor('CONFIRMED', reached(watch, 'CONFIRMED'));
    await deliverOnceCaptured(stack.gatewayUrl, adminToken, id);
    await waitFor('DELIVERED', reached(watch, 'DELIVERED'));
    expect(watch.errors).toEqual([]);
    // PENDING too, unless the payment (2.5 s) was faster than the subscription's start. Events that
    // keep the status (the payment authorized or captured, the parcel in transit) are collapsed.
    expect(['PENDING,CONFIRMED,SHIPPED,DELIVERED', 'CONFIRMED,SHIPPED,DELIVERED']).toContain(statusChanges(statuses(watch)).join(','));
    // The saga authorizes the payment and creates the shipment before confirming; it captures at dispatch.
    const confirmed = watch.events.find((event) => event.status === 'CONFIRMED')!;
    expect(confirmed).toMatchObject({ id, payment: { status: 'AUTHORIZED' }, shipment: { trackingNumber: expect.stringMatching(/\S/) } });
    expect(watch.events.at(-1)).toMatchObject({
      id,
      status: 'DELIVERED',
      items: [{ quantity: 2, product: { name: inStock[0]!.name, stock: { available: expect.any(Number) } } }],
      payment: { status: 'CAPTURED' },
      shipment: { trackingNumber: expect.stringMatching(/\S/), status: 'DELIVERED' },
    });
    expect(watch.completed).toBe(false);
  }

  /** Something is subscribed, at the gateway and at the orders subgraph (so that "nothing left" means something). */
  async function somethingSubscribed(what: { httpStreams: number }): Promise<void> {
    await waitFor('an upstream subscription and a subscriber at the orders subgraph', () => {
      const stats = stack.gateway.subscriptionStats();
      return stats.upstreamSubscriptions > 0 && stats.httpStreams === what.httpStreams && orders.projectionFeed.subscriberCount > 0 ? true : undefined;
    });
  }

  async function nothingLeftSubscribed(): Promise<void> {
    await waitFor('no client, upstream subscription or HTTP stream left at the gateway', () => {
      const stats = stack.gateway.subscriptionStats();
      return stats.clients === 0 && stats.upstreamSubscriptions === 0 && stats.httpStreams === 0 ? true : undefined;
    });
    await waitFor('no subscriber left at the orders subgraph', () => (orders.projectionFeed.subscriberCount === 0 ? true : undefined));
  }

  // ---- Apollo Client over graphql-ws ----

  describe('Apollo Client with GraphQLWsLink', () => {
    it('follows an order placed through the gateway to CONFIRMED and then DELIVERED, each event resolved across five subgraphs', async () => {
      const id = await place(customerToken);
      const watch = watchWithApollo(apolloOverWebSocket(customerToken), id);
      await followToDelivery(id, watch);
      watch.stop();
      await nothingLeftSubscribed();
    });

    it("gets FORBIDDEN for someone else's order, then the end of the subscription", async () => {
      const id = await place(customerToken, 'tok_visa');
      const watch = watchWithApollo(apolloOverWebSocket(strangerToken), id);
      await waitFor('the end of the subscription', ended(watch));
      expect(watch.errors.map((e) => e.code)).toEqual(['FORBIDDEN']);
      expect(watch.events).toEqual([]);
      await nothingLeftSubscribed();
    });

    it('ends the upstream subscription, down to the orders subgraph, when the client unsubscribes mid-stream', async () => {
      const id = await place(customerToken, 'tok_visa');
      const watch = watchWithApollo(apolloOverWebSocket(customerToken), id);
      await waitFor('a first event', () => (watch.events.length > 0 ? true : undefined));
      await somethingSubscribed({ httpStreams: 0 });
      expect(stack.gateway.subscriptionStats().webSocketConnections).toBeGreaterThan(0);
      watch.stop();
      await nothingLeftSubscribed();
      expect(watch.errors).toEqual([]);
    });
    it('is refused with GRAPHQL_VALIDATION_FAILED for an unknown field, subscribing nothing', async () => {
      const id = await place(customerToken, 'tok_visa');
      const invalid = watchWithApollo(apolloOverWebSocket(customerToken), id, unknownField);
      await waitFor('the refusal', ended(invalid));
      expect(invalid.errors).toEqual([expect.objectContaining({ code: 'GRAPHQL_VALIDATION_FAILED', message: expect.stringContaining('nope') })]);
      expect(invalid.events).toEqual([]);
      await nothingLeftSubscribed();
    });
  });

  // ---- Apollo Client over multipart HTTP ----

  describe('Apollo Client with HttpLink (multipart HTTP subscriptions)', () => {
    it('follows an order placed through the gateway to CONFIRMED and then DELIVERED, each event resolved across five subgraphs', async () => {
      const id = await place(customerToken);
      const watch = watchWithApollo(apolloOverHttp(customerToken), id);
      await followToDelivery(id, watch);
      expect(stack.gateway.subscriptionStats().httpStreams).toBe(1);
      watch.stop();
      await nothingLeftSubscribed();
    });

    it('hands each event to the client as soon as its part arrives, not only when the next part (a heartbeat) does', async () => {
      const id = await place(customerToken, 'tok_visa');
      // An order that no longer changes: after its current state nothing is sent but heartbeats.
      await waitFor('the order CONFIRMED', async () => ((await statusOf(id)) === 'CONFIRMED' ? true : undefined));
      const wire: string[] = [];
      let wireWhenDelivered: string | undefined;
      const watch = watchWithApollo(apolloOverHttp(customerToken, { fetch: recordingFetch(wire) }), id);
      await waitFor('the current state', () => {
        if (watch.events.length > 0) wireWhenDelivered ??= wire.join('');
        return wireWhenDelivered;
      });
      expect(watch.events.map((event) => event.status)).toEqual(['CONFIRMED']);
      // What had arrived when Apollo Client handed the event over: the event's part, last.
      const parts = wireWhenDelivered!.split('\r\n--graphql').filter((part) => part.trim() !== '');
      expect(parts.at(-1)).toContain('"payload"');
      expect(parts.filter((part) => part.includes('"payload"'))).toHaveLength(1);
      watch.stop();
      await nothingLeftSubscribed();
    });

    it("gets FORBIDDEN for someone else's order, then the end of the stream", async () => {
      const id = await place(customerToken, 'tok_visa');
      const watch = watchWithApollo(apolloOverHttp(strangerToken), id);
      await waitFor('the end of the stream', ended(watch));
      expect(watch.errors.map((e) => e.code)).toEqual(['FORBIDDEN']);
      expect(watch.events).toEqual([]);
      await nothingLeftSubscribed();
    });

    it('ends the upstream subscription, down to the orders subgraph, when the client unsubscribes (aborting the request) mid-stream', async () => {
      const id = await place(customerToken, 'tok_visa');
      const watch = watchWithApollo(apolloOverHttp(customerToken), id);
      await waitFor('a first event', () => (watch.events.length > 0 ? true : undefined));
      await somethingSubscribed({ httpStreams: 1 });
      watch.stop();
      await nothingLeftSubscribed();
      expect(watch.errors).toEqual([]);
    });

    it('is refused with 400 GRAPHQL_VALIDATION_FAILED for an unknown field, and with 401 UNAUTHENTICATED for a bad token', async () => {
      const id = await place(customerToken, 'tok_visa');
      const invalid = watchWithApollo(apolloOverHttp(customerToken), id, unknownField);
      const badToken = watchWithApollo(apolloOverHttp('not-a-token'), id);
      await waitFor('both refusals', () => (invalid.completed && badToken.completed ? true : undefined));
      expect(invalid.errors).toEqual([expect.objectContaining({ status: 400, code: 'GRAPHQL_VALIDATION_FAILED', message: expect.stringContaining('nope') })]);
      expect(badToken.errors).toEqual([expect.objectContaining({ status: 401, code: 'UNAUTHENTICATED' })]);
      expect([...invalid.events, ...badToken.events]).toEqual([]);
      await nothingLeftSubscribed();
    });
  });

  // ---- graphql-sse ----

  describe('graphql-sse client (distinct connections mode)', () => {
    it('follows an order placed through the gateway to CONFIRMED and then DELIVERED, each event resolved across five subgraphs', async () => {
      const id = await place(customerToken);
      const watch = watchWithSse(sseClient(customerToken), id);
      await followToDelivery(id, watch);
      expect(stack.gateway.subscriptionStats().httpStreams).toBe(1);
      watch.stop();
      await nothingLeftSubscribed();
    });

    it("gets FORBIDDEN for someone else's order, then the end of the stream", async () => {
      const id = await place(customerToken, 'tok_visa');
      const watch = watchWithSse(sseClient(strangerToken), id);
      await waitFor('the end of the stream', ended(watch));
      expect(watch.errors.map((e) => e.code)).toEqual(['FORBIDDEN']);
      expect(watch.events).toEqual([]);
      await nothingLeftSubscribed();
    });

    it('ends the upstream subscription, down to the orders subgraph, when the client disposes of the subscription (aborting the request) mid-stream', async () => {
      const id = await place(customerToken, 'tok_visa');
      const watch = watchWithSse(sseClient(customerToken), id);
      await waitFor('a first event', () => (watch.events.length > 0 ? true : undefined));
      await somethingSubscribed({ httpStreams: 1 });
      watch.stop();
      await nothingLeftSubscribed();
      expect(watch.errors).toEqual([]);
    });

    it('ends the stream with UNAUTHENTICATED when the token that opened it expires', async () => {
      const id = await place(customerToken, 'tok_visa');
      const shortLived = await stack.tokenFor({ customerId }, 2);
      const watch = watchWithSse(sseClient(shortLived), id);
      await waitFor('a first event', () => (watch.events.length > 0 ? true : undefined));
      await waitFor('the end of the stream', ended(watch), 10_000);
      expect(watch.errors).toEqual([expect.objectContaining({ code: 'UNAUTHENTICATED', message: expect.stringMatching(/expired/) })]);
      await nothingLeftSubscribed();
    });

    it('is refused with 400 GRAPHQL_VALIDATION_FAILED for an unknown field, and with 401 UNAUTHENTICATED for a bad token', async () => {
      const id = await place(customerToken, 'tok_visa');
      const invalid = watchWithSse(sseClient(customerToken), id, unknownField);
      const badToken = watchWithSse(sseClient('not-a-token'), id);
      await waitFor('both refusals', () => (invalid.completed && badToken.completed ? true : undefined));
      expect(invalid.errors).toEqual([expect.objectContaining({ status: 400, code: 'GRAPHQL_VALIDATION_FAILED', message: expect.stringContaining('nope') })]);
      expect(badToken.errors).toEqual([expect.objectContaining({ status: 401, code: 'UNAUTHENTICATED' })]);
      expect([...invalid.events, ...badToken.events]).toEqual([]);
      await nothingLeftSubscribed();
    });
  });

  // ---- plain HTTP ----

  it('answers a subscription POSTed without a streaming Accept header with 400 BAD_REQUEST, subscribing nothing', async () => {
    const id = await place(customerToken, 'tok_visa');
    for (const accept of [undefined, 'application/json', 'application/graphql-response+json, application/json']) {
      const response = await graphql(stack.gatewayUrl, { query: watchOrder, variables: { id }, token: customerToken, ...(accept ? { headers: { accept } } : {}) });
      expect(response.status).toBe(400);
      expect(response.errors?.map((e) => e.extensions?.code)).toEqual(['BAD_REQUEST']);
      expect(response.errors?.[0]?.message).toMatch(/graphql-ws.*multipart.*Server-Sent Events/);
    }
    await nothingLeftSubscribed();
  });
});
