/**
 * Traces (OpenTelemetry, docs/decisions/0036): a real OTLP/HTTP receiver in the test decodes what
 * every service exports (JSON), and one `placeOrder` sent without a `traceparent` must make one
 * trace that runs from the gateway's request, through its fetch to orders and orders' own span,
 * to the relay's publishes and the consumers in inventory, payments and shipping that the saga's
 * commands reach — every span's parent in the same trace: with every service in this process,
 * and with orders (the saga) in a process of its own. With the variables unset, nothing starts.
 */
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { exportSPKI } from 'jose';
import type { RunningGateway } from '../gateway/server.ts';
import { keyNames } from '../platform/config.ts';
import type { ContextName } from '../platform/contexts.ts';
import { dropDatabase } from '../platform/database/provision.ts';
import { issueCustomerToken } from '../platform/identity/customer-token.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { startAccountsSubgraph } from '../subgraphs/accounts/subgraph.ts';
import { startCatalogSubgraph } from '../subgraphs/catalog/subgraph.ts';
import { startInventorySubgraph } from '../subgraphs/inventory/subgraph.ts';
import { startPaymentsSubgraph } from '../subgraphs/payments/subgraph.ts';
import { startShippingSubgraph } from '../subgraphs/shipping/subgraph.ts';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configurationProblems } from '../platform/config/validation.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { tracedEventHandler, tracedPublish } from '../platform/tracing/events.ts';
import { flushTracing, shutdownTracing, SpanKind, startSpan, tracerOf, tracerProviderCount, tracingEnabled } from '../platform/tracing/tracing.ts';
import { demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { freshDatabases, generateTestKeys, startGatewayWithOrdersChild, startStack, startTestBus, type Stack, type TestBus } from './support/stack.ts';
import { inheritedEnv } from './support/fault-harness.ts';
import { freePort, startProcess, type TestProcess } from './support/processes.ts';
import { waitFor } from './support/wait.ts';

/** One span as the receiver decoded it. */
interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}
interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: { spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes?: OtlpAttribute[] }[] }[];
  }[];
}

const valueOf = (value: OtlpValue) => value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : (value.boolValue ?? value.doubleValue));
const attributesOf = (attributes: OtlpAttribute[] = []) => Object.fromEntries(attributes.map((a) => [a.key, valueOf(a.value)]));

