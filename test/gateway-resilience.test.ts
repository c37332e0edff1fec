/**
 * Per-subgraph resilience at the gateway, through a real gateway and real subgraphs. A TCP proxy
 * in front of a subgraph freezes it (accepts, forwards nothing: a SIGSTOP'd process), kills it
 * (connections cut at once), or loses its answers (the subgraph did the work, the gateway sees a
 * reset); it counts what reached the subgraph.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readinessOf, startGateway, type GatewayOptions, type RunningGateway } from '../gateway/server.ts';
import type { SubgraphHealth } from '../gateway/pipeline/plugin.ts';
import type { DeduplicationPlugin } from '../gateway/plugins/deduplication.ts';
import { defaultSubgraphPolicy, resilienceOptionsFromEnv } from '../gateway/plugins/resilience.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoCategories, demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { errorCodes, graphql, type GraphQLResponse } from './support/graphql.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';
import { waitFor } from './support/wait.ts';

const proxied = ['accounts', 'catalog', 'inventory'] as const;
type Proxied = (typeof proxied)[number];

const productsWithStock = '{ products(first: 3) { edges { node { name stock { available } } } } }';
const productWithStock = 'query ($id: ID!) { product(id: $id) { name stock { available } } }';
const productById = 'query ($id: ID!) { product(id: $id) { name price } }';

interface Readiness {
  status: string;
  subgraphs: Record<string, { status: string; breaker?: string }>;
}

describe('gateway resilience per subgraph', () => {
  let stack: Stack;
  const proxies = {} as Record<Proxied, TcpProxy>;
  const gateways: RunningGateway[] = [];
  let customerToken: string;
  let adminToken: string;
  const customerId = deterministicUuid('customer', demoUsers.customer.email);
  const adminId = deterministicUuid('customer', demoUsers.admin.email);

  beforeAll(async () => {
    stack = await startStack();
    await seedDemoData(stack.databaseUrls);
    for (const name of proxied) proxies[name] = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(stack.subgraphs[name].url).port) });
    customerToken = await stack.tokenFor({ customerId });
    adminToken = await stack.tokenFor({ customerId: adminId, roles: ['customer', 'admin'] });
  }, 120_000);
  afterEach(async () => {
    for (const proxy of Object.values(proxies)) proxy.resume();
    for (const gateway of gateways.splice(0)) await gateway.stop();
  });
  afterAll(async () => {
    for (const proxy of Object.values(proxies)) await proxy.close();
    await stack?.stop();
  });

  /** A gateway in front of the stack, reaching the proxied subgraphs through their proxies. */
  async function gatewayWith(overrides: Partial<GatewayOptions> = {}): Promise<RunningGateway> {
    const options = gatewayOptionsFor(stack, overrides);
    const subgraphUrls = { ...options.subgraphUrls };
    for (const name of proxied) subgraphUrls[name] = `http://${proxies[name].address}/graphql`;
    // The sessions plugin reads accounts' key set and revocation feed on its own: straight from
    // accounts, so that the proxies count only the fetches of the operations under test.
    const accounts = new URL(stack.subgraphs.accounts.url);
    const sessions = { ...options.sessions, jwksUrl: new URL('/.well-known/jwks.json', accounts).href, revocationsUrl: new URL('/sessions/revocations', accounts).href };
    const gateway = await startGateway({ ...options, subgraphUrls, sessions });
    gateways.push(gateway);
    return gateway;
  }

  async function readiness(gateway: RunningGateway): Promise<{ status: number; body: Readiness }> {
    const response = await fetch(new URL('/ready', gateway.url));
    return { status: response.status, body: (await response.json()) as Readiness };
  }

  /** Queries and fetches that joined identical ones in flight, so far. */
  const joined = (gateway: RunningGateway) => (gateway.plugins.find((plugin) => plugin.name === 'deduplication') as DeduplicationPlugin).joined;

  const stockPaths = [0, 1, 2].map((index) => ['products', 'edges', index, 'node', 'stock']);

  it('answers at the subgraph timeout when a subgraph is frozen, with SUBGRAPH_TIMEOUT at the path of each missing field and the other subgraphs’ fields present', async () => {
    const gateway = await gatewayWith({ resilience: { subgraphs: { inventory: { timeoutMs: 600, breakerFailures: 100 } } } });
    proxies.inventory.freeze();
    const started = Date.now();
    const response = await graphql(gateway.url, { query: productsWithStock });
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(550);
    expect(elapsed).toBeLessThan(5_000); // not the 10 s request deadline
    const nodes = response.data!.products.edges.map((edge: { node: unknown }) => edge.node);
    expect(nodes).toEqual([0, 1, 2].map(() => ({ name: expect.any(String), stock: null })));
    expect(response.errors?.map((error) => error.path)).toEqual(stockPaths);
    expect(new Set(errorCodes(response))).toEqual(new Set(['SUBGRAPH_TIMEOUT']));
  });

  it('opens the breaker of a dead subgraph after its failures in a row, then fails fast without calling it, probes it, and closes once it is back', async () => {
    const gateway = await gatewayWith({ resilience: { subgraphs: { inventory: { breakerFailures: 3, breakerHalfOpenAfterMs: 1_000, retries: 0 } } } });
    expect((await graphql(gateway.url, { query: productsWithStock })).errors).toBeUndefined();
    expect(await readiness(gateway)).toMatchObject({ status: 200, body: { status: 'ready', subgraphs: { inventory: { status: 'up' } } } });

    proxies.inventory.pause();
    for (let failure = 0; failure < 3; failure++) {
      const response = await graphql(gateway.url, { query: productsWithStock });
      expect(response.errors?.map((error) => error.path)).toEqual(stockPaths);
      expect(new Set(errorCodes(response))).toEqual(new Set(['SUBGRAPH_UNAVAILABLE']));
    }
    const tried = proxies.inventory.connections;
    const open = await readiness(gateway);
    expect(open.status).toBe(200); // degraded, not out of rotation: the other subgraphs still serve
    expect(open.body).toMatchObject({ status: 'degraded', subgraphs: { inventory: { status: 'down', breaker: 'open' }, catalog: { status: 'up' } } });
    expect((await fetch(new URL('/health', gateway.url))).status).toBe(200);

    const started = Date.now();
    for (let request = 0; request < 5; request++) {
      const response = await graphql(gateway.url, { query: productsWithStock });
      expect(response.data!.products.edges).toHaveLength(3);
      expect(new Set(errorCodes(response))).toEqual(new Set(['SUBGRAPH_UNAVAILABLE']));
    }
    expect(Date.now() - started).toBeLessThan(1_000 * 5);
    // None of them, nor anything else, reached it before the breaker's own probe.
    const probed = await waitFor('the breaker to probe the dead subgraph', () => (proxies.inventory.connections > tried ? proxies.inventory.connections : undefined));
    expect(probed - tried).toBeLessThanOrEqual(2);

    proxies.inventory.resume();
    await waitFor('the breaker to close on its own once inventory is back', async () => ((await readiness(gateway)).body.subgraphs.inventory?.status === 'up' ? true : undefined));
    const recovered = await graphql(gateway.url, { query: productsWithStock });
    expect(recovered.errors).toBeUndefined();
    expect(recovered.data!.products.edges[0].node.stock).toEqual({ available: expect.any(Number) });
    expect((await readiness(gateway)).body.status).toBe('ready');
  });

  it('sends a fetch of a query again when its answer was lost, and the client gets the answer', async () => {
    const gateway = await gatewayWith({ resilience: { defaults: { retries: 2, retryDelayMs: 20 } } });
    const before = proxies.inventory.httpRequests;
    proxies.inventory.cutReplies(1);
    const response = await graphql(gateway.url, { query: productWithStock, variables: { id: demoProducts[0]!.id } });
    expect(response.errors).toBeUndefined();
    expect(response.data!.product.stock).toEqual({ available: expect.any(Number) });
    expect(proxies.inventory.httpRequests - before).toBe(2);
  });

  it('bounds a query’s retries and back-offs by the request’s deadline, then answers SUBGRAPH_TIMEOUT with the path', async () => {
    const gateway = await gatewayWith({ requestTimeoutMs: 1_500, resilience: { subgraphs: { inventory: { retries: 50, retryDelayMs: 200, breakerFailures: 1_000 } } } });
    const before = proxies.inventory.httpRequests;
    proxies.inventory.cutReplies();
    const started = Date.now();
    const response = await graphql(gateway.url, { query: productWithStock, variables: { id: demoProducts[0]!.id } });
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(1_400);
    expect(elapsed).toBeLessThan(6_000);
    expect(response.data!.product).toEqual({ name: demoProducts[0]!.name, stock: null });
    expect(response.errors).toEqual([expect.objectContaining({ path: ['product', 'stock'], extensions: expect.objectContaining({ code: 'SUBGRAPH_TIMEOUT' }) })]);
    const tries = proxies.inventory.httpRequests - before;
    expect(tries).toBeGreaterThanOrEqual(2);
    expect(tries).toBeLessThan(20);
  });

  it('never sends a mutation twice: its subgraph is called exactly once even when the answer is lost, and the change is made once', async () => {
    const gateway = await gatewayWith({ resilience: { defaults: { retries: 2, retryDelayMs: 20, breakerFailures: 100 } } });
    const line1 = `${randomUUID()} Retry Street`;
    const before = proxies.accounts.httpRequests;
    proxies.accounts.cutReplies();
    const response = await graphql(gateway.url, {
      query: 'mutation ($input: AddressInput!) { addAddress(input: $input) { id } }',
      variables: { input: { line1, city: 'Berlin', postalCode: '10115', country: 'DE' } },
      token: customerToken,
    });
    expect(errorCodes(response)).toEqual(['SUBGRAPH_UNAVAILABLE']);
    expect(response.errors![0]!.path).toEqual(['addAddress']);
    expect(proxies.accounts.httpRequests - before).toBe(1);

    // The same fault on a query: tried three times.
    const queried = proxies.accounts.httpRequests;
    const me = await graphql(gateway.url, { query: '{ me { name } }', token: customerToken });
    expect(errorCodes(me)).toEqual(['SUBGRAPH_UNAVAILABLE']);
    expect(me.errors![0]!.path).toEqual(['me']);
    expect(proxies.accounts.httpRequests - queried).toBe(3);

    proxies.accounts.resume();
    const addresses = await graphql(gateway.url, { query: '{ me { addresses { line1 } } }', token: customerToken });
    expect(addresses.data!.me.addresses.filter((address: { line1: string }) => address.line1 === line1)).toHaveLength(1);
  });

  it('never sends an entity fetch of a mutation twice either', async () => {
    const gateway = await gatewayWith({ resilience: { defaults: { retries: 2, retryDelayMs: 20, breakerFailures: 100 } } });
    const sku = `RES-${randomUUID().slice(0, 8).toUpperCase()}`;
    const before = proxies.inventory.httpRequests;
    proxies.inventory.cutReplies();
    const response = await graphql(gateway.url, {
      query: 'mutation ($input: CreateProductInput!) { createProduct(input: $input) { sku stock { available } } }',
      variables: { input: { sku, name: 'Resilient Kite', price: 999, currency: 'EUR', categoryId: demoCategories[0]!.id } },
      token: adminToken,
    });
    expect(response.data).toEqual({ createProduct: { sku, stock: null } });
    expect(errorCodes(response)).toEqual(['SUBGRAPH_UNAVAILABLE']);
    expect(response.errors![0]!.path).toEqual(['createProduct', 'stock']);
    expect(proxies.inventory.httpRequests - before).toBe(1);
  });

  it('sheds a burst beyond a subgraph’s bulkhead at once with SERVICE_OVERLOADED, and serves what it let in', async () => {
    const gateway = await gatewayWith({
      requestTimeoutMs: 60_000,
      deduplication: { requests: false, subgraphFetches: false },
      resilience: { subgraphs: { inventory: { maxConcurrency: 2, maxQueue: 1, timeoutMs: 60_000, breakerFailures: 100 } } },
    });
    proxies.inventory.freeze();
    const answers: GraphQLResponse[] = [];
    const burst = demoProducts.slice(0, 6).map((product) => graphql(gateway.url, { query: productWithStock, variables: { id: product.id } }).then((answer) => void answers.push(answer)));
    // The frozen subgraph answers nobody: whatever comes back now was shed.
    await waitFor('three answers while inventory is frozen', () => (answers.length >= 3 ? true : undefined), 30_000);
    expect(answers).toHaveLength(3);
    for (const shed of answers) {
      expect(shed.data!.product).toEqual({ name: expect.any(String), stock: null });
      expect(shed.errors).toEqual([expect.objectContaining({ path: ['product', 'stock'], extensions: expect.objectContaining({ code: 'SERVICE_OVERLOADED', retryAfter: 1 }) })]);
    }
    proxies.inventory.resume();
    await Promise.all(burst);
    for (const served of answers.slice(3)) {
      expect(served.errors).toBeUndefined();
      expect(served.data!.product.stock).toEqual({ available: expect.any(Number) });
    }
  });

  it('runs identical concurrent queries of one caller once, down to one subgraph call', async () => {
    const gateway = await gatewayWith();
    proxies.catalog.freeze();
    const before = proxies.catalog.httpRequests;
    const variables = { id: demoProducts[1]!.id };
    const answers = Array.from({ length: 5 }, () => graphql(gateway.url, { query: productById, variables, token: customerToken }));
    await waitFor('four queries to join the first', () => (joined(gateway).executions === 4 ? true : undefined));
    proxies.catalog.resume();
    for (const answer of await Promise.all(answers)) {
      expect(answer.errors).toBeUndefined();
      expect(answer.data).toEqual({ product: { name: demoProducts[1]!.name, price: demoProducts[1]!.price } });
    }
    expect(proxies.catalog.httpRequests - before).toBe(1);
  });

  it('shares identical in-flight subgraph fetches of one caller even when each query executes on its own', async () => {
    const gateway = await gatewayWith({ deduplication: { requests: false } });
    proxies.catalog.freeze();
    const before = proxies.catalog.httpRequests;
    const variables = { id: demoProducts[2]!.id };
    const answers = Array.from({ length: 4 }, () => graphql(gateway.url, { query: productById, variables, token: customerToken }));
    await waitFor('three fetches to join the first', () => (joined(gateway).fetches === 3 ? true : undefined));
    expect(joined(gateway).executions).toBe(0);
    proxies.catalog.resume();
    for (const answer of await Promise.all(answers)) expect(answer.data).toEqual({ product: { name: demoProducts[2]!.name, price: demoProducts[2]!.price } });
    expect(proxies.catalog.httpRequests - before).toBe(1);
  });

  it('never shares a query between two customers: each sees only its own data', async () => {
    const gateway = await gatewayWith();
    proxies.accounts.freeze();
    const before = proxies.accounts.httpRequests;
    const asCustomer = Array.from({ length: 3 }, () => graphql(gateway.url, { query: '{ me { email } }', token: customerToken }));
    const asAdmin = Array.from({ length: 3 }, () => graphql(gateway.url, { query: '{ me { email } }', token: adminToken }));
    await waitFor('two queries of each customer to join their first', () => (joined(gateway).executions === 4 ? true : undefined));
    proxies.accounts.resume();
    for (const answer of await Promise.all(asCustomer)) expect(answer.data).toEqual({ me: { email: demoUsers.customer.email } });
    for (const answer of await Promise.all(asAdmin)) expect(answer.data).toEqual({ me: { email: demoUsers.admin.email } });
    expect(proxies.accounts.httpRequests - before).toBe(2);
  });

  it('keeps SUBGRAPH_TIMEOUT and SUBGRAPH_UNAVAILABLE with their paths in production, naming no subgraph', async () => {
    const gateway = await gatewayWith({ production: true, resilience: { subgraphs: { inventory: { timeoutMs: 600, breakerFailures: 100, retries: 0 } } } });
    proxies.inventory.freeze();
    const frozen = await graphql(gateway.url, { query: productWithStock, variables: { id: demoProducts[0]!.id } });
    proxies.inventory.resume();
    proxies.inventory.pause();
    const dead = await graphql(gateway.url, { query: productWithStock, variables: { id: demoProducts[0]!.id } });
    for (const [response, code] of [
      [frozen, 'SUBGRAPH_TIMEOUT'],
      [dead, 'SUBGRAPH_UNAVAILABLE'],
    ] as const) {
      expect(response.data).toEqual({ product: { name: demoProducts[0]!.name, stock: null } });
      expect(response.errors).toEqual([{ message: expect.any(String), path: ['product', 'stock'], extensions: { code } }]);
      expect(JSON.stringify(response.errors)).not.toMatch(/inventory|127\.0\.0\.1|fetch failed|aborted/i);
    }
  });
});

