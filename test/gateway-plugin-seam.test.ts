/**
 * The gateway's plugin seam: one plugin, given to the gateway once, sees every way in (HTTP,
 * graphql-ws, multipart HTTP, SSE) and every way out (subgraph fetches, upstream subscriptions,
 * subgraph sockets), and its refusals reach clients of every transport with their code.
 */
import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startGateway, type RunningGateway } from '../gateway/server.ts';
import type { AdmittedOperation, ClientConnection, GatewayPlugin, ParsedDocument, SubgraphRequest } from '../gateway/pipeline/plugin.ts';
import { GatewayRefusal } from '../gateway/pipeline/refusal.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { placeOrder } from './support/orders.ts';
import { recordSubscription, watchOrder } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

const multipart = 'multipart/mixed;subscriptionSpec="1.0"';
const sse = 'text/event-stream';

/** Records what each hook saw. */
function probe() {
  const seen = {
    connections: [] as ClientConnection['transport'][],
    released: [] as ClientConnection['transport'][],
    documents: [] as { transport: string; operationName: string | null }[],
    operations: [] as { transport: string; kind: string; operationName: string | null }[],
    subgraphCalls: [] as { kind: SubgraphRequest['kind']; subgraph: string; signed: boolean }[],
    wrappedFetches: [] as string[],
  };
  const plugin: GatewayPlugin = {
    name: 'probe',
    onConnection(connection) {
      seen.connections.push(connection.transport);
      return () => seen.released.push(connection.transport);
    },
    onDocument(document: ParsedDocument) {
      seen.documents.push({ transport: document.connection.transport, operationName: document.operationName });
    },
    onOperation(operation: AdmittedOperation) {
      seen.operations.push({ transport: operation.connection.transport, kind: operation.operation.operation, operationName: operation.operation.name?.value ?? null });
      if (operation.headers['x-probe-extension']) operation.responseExtensions.probe = { transport: operation.connection.transport };
      if (operation.operation.name?.value === 'Refused') throw new GatewayRefusal('PROBE_REFUSED', 'The probe refuses this', { status: 429, retryAfterSeconds: 7 });
    },
    onSubgraphRequest(request) {
      // Runs after the gateway's own plugins: the identity is already signed.
      seen.subgraphCalls.push({ kind: request.kind, subgraph: request.subgraph, signed: typeof request.headers['x-commerce-identity'] === 'string' });
    },
    wrapSubgraphFetch(request, init, next) {
      seen.wrappedFetches.push(request.subgraph);
      return next(init);
    },
  };
  return { plugin, seen };
}

async function readStream(response: Response, until: (text: string) => boolean): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true });
    if (until(text)) break;
  }
  return text;
}

