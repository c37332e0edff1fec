import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { exportPKCS8 } from 'jose';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { errorCodes, graphql } from './support/graphql.ts';
import { freePort, startProcess } from './support/processes.ts';
import { startStack, type Stack } from './support/stack.ts';

const introspection = '{ __schema { queryType { name } } }';

describe('the gateway in development', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
    await seedDemoData(stack.databaseUrls);
  });
  afterAll(() => stack?.stop());

  it('answers /health with 200 once the supergraph is loaded', async () => {
    const response = await fetch(new URL('/health', stack.gatewayUrl));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('serves the Apollo Sandbox landing page to a browser on GET /graphql', async () => {
    const response = await fetch(stack.gatewayUrl, { headers: { accept: 'text/html' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/html');
    expect(await response.text()).toContain('embeddable-sandbox');
  });

  it('answers introspection, so Sandbox can show the schema', async () => {
    const response = await graphql(stack.gatewayUrl, { query: introspection });
    expect(response.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
  });

  it('plans one query across the catalog and inventory subgraphs', async () => {
    const response = await graphql(stack.gatewayUrl, { query: '{ products(first: 20) { edges { node { name price stock { available } } } } }' });
    expect(response.errors).toBeUndefined();
    const nodes = response.data!.products.edges.map((edge: { node: unknown }) => edge.node);
    expect(nodes).toHaveLength(20);
    expect(nodes[0]).toEqual({ name: expect.any(String), price: expect.any(Number), stock: { available: expect.any(Number) } });
  });

  it('answers a subscription sent as a plain HTTP request with 400 BAD_REQUEST naming the transports that serve it', async () => {
    const response = await graphql(stack.gatewayUrl, { query: 'subscription { myOrderUpdates { id } }' });
    expect(response.status).toBe(400);
    expect(response.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
    expect(response.errors?.[0]?.message).toMatch(/graphql-ws.*multipart\/mixed.*text\/event-stream/);
  });

  it('refuses request bodies over 1 MiB with 413', async () => {
    const response = await fetch(stack.gatewayUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: `{ __typename }`, variables: { padding: 'x'.repeat(1_100_000) } }),
    });
    expect(response.status).toBe(413);
  });

  it('answers a body that is not JSON with 400 and a BAD_REQUEST code', async () => {
    const response = await fetch(stack.gatewayUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query": ' });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe('BAD_REQUEST');
  });
});

describe('the gateway in production mode', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ production: true });
  });
  afterAll(() => stack?.stop());

  it('refuses introspection', async () => {
    const response = await graphql(stack.gatewayUrl, { query: introspection });
    expect(errorCodes(response)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
  });

  it('serves no landing page', async () => {
    const response = await fetch(stack.gatewayUrl, { headers: { accept: 'text/html' } });
    expect(await response.text()).not.toContain('sandbox');
  });

  it('masks a database error inside a subgraph: the client reads only "Internal server error"', async () => {
    const catalog = new pg.Client({ connectionString: stack.databaseUrls.catalog });
    await catalog.connect();
    try {
      await catalog.query('ALTER TABLE products RENAME TO products_elsewhere');
      const response = await graphql(stack.gatewayUrl, { query: '{ products(first: 1) { totalCount edges { node { name } } } }' });
      expect(response.errors?.map((error) => [error.message, error.extensions?.code])).toEqual([['Internal server error', 'INTERNAL_SERVER_ERROR']]);
      expect(JSON.stringify(response)).not.toMatch(/products_elsewhere|relation|does not exist|P20\d\d|prisma|SELECT|stacktrace|    at /i);
    } finally {
      await catalog.query('ALTER TABLE products_elsewhere RENAME TO products');
      await catalog.end();
    }
  });

  it('masks internal errors: no stack trace, SQL or internal address reaches the client', async () => {
    await stack.subgraphs.inventory.stop();
    const response = await graphql(stack.gatewayUrl, {
      query: '{ product(id: "6a96527f-26b5-5517-8241-d043cd7b10d4") { id } products(first: 1) { edges { node { stock { available } } } } }',
    });
    const text = JSON.stringify(response);
    expect(text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|localhost|stacktrace|    at |SELECT|prisma/i);
    expect(response.data?.product).toBeNull();
  });

  it('still shows client errors with their codes', async () => {
    const response = await graphql(stack.gatewayUrl, { query: '{ products(first: -1) { totalCount } }' });
    expect(response.errors?.[0]).toMatchObject({ message: 'first must be between 0 and 100', extensions: { code: 'BAD_USER_INPUT', field: 'first' } });
  });
});

describe('the gateway as a generic command', () => {
  let stack: Stack;
  let dir: string;
  beforeAll(async () => {
    stack = await startStack();
    dir = mkdtempSync(join(tmpdir(), 'gateway-cli-'));
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves a given supergraph file on a given port, with subgraph URLs overridden', async () => {
    const supergraph = join(dir, 'any-supergraph.graphql');
    writeFileSync(supergraph, readFileSync('schema/supergraph.graphql'));
    const port = await freePort();
    const gateway = startProcess(
      process.execPath,
      ['--import', 'tsx', 'gateway/main.ts', '--supergraph', supergraph, '--port', String(port), ...Object.entries(stack.subgraphs).flatMap(([name, s]) => ['--subgraph-url', `${name}=${s.url}`])],
      { ...process.env, GATEWAY_IDENTITY_PRIVATE_KEY: await exportPKCS8(stack.keys.gatewayIdentity.privateKey), LOG_LEVEL: 'info' },
    );
    try {
      await gateway.waitForOutput(/gateway ready/);
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
      const response = await graphql(`http://127.0.0.1:${port}/graphql`, { query: '{ products(first: 0) { totalCount } }' });
      expect(response.data).toEqual({ products: { totalCount: 0 } });
      expect(gatewayIdentityHeader).toBe('x-commerce-identity');
    } finally {
      expect(await gateway.kill('SIGTERM')).toBe(0);
    }
  });

  it('refuses to start in production without its keys', async () => {
    const gateway = startProcess(process.execPath, ['--import', 'tsx', 'gateway/main.ts', '--port', '0'], {
      ...process.env,
      NODE_ENV: 'production',
      GATEWAY_IDENTITY_PRIVATE_KEY: '',
      AUTH_TOKEN_PUBLIC_KEY: '',
    });
    expect(await gateway.exited).toBe(1);
    expect(gateway.output()).toMatch(/must be set in production/);
  });
});
