/**
 * Defence in depth at the subgraphs (issue 9, item 4): they are reachable inside the network, so
 * they do not rely on the gateway. Real subgraphs, a real gateway, real PostgreSQL.
 */
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import { startGateway, type RunningGateway } from '../gateway/server.ts';
import { isStatementTimeout, prismaClientOptions } from '../platform/database/prisma.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import type { Identity } from '../platform/identity/identity.ts';
import { requestDeadlineHeader } from '../platform/subgraph/deadline.ts';
import { PrismaClient as CatalogClient } from '../prisma/catalog/client/client.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import type { RunningOrdersSubgraph } from '../subgraphs/orders/subgraph.ts';
import { errorCodes, graphql } from './support/graphql.ts';
import { advanceShipment, placeOrder } from './support/orders.ts';
import { startStack, type Stack } from './support/stack.ts';
import { recordSubscription, statusChanges, statusesHeardTwice, type Received } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

/** Short enough for a test to wait past it, long enough for every ordinary statement. */
const statementTimeoutMs = 1_500;

describe('defence in depth at the subgraphs', () => {
  let stack: Stack;
  let orders: RunningOrdersSubgraph;
  const clients: Client[] = [];
  const customerId = deterministicUuid('customer', demoUsers.customer.email);
  const adminId = deterministicUuid('customer', demoUsers.admin.email);
  const customer: Identity = { customerId, roles: ['customer'] };
  const admin: Identity = { customerId: adminId, roles: ['customer', 'admin'] };

  beforeAll(async () => {
    const before = process.env.DATABASE_STATEMENT_TIMEOUT_MS;
    process.env.DATABASE_STATEMENT_TIMEOUT_MS = String(statementTimeoutMs);
    try {
      // tok_slow keeps an order PENDING for a while before the saga confirms it.
      stack = await startStack({ eventBus: 'postgres', slowPaymentDelayMs: 2_500 });
    } finally {
      if (before === undefined) delete process.env.DATABASE_STATEMENT_TIMEOUT_MS;
      else process.env.DATABASE_STATEMENT_TIMEOUT_MS = before;
    }
    await seedDemoData(stack.databaseUrls);
    orders = stack.subgraphs.orders as RunningOrdersSubgraph;
  }, 120_000);
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.dispose()));
    await stack?.stop();
  });

  const feed = () => orders.projectionFeed;
  const ordersSocket = (connectionParams: Record<string, unknown>, closed?: (code: number) => void): Client => {
    const client = createClient({
      url: orders.url.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      retryAttempts: 0,
      lazy: true,
      connectionParams,
      on: { closed: (event) => closed?.((event as { code: number }).code) },
    });
    clients.push(client);
    return client;
  };
  /** A socket opened as the gateway opens it: signed for orders, as nobody in particular. */
  const gatewaySocket = async (closed?: (code: number) => void) => ordersSocket({ [gatewayIdentityHeader]: await stack.signer.sign({ customerId: null, roles: [] }, 'orders') }, closed);
  const signedFor = async (identity: Identity, subgraph: string, lifetime: 'call' | 'subscription' | { ttlSeconds: number } = 'subscription') => ({
    [gatewayIdentityHeader]: await stack.signer.sign(identity, subgraph, lifetime),
  });

  describe('signed identities are bound to the subgraph they were signed for', () => {
    it('refuses at orders, with 401 UNAUTHENTICATED, an identity the gateway signed for catalog', async () => {
      const forCatalog = await signedFor(admin, 'catalog', 'call');
      const atOrders = await graphql(stack.subgraphs.orders.url, { query: '{ orders(first: 1) { totalCount } }', headers: forCatalog });
      expect(atOrders.status).toBe(401);
      expect(errorCodes(atOrders)).toEqual(['UNAUTHENTICATED']);
      const atCatalog = await graphql(stack.subgraphs.catalog.url, { query: '{ products(first: 1) { totalCount } }', headers: forCatalog });
      expect(atCatalog.status).toBe(200);
      expect(atCatalog.data?.products.totalCount).toBeGreaterThan(0);
    });

    it("closes the orders socket with 4403 when its connection_init identity was signed for another subgraph", async () => {
      let closedWith: number | undefined;
      const client = ordersSocket(await signedFor(admin, 'catalog', 'call'), (code) => (closedWith = code));
      const received = recordSubscription(client, 'subscription { myOrderUpdates { id } }', {}, await signedFor(admin, 'orders'));
      await waitFor('the close', () => closedWith);
      expect(closedWith).toBe(4403);
      expect(received.data).toEqual([]);
    });
  });

  describe("a subgraph's WebSocket", () => {
    it('refuses a mutation or a query with BAD_REQUEST, even from a socket and an identity the gateway signed as admin', async () => {
      const socket = ordersSocket(await signedFor(admin, 'orders', 'call'));
      const asAdmin = await signedFor(admin, 'orders');
      const cancel = recordSubscription(socket, `mutation { cancelOrder(id: "${randomUUID()}") { id status } }`, {}, asAdmin);
      const read = recordSubscription(socket, '{ orders(first: 5) { totalCount } }', {}, asAdmin);
      await waitFor('both refused', () => (cancel.errors.length > 0 && read.errors.length > 0 ? true : undefined));
      expect(cancel.errors.map((error) => error.extensions?.code)).toEqual(['BAD_REQUEST']);
      expect(read.errors.map((error) => error.extensions?.code)).toEqual(['BAD_REQUEST']);
      expect([...cancel.data, ...read.data]).toEqual([]);
    });

    it("refuses a subscribe without an identity of its own with UNAUTHENTICATED: the socket's identity is never used for an operation", async () => {
      const socket = ordersSocket(await signedFor(customer, 'orders', 'call'));
      const without = recordSubscription(socket, 'subscription { myOrderUpdates { id } }');
      const forCatalog = recordSubscription(socket, 'subscription { myOrderUpdates { id } }', {}, await signedFor(customer, 'catalog'));
      const own = recordSubscription(socket, 'subscription { myOrderUpdates { id } }', {}, await signedFor(customer, 'orders'));
      onTestFinished(() => own.dispose());
      await waitFor('two refusals and one subscriber', () => (without.errors.length > 0 && forCatalog.errors.length > 0 && feed().subscriberCount >= 1 ? true : undefined));
      expect(without.errors.map((error) => error.extensions?.code)).toEqual(['UNAUTHENTICATED']);
      expect(forCatalog.errors.map((error) => error.extensions?.code)).toEqual(['UNAUTHENTICATED']);
      expect(own.errors).toEqual([]);
    });

    it('ends a subscription with IDENTITY_EXPIRED when its identity expires, and stops it at the subgraph', async () => {
      await waitFor('no subscriber left from earlier tests', () => (feed().subscriberCount === 0 ? true : undefined));
      const socket = await gatewaySocket();
      const started = Date.now();
      const received = recordSubscription(socket, 'subscription { myOrderUpdates { id } }', {}, await signedFor(customer, 'orders', { ttlSeconds: 2 }));
      await waitFor('subscribed at the subgraph', () => (feed().subscriberCount === 1 ? true : undefined));
      await waitFor('the expiry', () => (received.errors.length > 0 ? true : undefined));
      expect(Date.now() - started).toBeGreaterThanOrEqual(900); // JWT expiry is in whole seconds
      expect(received.errors.map((error) => error.extensions?.code)).toEqual(['IDENTITY_EXPIRED']);
      await waitFor('the subscription gone at the subgraph', () => (feed().subscriberCount === 0 ? true : undefined));
    });

    it('refuses a subscription over the subgraph’s token limit with TOO_MANY_TOKENS, before parsing all of it', async () => {
      const socket = await gatewaySocket();
      const huge = `subscription { myOrderUpdates { ${'id '.repeat(20_000)} } }`;
      const received = recordSubscription(socket, huge, {}, await signedFor(customer, 'orders'));
      await waitFor('the refusal', () => (received.errors.length > 0 ? true : undefined));
      expect(received.errors.map((error) => error.extensions?.code)).toEqual(['TOO_MANY_TOKENS']);
    });

    it('closes a socket that sends a message larger than the HTTP body limit (1 MiB) with 1009', async () => {
      let closedWith: number | undefined;
      const socket = await gatewaySocket((code) => (closedWith = code));
      const received = recordSubscription(socket, `subscription { myOrderUpdates { id } } # ${'x'.repeat(1_100_000)}`, {}, await signedFor(customer, 'orders'));
      await waitFor('the close', () => closedWith);
      expect(closedWith).toBe(1009);
      expect(received.data).toEqual([]);
    });
  });

  describe('subscriptions through the gateway, whose identities expire', () => {
    let gateway: RunningGateway;
    let customerToken: string;
    let adminToken: string;
    beforeAll(async () => {
      // Subscription identities of 6 s, renewed 3 s before they expire (the next leg then has
      // 2.25 s to be running at the subgraph before it takes over: ample, even on a busy machine).
      gateway = await startGateway({
        supergraphSdl: readFileSync(new URL('../schema/supergraph.graphql', import.meta.url), 'utf8'),
        port: 0,
        host: '127.0.0.1',
        subgraphUrls: Object.fromEntries(Object.entries(stack.subgraphs).map(([name, subgraph]) => [name, subgraph.url])),
        customerTokenPublicKey: stack.keys.authToken.publicKey,
        identitySigner: new GatewayIdentitySigner(stack.keys.gatewayIdentity.privateKey, { subscriptionTtlSeconds: 6 }),
        production: false,
        subscriptions: { upstream: { renewBeforeExpiryMs: 3_000 } },
      });
      customerToken = await stack.tokenFor({ customerId });
      adminToken = await stack.tokenFor({ customerId: adminId, roles: ['customer', 'admin'] });
    });
    afterAll(() => gateway?.stop());

    const connect = (token: string) => {
      const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${token}` } });
      clients.push(client);
      return client;
    };
    const statuses = (received: Received, field: string) => received.data.map((data) => data[field].status as string);
    /** Past `count` identity lifetimes (6 s): without renewal, the subgraph would have ended the subscription. */
    const renewalsSeen = async (count: number) => {
      const start = Date.now();
      await waitFor(`${count} identity lifetimes`, () => (Date.now() - start > count * 6_000 ? true : undefined), count * 6_000 + 5_000);
    };

    it('renews a subscription before its identity expires: the client sees every status once, no error, no gap', async () => {
      const id = await placeOrder(gateway.url, customerToken, { paymentToken: 'tok_slow' });
      const received = recordSubscription(connect(customerToken), 'subscription ($id: ID!) { orderStatusChanged(orderId: $id) { id status } }', { id });
      onTestFinished(() => received.dispose());
      await waitFor('CONFIRMED', () => (statuses(received, 'orderStatusChanged').includes('CONFIRMED') ? true : undefined));
      await renewalsSeen(1);
      await advanceShipment(gateway.url, adminToken, id, 'DISPATCHED');
      await renewalsSeen(1);
      await advanceShipment(gateway.url, adminToken, id, 'IN_TRANSIT');
      await advanceShipment(gateway.url, adminToken, id, 'DELIVERED');
      await waitFor('DELIVERED', () => (statuses(received, 'orderStatusChanged').includes('DELIVERED') ? true : undefined));
      expect(received.errors).toEqual([]);
      expect(received.completed).toBe(false);
      // Every status, and each version of the order at most once across the renewals (events that
      // keep the status tell of the payment or parcel).
      expect(statusChanges(statuses(received, 'orderStatusChanged'))).toEqual(['PENDING', 'CONFIRMED', 'SHIPPED', 'DELIVERED']);
      expect(await statusesHeardTwice((stack.subgraphs.orders as RunningOrdersSubgraph).store, id, statuses(received, 'orderStatusChanged'))).toEqual([]);
      expect(gateway.subscriptionStats().upstreamSubscriptions).toBe(1);
    }, 60_000);

    it('renews a subscription that sends only later changes (myOrderUpdates) without a repeated or a missed event', async () => {
      const received = recordSubscription(connect(customerToken), 'subscription { myOrderUpdates { id status } }');
      onTestFinished(() => received.dispose());
      await waitFor('subscribed', () => (gateway.subscriptionStats().upstreamSubscriptions >= 1 ? true : undefined));
      const id = await placeOrder(gateway.url, customerToken, { paymentToken: 'tok_visa' });
      await waitFor('CONFIRMED', () => (received.data.some((d) => d.myOrderUpdates.id === id && d.myOrderUpdates.status === 'CONFIRMED') ? true : undefined));
      await renewalsSeen(1);
      await advanceShipment(gateway.url, adminToken, id, 'DISPATCHED');
      await renewalsSeen(1);
      await advanceShipment(gateway.url, adminToken, id, 'IN_TRANSIT');
      await advanceShipment(gateway.url, adminToken, id, 'DELIVERED');
      await waitFor('DELIVERED', () => (received.data.some((d) => d.myOrderUpdates.id === id && d.myOrderUpdates.status === 'DELIVERED') ? true : undefined));
      expect(received.errors).toEqual([]);
      const mine = received.data.filter((d) => d.myOrderUpdates.id === id).map((d) => d.myOrderUpdates.status);
      expect(['PENDING,CONFIRMED,SHIPPED,DELIVERED', 'CONFIRMED,SHIPPED,DELIVERED']).toContain(statusChanges(mine).join(','));
      expect(await statusesHeardTwice((stack.subgraphs.orders as RunningOrdersSubgraph).store, id, mine)).toEqual([]);
    }, 60_000);
  });

  describe('a request the gateway gave up on', () => {
    /** Holds an exclusive lock on catalog's products table, so that the next statement on it waits. */
    async function lockProducts(): Promise<{ waiting: () => Promise<number>; release: () => Promise<void> }> {
      const client = new pg.Client({ connectionString: stack.databaseUrls.catalog });
      await client.connect();
      await client.query('BEGIN');
      await client.query('LOCK TABLE products IN ACCESS EXCLUSIVE MODE');
      return {
        waiting: async () =>
          (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0]!.n,
        release: async () => {
          await client.query('COMMIT');
          await client.end();
        },
      };
    }
    const nested = `{ products(first: 20) { edges { node { name category { name products(first: 20) { edges { node { name category { name } } } } } } } } }`;
    const asCaller = () => stack.signer.sign({ customerId: null, roles: [] }, 'catalog');

    it('is refused with DEADLINE_EXCEEDED (504) before it runs when its deadline has passed', async () => {
      const before = stack.subgraphs.catalog.statements.count;
      const response = await graphql(stack.subgraphs.catalog.url, { query: nested, headers: { [gatewayIdentityHeader]: await asCaller(), [requestDeadlineHeader]: String(Date.now() - 1) } });
      expect(response.status).toBe(504);
      expect(errorCodes(response)).toEqual(['DEADLINE_EXCEEDED']);
      expect(stack.subgraphs.catalog.statements.count).toBe(before);
    });

    it('stops resolving once its deadline passes mid-way: one DEADLINE_EXCEEDED error, and no SQL for the nested lists', async () => {
      const headers = { [gatewayIdentityHeader]: await asCaller() };
      const beforeWhole = stack.subgraphs.catalog.statements.count;
      const whole = await graphql(stack.subgraphs.catalog.url, { query: nested, headers });
      expect(whole.errors).toBeUndefined();
      const wholeStatements = stack.subgraphs.catalog.statements.count - beforeWhole;
      expect(wholeStatements).toBeGreaterThan(2);

      const lock = await lockProducts();
      const before = stack.subgraphs.catalog.statements.count;
      const deadline = Date.now() + 300;
      const cut = graphql(stack.subgraphs.catalog.url, { query: nested, headers: { ...headers, [requestDeadlineHeader]: String(deadline) } });
      // The first page waits on the lock until the deadline has passed, then gets its rows.
      await waitFor('the first page waiting on the lock', async () => ((await lock.waiting()) > 0 ? true : undefined));
      await waitFor('the deadline passed', () => (Date.now() > deadline + 50 ? true : undefined));
      await lock.release();
      const response = await cut;
      expect(errorCodes(response)).toEqual(['DEADLINE_EXCEEDED']);
      expect(stack.subgraphs.catalog.statements.count - before).toBeLessThan(wholeStatements);
      expect(stack.subgraphs.catalog.statements.count - before).toBeLessThanOrEqual(2);
    });

    it('is cut by the statement timeout with STATEMENT_TIMEOUT when a statement runs past DATABASE_STATEMENT_TIMEOUT_MS', async () => {
      const lock = await lockProducts();
      onTestFinished(() => lock.release());
      const started = Date.now();
      const response = await graphql(stack.subgraphs.catalog.url, { query: '{ products(first: 1) { totalCount } }', headers: { [gatewayIdentityHeader]: await asCaller() } });
      expect(Date.now() - started).toBeGreaterThanOrEqual(statementTimeoutMs - 100);
      expect(errorCodes(response)).toEqual(['STATEMENT_TIMEOUT']);
      // Nothing of the SQL, the table or the driver.
      expect(JSON.stringify(response.errors!.map((error) => [error.message, error.extensions]))).not.toMatch(/products|57014|SELECT|prisma|canceling/i);
    });

    it('has PostgreSQL cancel a slow statement (pg_sleep) of a Prisma client built with prismaClientOptions', async () => {
      const db = new CatalogClient(prismaClientOptions(stack.databaseUrls.catalog, { poolSize: 1, statementTimeoutMs: 200 }));
      onTestFinished(() => db.$disconnect());
      const started = Date.now();
      const failure = await db.$queryRaw`SELECT pg_sleep(10)`.then(() => undefined, (error: unknown) => error);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(isStatementTimeout(failure)).toBe(true);
    });
  });

  describe('operation limits and cost at a subgraph', () => {
    const asCaller = async () => ({ [gatewayIdentityHeader]: await stack.signer.sign({ customerId: null, roles: [] }, 'catalog') });
    /** products → category → products …, `levels` times: 4 levels of depth each. */
    const nestedProducts = (levels: number, first: number): string => {
      let selection = 'name';
      for (let level = 0; level < levels; level++) selection = `name category { products(first: ${first}) { edges { node { ${selection} } } } }`;
      return `{ products(first: ${first}) { edges { node { ${selection} } } } }`;
    };

    it('refuses a query nested deeper than the subgraph’s limit with OPERATION_TOO_DEEP (400), running no SQL', async () => {
      const before = stack.subgraphs.catalog.statements.count;
      const response = await graphql(stack.subgraphs.catalog.url, { query: nestedProducts(6, 1), headers: await asCaller() });
      expect(response.status).toBe(400);
      expect(errorCodes(response)).toEqual(['OPERATION_TOO_DEEP']);
      expect(stack.subgraphs.catalog.statements.count).toBe(before);
    });

    it('refuses the nested-products attack with OPERATION_TOO_COSTLY (400), running no SQL', async () => {
      const before = stack.subgraphs.catalog.statements.count;
      const response = await graphql(stack.subgraphs.catalog.url, { query: nestedProducts(3, 100), headers: await asCaller() });
      expect(response.status).toBe(400);
      expect(errorCodes(response)).toEqual(['OPERATION_TOO_COSTLY']);
      expect(stack.subgraphs.catalog.statements.count).toBe(before);
    });

    it('refuses a document over the token limit with TOO_MANY_TOKENS (400)', async () => {
      const response = await graphql(stack.subgraphs.catalog.url, { query: `{ products(first: [${'1 '.repeat(16_000)}]) { totalCount } }`, headers: await asCaller() });
      expect(response.status).toBe(400);
      expect(errorCodes(response)).toEqual(['TOO_MANY_TOKENS']);
    });

    it('refuses a fragment bomb with OPERATION_TOO_LARGE before validating it (validating it is the attack)', async () => {
      // Each fragment spreads the previous one 10 times: 10^12 fields once expanded, in 1 KiB.
      const fragments = ['fragment F0 on Product { name }'];
      for (let level = 1; level <= 12; level++) fragments.push(`fragment F${level} on Product { ${Array.from({ length: 10 }, () => `...F${level - 1}`).join(' ')} }`);
      const bomb = `{ products(first: 1) { edges { node { ...F12 } } } }\n${fragments.join('\n')}`;
      const since = performance.now();
      const response = await graphql(stack.subgraphs.catalog.url, { query: bomb, headers: await asCaller() });
      expect(response.status).toBe(400);
      expect(errorCodes(response)).toEqual(['OPERATION_TOO_LARGE']);
      expect(performance.now() - since).toBeLessThan(2_000);
    });

    it('answers a request without a gateway identity with 401 before looking at its document', async () => {
      const response = await graphql(stack.subgraphs.catalog.url, { query: nestedProducts(6, 1) });
      expect(response.status).toBe(401);
      expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
    });

    it('answers an ordinary nested query as before', async () => {
      const response = await graphql(stack.subgraphs.catalog.url, { query: nestedProducts(1, 5), headers: await asCaller() });
      expect(response.errors).toBeUndefined();
      expect(response.data?.products.edges.length).toBeGreaterThan(0);
    });
  });
});