describe('the gateway plugin seam', () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let seen: ReturnType<typeof probe>['seen'];
  let token: string;
  const clients: Client[] = [];
  const customerId = deterministicUuid('customer', demoUsers.customer.email);

  beforeAll(async () => {
    stack = await startStack();
    await seedDemoData(stack.databaseUrls);
    const probed = probe();
    seen = probed.seen;
    gateway = await startGateway(gatewayOptionsFor(stack, { plugins: [probed.plugin] }));
    token = await stack.tokenFor({ customerId });
  });
  afterAll(async () => {
    for (const client of clients) await client.dispose();
    await gateway?.stop();
    await stack?.stop();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(gateway.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers }, body: JSON.stringify(body) });

  const connect = () => {
    const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${token}` } });
    clients.push(client);
    return client;
  };

  it('sees an HTTP query as an http connection and operation, and each of its subgraph fetches signed and wrapped', async () => {
    const before = seen.subgraphCalls.length;
    const response = await post({ query: 'query Browse { products(first: 2) { edges { node { id name stock { available } } } } }', operationName: 'Browse' });
    const body = (await response.json()) as { data?: unknown; errors?: unknown };
    expect(body.errors).toBeUndefined();
    expect(seen.operations).toContainEqual({ transport: 'http', kind: 'query', operationName: 'Browse' });
    expect(seen.documents).toContainEqual({ transport: 'http', operationName: 'Browse' });
    const calls = seen.subgraphCalls.slice(before);
    expect(calls.map((call) => call.subgraph).sort()).toEqual(['catalog', 'inventory']);
    expect(calls.every((call) => call.kind === 'fetch' && call.signed)).toBe(true);
    expect(seen.wrappedFetches).toEqual(expect.arrayContaining(['catalog', 'inventory']));
    await waitFor('the HTTP connection released', () => (seen.released.includes('http') ? true : undefined));
  });

  it('sees a graphql-ws subscription as a graphql-ws connection and operation, and its upstream socket and subscription', async () => {
    const orderId = await placeOrder(stack.gatewayUrl, token);
    const received = recordSubscription(connect(), watchOrder, { id: orderId });
    await waitFor('the first event', () => (received.data.length > 0 ? true : undefined));
    received.dispose();
    expect(seen.connections).toContain('graphql-ws');
    expect(seen.operations).toContainEqual({ transport: 'graphql-ws', kind: 'subscription', operationName: 'WatchOrder' });
    expect(seen.subgraphCalls).toContainEqual({ kind: 'socket', subgraph: 'orders', signed: true });
    expect(seen.subgraphCalls).toContainEqual({ kind: 'subscription', subgraph: 'orders', signed: true });
  });

  it('sees multipart and SSE subscriptions as connections of their own transport, released when the client goes away', async () => {
    const orderId = await placeOrder(stack.gatewayUrl, token);
    for (const [accept, transport, marker] of [
      [multipart, 'multipart', '"payload"'],
      [sse, 'sse', 'event: next'],
    ] as const) {
      const controller = new AbortController();
      const response = await fetch(gateway.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept, authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: watchOrder, variables: { id: orderId } }),
        signal: controller.signal,
      });
      expect(response.status).toBe(200);
      await readStream(response, (text) => text.includes(marker));
      controller.abort();
      expect(seen.connections).toContain(transport);
      expect(seen.operations).toContainEqual({ transport, kind: 'subscription', operationName: 'WatchOrder' });
      await waitFor(`the ${transport} connection released`, () => (seen.released.includes(transport) ? true : undefined));
    }
  });

  it("refuses with the plugin's code and status on every transport: HTTP 429 with Retry-After, an error message over graphql-ws, JSON before a stream starts", async () => {
    const refusedQuery = 'query Refused { products(first: 1) { edges { node { id } } } }';
    const http = await post({ query: refusedQuery, operationName: 'Refused' });
    expect(http.status).toBe(429);
    expect(http.headers.get('retry-after')).toBe('7');
    expect(((await http.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe('PROBE_REFUSED');

    const refusedSubscription = 'subscription Refused($id: ID!) { orderStatusChanged(orderId: $id) { id } }';
    const ws = recordSubscription(connect(), refusedSubscription, { id: randomUUID() });
    await waitFor('the refusal over graphql-ws', () => (ws.errors.length > 0 ? true : undefined));
    expect(ws.errors[0]!.extensions?.code).toBe('PROBE_REFUSED');

    for (const accept of [multipart, sse]) {
      const response = await post({ query: refusedSubscription, operationName: 'Refused', variables: { id: randomUUID() } }, { accept });
      expect(response.status).toBe(429);
      expect(((await response.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe('PROBE_REFUSED');
    }
  });

  it('refuses the nested-products cost bomb before any subgraph is called', async () => {
    const level = (inner: string) => `products(first: 100) { edges { node { name category { ${inner} } } } }`;
    const bomb = `{ ${level(level(level(level('products(first: 100) { edges { node { name } } }'))))} }`;
    const before = seen.subgraphCalls.length;
    const response = await post({ query: bomb });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe('OPERATION_TOO_COSTLY');
    expect(seen.subgraphCalls.length).toBe(before);
  });

  it("adds a plugin's response extensions to HTTP responses and to subscription events", async () => {
    const http = await post({ query: '{ products(first: 1) { edges { node { id } } } }' }, { 'x-probe-extension': 'yes' });
    expect(((await http.json()) as { extensions?: unknown }).extensions).toEqual({ probe: { transport: 'http' } });

    const orderId = await placeOrder(stack.gatewayUrl, token);
    const response = await post({ query: watchOrder, variables: { id: orderId } }, { accept: sse, 'x-probe-extension': 'yes' });
    const controller = new AbortController();
    const text = await readStream(response, (so) => so.includes('event: next'));
    controller.abort();
    expect(text).toContain('"probe":{"transport":"sse"}');
  });
});