describe('gateway readiness', () => {
  const subgraphs = ['accounts', 'catalog', 'inventory'];
  const down: SubgraphHealth = { status: 'down', details: { breaker: 'open' } };

  it('is ready when the supergraph is loaded and no subgraph is reported unwell', () => {
    expect(readinessOf(true, subgraphs, new Map())).toEqual({ status: 'ready', schema: 'loaded', subgraphs: { accounts: { status: 'up' }, catalog: { status: 'up' }, inventory: { status: 'up' } } });
  });

  it('is degraded, not unavailable, while some subgraphs still serve', () => {
    const readiness = readinessOf(true, subgraphs, new Map<string, SubgraphHealth>([['inventory', down], ['catalog', { status: 'degraded', details: { breaker: 'half-open' } }]]));
    expect(readiness.status).toBe('degraded');
    expect(readiness.subgraphs).toEqual({ accounts: { status: 'up' }, catalog: { status: 'degraded', breaker: 'half-open' }, inventory: { status: 'down', breaker: 'open' } });
  });

  it('is unavailable when every subgraph is down, or the supergraph is not loaded', () => {
    expect(readinessOf(true, subgraphs, new Map(subgraphs.map((name): [string, SubgraphHealth] => [name, down]))).status).toBe('unavailable');
    expect(readinessOf(false, subgraphs, new Map()).status).toBe('unavailable');
  });
});

describe('gateway resilience configuration', () => {
  it('reads every setting from the environment, and per subgraph from its _<NAME> suffix', () => {
    const options = resilienceOptionsFromEnv({ SUBGRAPH_TIMEOUT_MS: '4000', SUBGRAPH_MAX_QUEUE: '7', SUBGRAPH_TIMEOUT_MS_PAYMENTS: '8000', SUBGRAPH_RETRIES_ORDERS: '0' });
    expect(options.defaults).toEqual({ ...defaultSubgraphPolicy, timeoutMs: 4_000, maxQueue: 7 });
    expect(options.subgraphs).toEqual({ payments: { timeoutMs: 8_000 }, orders: { retries: 0 } });
  });

  it('refuses a setting that is not an integer, naming it', () => {
    expect(() => resilienceOptionsFromEnv({ SUBGRAPH_BREAKER_FAILURES_ORDERS: 'many' })).toThrow(/SUBGRAPH_BREAKER_FAILURES_ORDERS/);
  });
});
