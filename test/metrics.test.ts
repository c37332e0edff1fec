import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { scrape, valueOf, type Sample } from './support/prometheus.ts';
import { startStack, type Stack } from './support/stack.ts';

describe('/metrics on the gateway and the subgraphs (Prometheus text format)', () => {
  let stack: Stack;
  const gatewayBase = () => stack.gatewayUrl.replace(/\/graphql$/, '/');
  const catalogBase = () => stack.subgraphs.catalog.url.replace(/\/graphql$/, '/');

  beforeAll(async () => {
    stack = await startStack();
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
});
