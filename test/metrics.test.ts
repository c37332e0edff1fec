import { readFileSync } from 'node:fs';
import { createClient } from 'graphql-ws';
import client from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { metrics, type SubscriptionFigures } from '../gateway/plugins/metrics.ts';
import type { SubgraphHealth } from '../gateway/pipeline/plugin.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { graphql } from './support/graphql.ts';
import { placeOrder } from './support/orders.ts';
import { waitFor } from './support/wait.ts';
import { declaredSeries, parsePrometheusText, scrape, valueOf, type Sample } from './support/prometheus.ts';
import { recordSubscription, watchOrder } from './support/subscriptions.ts';
import { startStack, type Stack } from './support/stack.ts';

describe('/metrics on the gateway and the subgraphs (Prometheus text format)', () => {
  let stack: Stack;
  const gatewayBase = () => stack.gatewayUrl.replace(/\/graphql$/, '/');
  const catalogBase = () => stack.subgraphs.catalog.url.replace(/\/graphql$/, '/');

  beforeAll(async () => {
    stack = await startStack({ eventBus: 'postgres' });
    await seedDemoData(stack.databaseUrls);
  }, 120_000);
  afterAll(() => stack?.stop());

  const delta = (before: Sample[], after: Sample[], name: string, labels: Record<string, string>) => valueOf(after, name, labels) - valueOf(before, name, labels);

  it('counts a known sequence of requests by route, status, operation outcome and subgraph, with no id in any label', async () => {
    const gatewayBefore = await scrape(gatewayBase());
    const catalogBefore = await scrape(catalogBase());

    // Three queries of one app, each one fetch from the catalog; one invalid query (400, never executed).
    for (let i = 0; i < 3; i++) {
      const response = await graphql(stack.gatewayUrl, { query: '{ products(first: 1) { totalCount } }', headers: { 'apollographql-client-name': 'metrics-test', 'apollographql-client-version': '1.0.0' } });
      expect(response.errors).toBeUndefined();
    }
    const invalid = await graphql(stack.gatewayUrl, { query: '{ productz { id } }' });
    expect(invalid.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');

    const gatewayAfter = await scrape(gatewayBase());
    const catalogAfter = await scrape(catalogBase());
    expect(delta(gatewayBefore, gatewayAfter, 'http_requests_total', { service: 'gateway', route: '/graphql', method: 'POST', code: '200' })).toBe(3);
    expect(delta(gatewayBefore, gatewayAfter, 'http_requests_total', { service: 'gateway', route: '/graphql', method: 'POST', code: '400' })).toBe(1);
    expect(delta(gatewayBefore, gatewayAfter, 'http_request_duration_seconds_count', { service: 'gateway', route: '/graphql' })).toBe(4);
    expect(delta(gatewayBefore, gatewayAfter, 'gateway_operations_total', { type: 'query', client: 'metrics-test', code: 'OK' })).toBe(3);
    expect(delta(gatewayBefore, gatewayAfter, 'gateway_operation_duration_seconds_count', { type: 'query', client: 'metrics-test' })).toBe(3);
    expect(delta(gatewayBefore, gatewayAfter, 'gateway_subgraph_fetch_duration_seconds_count', { subgraph: 'catalog', outcome: 'ok' })).toBe(3);
    // The invalid query is a refusal of the core, answered over HTTP.
    expect(delta(gatewayBefore, gatewayAfter, 'gateway_refusals_total', { code: 'GRAPHQL_VALIDATION_FAILED', transport: 'http' })).toBe(1);
    // The subgraph counts the gateway's fetches it answered, by its own route.
    expect(delta(catalogBefore, catalogAfter, 'http_requests_total', { service: 'catalog', route: '/graphql', method: 'POST', code: '200' })).toBe(3);
    // Node's own metrics, per process.
    expect(valueOf(gatewayAfter, 'nodejs_eventloop_lag_seconds', { service: 'gateway' })).toBeGreaterThanOrEqual(0);
    expect(gatewayAfter.some((sample) => sample.name === 'process_cpu_seconds_total')).toBe(true);

    // Bounded cardinality: no label value looks like an id (uuid) or a free URL.
    const ids = [...gatewayAfter, ...catalogAfter].flatMap((sample) => Object.values(sample.labels)).filter((value) => /[0-9a-f]{8}-[0-9a-f]{4}-|\?|\/\//.test(value));
    expect(ids).toEqual([]);
  });

  it('gives unknown paths one route label, so that scanning URLs adds no series', async () => {
    for (const path of ['/wp-login.php', '/a/b/c', `/${'x'.repeat(50)}`]) await fetch(new URL(path, gatewayBase()));
    const samples = await scrape(gatewayBase());
    const routes = new Set(samples.filter((sample) => sample.name === 'http_requests_total').map((sample) => sample.labels.route));
    expect([...routes].every((route) => ['/graphql', '/metrics', '/health', '/ready', 'other'].includes(route!) || route!.startsWith('/graphql/'))).toBe(true);
    expect(valueOf(samples, 'http_requests_total', { service: 'gateway', route: 'other', code: '404' })).toBeGreaterThanOrEqual(3);
  });

  it('shows the event flow and the saga of one order: outbox published, replies handled, each saga step left once', async () => {
    const ordersBase = stack.subgraphs.orders.url.replace(/\/graphql$/, '/');
    const before = await scrape(ordersBase);
    const customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
    const id = await placeOrder(stack.gatewayUrl, customer, { paymentToken: 'tok_visa' });
    await waitFor('CONFIRMED', async () => ((await graphql(stack.gatewayUrl, { query: `{ order(id: "${id}") { status } }`, token: customer })).data?.order?.status === 'CONFIRMED' ? true : undefined));
    const after = await waitFor('the outbox drained', async () => {
      const samples = await scrape(ordersBase);
      return valueOf(samples, 'outbox_backlog_events') === 0 ? samples : undefined;
    });

    // The saga: reserve → authorize → create the shipment → wait for dispatch, each step left once.
    for (const [step, outcome] of [['RESERVING_STOCK', 'AUTHORIZING_PAYMENT'], ['AUTHORIZING_PAYMENT', 'CREATING_SHIPMENT'], ['CREATING_SHIPMENT', 'AWAITING_DISPATCH']]) {
      expect(delta(before, after, 'order_saga_step_duration_seconds_count', { step: step!, outcome: outcome! }), `${step} → ${outcome}`).toBe(1);
    }
    // Its three replies (StockReserved, PaymentAuthorized, ShipmentCreated) handled by the orders consumer, none failed.
    expect(delta(before, after, 'event_deliveries_total', { consumer: 'orders', outcome: 'handled' })).toBe(3);
    expect(delta(before, after, 'event_deliveries_total', { consumer: 'orders', outcome: 'failed' })).toBe(0);
    // OrderPlaced, ReserveStock, AuthorizePayment, CreateShipment, OrderConfirmed: published, each with its delay.
    expect(delta(before, after, 'outbox_published_events_total', { service: 'orders' })).toBe(5);
    expect(delta(before, after, 'outbox_publish_delay_seconds_count', { service: 'orders' })).toBe(5);
    expect(valueOf(after, 'outbox_oldest_unpublished_age_seconds', { service: 'orders' })).toBe(0);
    expect(valueOf(after, 'event_bus_status_scrape_ok', { service: 'orders' })).toBe(1);
    expect(after.some((sample) => sample.name === 'event_consumer_lag_events' && sample.labels.consumer === 'orders')).toBe(true);
    expect(valueOf(after, 'event_dead_letters', { consumer: 'orders' })).toBe(0);
  });

  it('counts each refusal once by code and transport: over a limit and unauthenticated over HTTP, unauthenticated over graphql-ws', async () => {
    const before = await scrape(gatewayBase());
    const aliases = Array.from({ length: 21 }, (_, i) => `a${i}: __typename`).join(' ');
    expect((await graphql(stack.gatewayUrl, { query: `{ ${aliases} }` })).errors?.[0]?.extensions?.code).toBe('TOO_MANY_ALIASES');
    const badToken = await graphql(stack.gatewayUrl, { query: '{ __typename }', token: 'not-a-token' });
    expect([badToken.status, badToken.errors?.[0]?.extensions?.code]).toEqual([401, 'UNAUTHENTICATED']);
    let closed!: (code: number) => void;
    const closedWith = new Promise<number>((resolve) => (closed = resolve));
    const socket = createClient({ url: stack.gatewayUrl.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: 'Bearer not-a-token' }, on: { closed: (event) => closed((event as { code: number }).code) } });
    socket.subscribe({ query: 'subscription { __typename }' }, { next: () => {}, error: () => {}, complete: () => {} });
    expect(await closedWith).toBe(4403);
    await socket.dispose();

    const after = await scrape(gatewayBase());
    expect(delta(before, after, 'gateway_refusals_total', { code: 'TOO_MANY_ALIASES', transport: 'http' })).toBe(1);
    expect(delta(before, after, 'gateway_refusals_total', { code: 'UNAUTHENTICATED', transport: 'http' })).toBe(1);
    expect(delta(before, after, 'gateway_refusals_total', { code: 'UNAUTHENTICATED', transport: 'graphql-ws' })).toBe(1);
    expect(delta(before, after, 'gateway_refusals_total', {})).toBe(3);
  });

  it("shows each called subgraph's breaker closed, and each context's database pool with nobody waiting", async () => {
    expect((await graphql(stack.gatewayUrl, { query: '{ products(first: 1) { totalCount } }' })).errors).toBeUndefined();
    const gateway = await scrape(gatewayBase());
    // The catalog was called: its breaker is known, and closed.
    expect(['closed', 'half-open', 'open'].map((state) => valueOf(gateway, 'gateway_subgraph_breaker_state', { subgraph: 'catalog', state }))).toEqual([1, 0, 0]);
    const catalog = await scrape(catalogBase());
    const inUse = valueOf(catalog, 'database_pool_connections', { service: 'catalog', state: 'in_use' });
    const idle = valueOf(catalog, 'database_pool_connections', { service: 'catalog', state: 'idle' });
    // Connections opened by the queries stay in the pool (a scrape's own outbox query may hold one).
    expect(inUse + idle).toBeGreaterThanOrEqual(1);
    expect(inUse + idle).toBeLessThanOrEqual(10);
    expect(valueOf(catalog, 'database_pool_waiting_requests', { service: 'catalog' })).toBe(0);
  });

  it('counts a subscription open while it is, and every event pushed to it', async () => {
    const customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
    const id = await placeOrder(stack.gatewayUrl, customer, { paymentToken: 'tok_visa' });
    await waitFor('CONFIRMED', async () => ((await graphql(stack.gatewayUrl, { query: `{ order(id: "${id}") { status } }`, token: customer })).data?.order?.status === 'CONFIRMED' ? true : undefined));
    const before = await scrape(gatewayBase());
    const socket = createClient({ url: stack.gatewayUrl.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${customer}` } });
    try {
      // A confirmed order's subscription starts with its present state, and nothing changes it after.
      const received = recordSubscription(socket, watchOrder, { id });
      await waitFor('the present state', () => (received.data.length > 0 ? true : undefined));
      const open = await scrape(gatewayBase());
      expect(valueOf(open, 'gateway_subscriptions_open') - valueOf(before, 'gateway_subscriptions_open')).toBe(1);
      expect(delta(before, open, 'gateway_subscription_connections_open', { transport: 'graphql-ws' })).toBe(1);
      expect(delta(before, open, 'gateway_subscription_events_pushed_total', {})).toBe(received.data.length);
      expect(delta(before, open, 'gateway_subscription_slow_consumers_dropped_total', {})).toBe(0);
      received.dispose();
    } finally {
      await socket.dispose();
    }
    // Once the socket is closed at the gateway too, both are back where they were.
    await waitFor('the subscription and its socket gone', async () => {
      const samples = await scrape(gatewayBase());
      const gone = delta(before, samples, 'gateway_subscriptions_open', {}) === 0 && delta(before, samples, 'gateway_subscription_connections_open', { transport: 'graphql-ws' }) === 0;
      return gone ? true : undefined;
    });
  });

  it('draws the Grafana dashboard only from series the gateway and the subgraphs export', async () => {
    const dashboard = JSON.parse(readFileSync(new URL('../ops/grafana/dashboards/commerce.json', import.meta.url), 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    const exported = new Set((await Promise.all([gatewayBase(), catalogBase(), stack.subgraphs.orders.url.replace(/\/graphql$/, '/')].map((base) => declaredSeries(base)))).flatMap((names) => [...names]));
    const missing: string[] = [];
    for (const panel of dashboard.panels) {
      for (const { expr } of panel.targets) {
        // What is left once label matchers, ranges and `by (…)` are gone: functions (followed by a parenthesis) and metric names.
        const bare = expr.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '').replace(/\bby \([^)]*\)/g, '');
        for (const [, name] of bare.matchAll(/\b([a-z_][a-z0-9_]*)\b(?!\s*\()/g)) {
          if (!exported.has(name!)) missing.push(`${panel.title}: ${name}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});

describe("the gateway's metrics read at scrape (breakers, subscriptions), without a stack", () => {
  async function scrapeOf(registry: client.Registry): Promise<Sample[]> {
    return parsePrometheusText(await registry.metrics());
  }

  it('shows a breaker state as 1 for its current state and 0 for the others, for each subgraph the plugins know', async () => {
    const registry = new client.Registry();
    const health = new Map<string, SubgraphHealth>([
      ['orders', { status: 'down', details: { breaker: 'open' } }],
      ['payments', { status: 'degraded', details: { breaker: 'half-open' } }],
    ]);
    metrics({ registry, subgraphHealth: () => health });
    const samples = await scrapeOf(registry);
    const states = (subgraph: string) => ['closed', 'half-open', 'open'].map((state) => valueOf(samples, 'gateway_subgraph_breaker_state', { subgraph, state }));
    expect(states('orders')).toEqual([0, 0, 1]);
    expect(states('payments')).toEqual([0, 1, 0]);
  });

  it('moves the events pushed and slow subscribers dropped counters by what the gateway counted since the last scrape', async () => {
    const registry = new client.Registry();
    let figures: SubscriptionFigures = { clients: 2, webSocketConnections: 1, httpStreams: 1, eventsPushed: 5, slowSubscribersDropped: 0 };
    metrics({ registry, subscriptions: () => figures });
    const first = await scrapeOf(registry);
    figures = { clients: 1, webSocketConnections: 1, httpStreams: 0, eventsPushed: 12, slowSubscribersDropped: 1 };
    const second = await scrapeOf(registry);
    expect(valueOf(first, 'gateway_subscription_events_pushed_total')).toBe(5);
    expect(valueOf(second, 'gateway_subscription_events_pushed_total')).toBe(12);
    expect(valueOf(second, 'gateway_subscription_slow_consumers_dropped_total')).toBe(1);
    expect(valueOf(second, 'gateway_subscriptions_open')).toBe(1);
    expect(valueOf(second, 'gateway_subscription_connections_open', { transport: 'http' })).toBe(0);
  });
});