/** An OTLP/HTTP trace receiver (JSON encoding), as a collector would be. */
async function startReceiver(): Promise<{ url: string; spans: ReceivedSpan[]; close(): Promise<void> }> {
  const spans: ReceivedSpan[] = [];
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (request.method !== 'POST' || request.url !== '/v1/traces' || !String(request.headers['content-type']).startsWith('application/json')) {
        response.writeHead(415).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpExport;
      for (const resourceSpans of body.resourceSpans ?? []) {
        const service = String(attributesOf(resourceSpans.resource?.attributes)['service.name']);
        for (const scope of resourceSpans.scopeSpans ?? []) {
          for (const span of scope.spans ?? []) {
            spans.push({ service, traceId: span.traceId, spanId: span.spanId, parentSpanId: span.parentSpanId || undefined, name: span.name, kind: span.kind, attributes: attributesOf(span.attributes) });
          }
        }
      }
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// OTLP's span kinds (SpanKind + 1 in the JSON encoding).
const otlpKind = { server: SpanKind.SERVER + 1, client: SpanKind.CLIENT + 1, producer: SpanKind.PRODUCER + 1, consumer: SpanKind.CONSUMER + 1 };

/**
 * Places an order through the gateway with no traceparent and checks its trace: the gateway's
 * request span, its fetch to orders, orders' span, the relay's publishes and the saga's consumers
 * in inventory, payments and shipping, each span's parent in the same trace.
 */
async function checkPlaceOrderTrace(receiver: { spans: ReceivedSpan[] }, gatewayUrl: string, customer: string, customerId: string): Promise<void> {
  const product = demoProducts.find((p) => p.stock >= 20)!;
  const placed = await graphql(gatewayUrl, {
    query: `mutation PlaceOrder($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }`,
    variables: { input: { lines: [{ productId: product.id, quantity: 1 }], shippingAddress: { name: 'Carl Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' }, paymentToken: 'tok_visa', idempotencyKey: randomUUID() } },
    token: customer,
    headers: { 'apollographql-client-name': 'traces-test', 'apollographql-client-version': '1.0' },
  });
  expect(placed.errors).toBeUndefined();
  const orderId = placed.data!.placeOrder.id as string;

  const request = await waitFor('the gateway span of PlaceOrder', async () => {
    await flushTracing();
    return receiver.spans.find((span) => span.service === 'gateway' && span.attributes['graphql.operation.name'] === 'PlaceOrder');
  });
  // The saga's last step: orders handles ShipmentCreated (the order is CONFIRMED then).
  const inTrace = () => receiver.spans.filter((span) => span.traceId === request.traceId);
  await waitFor('the span of orders handling ShipmentCreated', async () => {
    await flushTracing();
    return inTrace().find((span) => span.service === 'orders' && span.name === 'handle ShipmentCreated');
  });
  const spans = inTrace();
  const one = (service: string, name: string) => {
    const found = spans.filter((span) => span.service === service && span.name === name);
    expect(found.map((span) => `${span.service}: ${span.name}`), `${service}: ${name}`).toEqual([`${service}: ${name}`]);
    return found[0]!;
  };

  // The gateway's request span starts the trace (no traceparent came) and says what ran, for which app and kind of caller.
  expect(request).toMatchObject({ name: 'mutation PlaceOrder', kind: otlpKind.server, parentSpanId: undefined });
  expect(request.attributes).toMatchObject({ 'graphql.operation.type': 'mutation', 'graphql.client.name': 'traces-test', 'graphql.client.version': '1.0', 'caller.kind': 'customer' });

  const fetch = one('gateway', 'fetch orders');
  expect(fetch).toMatchObject({ kind: otlpKind.client, parentSpanId: request.spanId });
  const served = one('orders', 'orders graphql');
  expect(served).toMatchObject({ kind: otlpKind.server, parentSpanId: fetch.spanId });

  // The outbox rows written by placeOrder carry orders' span; the relay publishes each under it.
  const publishOrderPlaced = one('orders', 'publish OrderPlaced');
  const publishReserveStock = one('orders', 'publish ReserveStock');
  expect(publishOrderPlaced).toMatchObject({ kind: otlpKind.producer, parentSpanId: served.spanId });
  expect(publishReserveStock).toMatchObject({ kind: otlpKind.producer, parentSpanId: served.spanId });

  // Each command reaches its consumer under its publish; each reply and the next command follow on.
  const reserve = one('inventory', 'handle ReserveStock');
  expect(reserve).toMatchObject({ kind: otlpKind.consumer, parentSpanId: publishReserveStock.spanId });
  const stockReserved = one('inventory', 'publish StockReserved');
  expect(stockReserved.parentSpanId).toBe(reserve.spanId);
  const sagaOnStock = one('orders', 'handle StockReserved');
  expect(sagaOnStock.parentSpanId).toBe(stockReserved.spanId);
  const publishAuthorize = one('orders', 'publish AuthorizePayment');
  expect(publishAuthorize.parentSpanId).toBe(sagaOnStock.spanId);
  const authorize = one('payments', 'handle AuthorizePayment');
  expect(authorize).toMatchObject({ kind: otlpKind.consumer, parentSpanId: publishAuthorize.spanId });
  const publishCreateShipment = one('orders', 'publish CreateShipment');
  const ship = one('shipping', 'handle CreateShipment');
  expect(ship).toMatchObject({ kind: otlpKind.consumer, parentSpanId: publishCreateShipment.spanId });

  // Every parent is a span of the same trace: no link leads out of it.
  const ids = new Set(spans.map((span) => span.spanId));
  for (const span of spans) if (span !== request) expect(ids.has(span.parentSpanId!), `${span.service}: ${span.name}`).toBe(true);
  // Never who the caller is: no span attribute holds the customer's id, the order's or the token.
  const values = JSON.stringify(spans.map((span) => span.attributes));
  for (const secret of [customerId, orderId, customer]) expect(values).not.toContain(secret);
}

describe('traces when no OTLP endpoint is configured', () => {
  it('starts no tracer provider: spans are the no-op kind and the event wrappers hand back what they were given', () => {
    expect(tracingEnabled({})).toBe(false);
    expect(tracingEnabled()).toBe(false);
    const span = startSpan(tracerOf('gateway'), 'graphql request', undefined, SpanKind.SERVER);
    expect(span.isRecording()).toBe(false);
    span.end();
    const publish = async () => undefined;
    const handle = async () => undefined;
    expect(tracedPublish('orders', publish)).toBe(publish);
    expect(tracedEventHandler('inventory', 'inventory', handle)).toBe(handle);
    expect(tracerProviderCount()).toBe(0);
  });

  it('refuses an endpoint that is no http(s) URL at start, naming the variable and what is expected', () => {
    expect(configurationProblems({ OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' }, ['gateway', 'subgraphs'])).toEqual([
      'OTEL_EXPORTER_OTLP_ENDPOINT="localhost:4318" is invalid: expected a URL (http://…)',
    ]);
    expect(configurationProblems({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }, ['gateway', 'subgraphs'])).toEqual([]);
  });
});

describe('a placeOrder trace across the gateway, the subgraphs and the event bus', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let stack: Stack;
  let customerId: string;
  let customer: string;

  beforeAll(async () => {
    receiver = await startReceiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    stack = await startStack({ eventBus: 'nats' });
    await seedDemoData(stack.databaseUrls);
    customerId = deterministicUuid('customer', demoUsers.customer.email);
    customer = await stack.tokenFor({ customerId });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
    await shutdownTracing();
    delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    await receiver?.close();
  });

  it('makes one trace of the request, its fetch to orders, orders’ span, the relay’s publishes and the saga’s consumers, each span’s parent in the trace', () =>
    checkPlaceOrderTrace(receiver, stack.gatewayUrl, customer, customerId));
});

describe('a placeOrder trace with orders in a process of its own', () => {
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let testBus: TestBus;
  let databaseUrls: Record<ContextName, string>;
  const inProcess: RunningContextSubgraph[] = [];
  let orders: TestProcess | undefined;
  let gateway: RunningGateway;
  let customerId: string;
  let customer: string;

  beforeAll(async () => {
    receiver = await startReceiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    const keys = await generateTestKeys();
    databaseUrls = await freshDatabases();
    testBus = await startTestBus('nats');
    await seedDemoData(databaseUrls);
    const base = { port: 0, host: '127.0.0.1', gatewayPublicKey: keys.gatewayIdentity.publicKey, production: false, eventBus: testBus.bus, relay: { pollIntervalMs: 200 } };
    inProcess.push(
      await startAccountsSubgraph({ ...base, databaseUrl: databaseUrls.accounts, authTokenPrivateKey: keys.authToken.privateKey }),
      await startCatalogSubgraph({ ...base, databaseUrl: databaseUrls.catalog }),
      await startInventorySubgraph({ ...base, databaseUrl: databaseUrls.inventory }),
      await startPaymentsSubgraph({ ...base, databaseUrl: databaseUrls.payments }),
      await startShippingSubgraph({ ...base, databaseUrl: databaseUrls.shipping }),
    );
    const ordersPort = await freePort();
    orders = startProcess(
      process.execPath,
      ['--import', 'tsx', 'subgraphs/orders/main.ts'],
      {
        ...inheritedEnv(),
        ...testBus.env,
        ORDERS_DATABASE_URL: databaseUrls.orders,
        PORT: String(ordersPort),
        HOST: '127.0.0.1',
        // Its 'subgraph listening' line says when it is up.
        LOG_LEVEL: 'info',
        [keyNames.gatewayIdentityPublic]: await exportSPKI(keys.gatewayIdentity.publicKey),
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        // The SDK's standard variable: batches leave the child every 100 ms instead of 5 s.
        OTEL_BSP_SCHEDULE_DELAY: '100',
      },
      fileURLToPath(new URL('..', import.meta.url)),
    );
    await orders.waitForOutput(/subgraph listening/, 60_000);
    gateway = await startGatewayWithOrdersChild(inProcess, ordersPort, keys);
    customerId = deterministicUuid('customer', demoUsers.customer.email);
    customer = await issueCustomerToken(keys.authToken.privateKey, { customerId, roles: ['customer'] }, 600);
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop();
    await orders?.kill('SIGTERM');
    for (const subgraph of inProcess) await subgraph.stop();
    await shutdownTracing();
    delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    await testBus?.bus.close();
    await testBus?.dispose();
    for (const url of Object.values(databaseUrls ?? {})) await dropDatabase(url);
    await receiver?.close();
  });

  it('makes the same one trace when orders’ spans come from another process, through the same W3C traceparents', () =>
    checkPlaceOrderTrace(receiver, gateway.url, customer, customerId));
});
