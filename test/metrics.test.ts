import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { graphql } from './support/graphql.ts';
import { placeOrder } from './support/orders.ts';
import { waitFor } from './support/wait.ts';
import { declaredSeries, scrape, valueOf, type Sample } from './support/prometheus.ts';
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
