/**
 * Authorization directives at the gateway (docs/decisions/0026): `@authenticated`,
 * `@requiresScopes` and `@policy` declared by the subgraphs, composed into the supergraph, and
 * enforced by the gateway before any subgraph is called, as Apollo Router does: what the caller
 * may not see is removed, answered `null` with UNAUTHORIZED_FIELD_OR_TYPE at its path, the rest
 * is returned; an operation with nothing left runs nothing. The subgraphs keep their own checks.
 */
import { readFileSync } from 'node:fs';
import { buildSchema, parse, print } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { completeResult } from '../gateway/authorization/completion.ts';
import { filterOperation, type CallerAuthorization } from '../gateway/authorization/filter.ts';
import type { AuthorizationRules, Requirement } from '../gateway/authorization/rules.ts';
import { defaultPolicies, type PolicyCaller } from '../gateway/plugins/authorization.ts';
import type { GatewayPlugin } from '../gateway/pipeline/plugin.ts';
import { startGateway, type RunningGateway } from '../gateway/server.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import { demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { errorCodes, graphql } from './support/graphql.ts';
import { placeOrder } from './support/orders.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { recordSubscription } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

const unauthorized = 'UNAUTHORIZED_FIELD_OR_TYPE';

/** Counts the gateway's calls to each subgraph (fetches and upstream subscriptions). */
function subgraphCallCounter() {
  const calls: string[] = [];
  const plugin: GatewayPlugin = {
    name: 'subgraph-call-counter',
    onSubgraphRequest(request) {
      if (request.kind !== 'socket') calls.push(request.subgraph);
    },
  };
  return { plugin, calls };
}

describe('authorization directives at the gateway', () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let calls: string[];
  let customerToken: string;
  let adminToken: string;
  const clients: Client[] = [];
  const customerId = deterministicUuid('customer', demoUsers.customer.email);
  const adminId = deterministicUuid('customer', demoUsers.admin.email);
  const product = demoProducts[0]!;
  const policyCalls: PolicyCaller[] = [];

  beforeAll(async () => {
    stack = await startStack();
    await seedDemoData(stack.databaseUrls);
    const counter = subgraphCallCounter();
    calls = counter.calls;
    gateway = await startGateway(
      gatewayOptionsFor(stack, {
        plugins: [counter.plugin],
        authorization: {
          policies: {
            // The platform's rule, and a deployment's own on top: no owner data for a caller the header marks.
            owner: (caller) => {
              policyCalls.push(caller);
              return caller.headers['x-data-access'] !== 'suspended' && defaultPolicies.owner!(caller);
            },
          },
        },
      }),
    );
    customerToken = await stack.tokenFor({ customerId });
    adminToken = await stack.tokenFor({ customerId: adminId, roles: ['customer', 'admin'] });
  });
  afterAll(async () => {
    for (const client of clients) await client.dispose();
    await gateway?.stop();
    await stack?.stop();
  });

  const connect = (token: string | undefined) => {
    const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, ...(token ? { connectionParams: { Authorization: `Bearer ${token}` } } : {}) });
    clients.push(client);
    return client;
  };

  /** A query about the first demo product (`$id`), as the caller of `token`. */
  const aboutProduct = (query: string, token: string) => graphql(gateway.url, { query, variables: { id: product.id }, token });

  it('composes the directives into the supergraph, linked to their specs, and keeps them out of the API schema', () => {
    const supergraph = readFileSync(new URL('../schema/supergraph.graphql', import.meta.url), 'utf8');
    expect(supergraph).toContain('@link(url: "https://specs.apollo.dev/authenticated/v0.1", for: SECURITY)');
    expect(supergraph).toContain('@link(url: "https://specs.apollo.dev/requiresScopes/v0.1", for: SECURITY)');
    expect(supergraph).toContain('@link(url: "https://specs.apollo.dev/policy/v0.1", for: SECURITY)');
    expect(supergraph).toMatch(/ me: Customer @join__field\(graph: ACCOUNTS\) @authenticated/);
    expect(supergraph).toMatch(/ createProduct\(input: CreateProductInput!\): Product! @join__field\(graph: CATALOG\) @requiresScopes\(scopes: \[\["admin"\]\]\)/);
    expect(supergraph).toMatch(/ payment: Payment @join__field\(graph: PAYMENTS\) @policy\(policies: \[\["owner"\]\]\)/);
    const api = readFileSync(new URL('../schema/api.graphql', import.meta.url), 'utf8');
    expect(api).not.toMatch(/@authenticated|@requiresScopes|@policy/);
  });

  it("gives a customer partial data for a query with an admin-only field: null where it was (propagated to the nearest nullable field) and the coded error at its path", async () => {
    const before = calls.length;
    const response = await aboutProduct('query($id: ID!) { me { name } product(id: $id) { name price stock { available reserved } } }', customerToken);
    expect(response.status).toBe(200);
    // `reserved` is Int!: its null makes `stock` (nullable) null, as GraphQL propagates nulls.
    expect(response.data).toEqual({ me: { name: demoUsers.customer.name }, product: { name: product.name, price: product.price, stock: null } });
    expect(response.errors).toEqual([{ message: 'Unauthorized field or type', path: ['product', 'stock', 'reserved'], extensions: { code: unauthorized } }]);
    // The fields left still came from their subgraphs: accounts, catalog, inventory (for `available`).
    expect(new Set(calls.slice(before))).toEqual(new Set(['accounts', 'catalog', 'inventory']));
  });

  it('answers an anonymous caller null and the coded error for @authenticated data, and the rest of its query', async () => {
    const response = await graphql(gateway.url, { query: '{ me { email } account: me { name } product(id: "' + product.id + '") { name } }' });
    expect(response.status).toBe(200);
    expect(response.data).toEqual({ me: null, account: null, product: { name: product.name } });
    expect(response.errors?.map((error) => [error.path, error.extensions?.code])).toEqual([
      [['me'], unauthorized],
      [['account'], unauthorized],
    ]);
  });

  it('makes no subgraph call for what it removed: a customer placing an admin mutation is refused with nothing run', async () => {
    const before = calls.length;
    const response = await aboutProduct('mutation($id: ID!) { discontinueProduct(id: $id) { id discontinued } }', customerToken);
    expect(response.status).toBe(200);
    // Product! is non-null: with nothing left, `data` is null, as Router answers.
    expect(response.data).toBeNull();
    expect(response.errors?.map((error) => [error.path, error.extensions?.code])).toEqual([[['discontinueProduct'], unauthorized]]);
    expect(calls.length).toBe(before);
    const still = await graphql(gateway.url, { query: `{ product(id: "${product.id}") { discontinued } }` });
    expect(still.data).toEqual({ product: { discontinued: false } });
  });

  it('refuses an operation with nothing left, with each removed root field null and the coded error at its path', async () => {
    const before = calls.length;
    const response = await graphql(gateway.url, { query: `query Mine { me { name } order(id: "${deterministicUuid('order', 'none')}") { id } }` });
    expect(response.data).toEqual({ me: null, order: null });
    expect(errorCodes(response)).toEqual([unauthorized, unauthorized]);
    expect(calls.length).toBe(before);
  });

  it('gives an admin everything it asks for', async () => {
    const response = await aboutProduct('query($id: ID!) { me { name } product(id: $id) { name stock { available reserved } } }', adminToken);
    expect(response.errors).toBeUndefined();
    expect(response.data).toEqual({ me: { name: demoUsers.admin.name }, product: { name: product.name, stock: { available: product.stock, reserved: 0 } } });
  });

  it('decides a @policy by the function configured for it, and removes only the fields it guards', async () => {
    const orderId = await placeOrder(gateway.url, customerToken);
    const query = 'query($id: ID!) { order(id: $id) { id payment { status } shipment { status } } }';
    policyCalls.length = 0;
    const allowed = await graphql(gateway.url, { query, variables: { id: orderId }, token: customerToken });
    expect(allowed.errors).toBeUndefined();
    expect(policyCalls.at(-1)?.identity.customerId).toBe(customerId);

    const before = calls.length;
    const suspended = await graphql(gateway.url, { query, variables: { id: orderId }, token: customerToken, headers: { 'x-data-access': 'suspended' } });
    expect(suspended.data).toEqual({ order: { id: orderId, payment: null, shipment: null } });
    expect(suspended.errors?.map((error) => [error.path, error.extensions?.code])).toEqual([
      [['order', 'payment'], unauthorized],
      [['order', 'shipment'], unauthorized],
    ]);
    // Only orders was asked: payments and shipping, whose fields were removed, were not called.
    expect(calls.slice(before)).toEqual(['orders']);
  });

  it('filters a subscription the same way: its forbidden fields in every event, and a subscription with nothing left is refused', async () => {
    const orderId = await placeOrder(gateway.url, customerToken);
    const watch = 'subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status items { product { name stock { available reserved } } } } }';
    const customer = recordSubscription(connect(customerToken), watch, { id: orderId });
    await waitFor('the first event', () => (customer.data.length > 0 ? true : undefined));
    customer.dispose();
    expect(customer.data[0]!.orderStatusChanged).toMatchObject({ id: orderId, items: [{ product: { name: expect.any(String), stock: null } }] });
    expect(customer.errors.map((error) => [(error as { path?: unknown }).path, error.extensions?.code])).toContainEqual([['orderStatusChanged', 'items', '@', 'product', 'stock', 'reserved'], unauthorized]);

    const before = calls.length;
    const anonymous = recordSubscription(connect(undefined), 'subscription { myOrderUpdates { id } }');
    await waitFor('the refusal', () => (anonymous.completed || anonymous.errors.length > 0 ? true : undefined));
    expect(anonymous.data).toEqual([]);
    expect(anonymous.errors.map((error) => [(error as { path?: unknown }).path, error.extensions?.code])).toEqual([[['myOrderUpdates'], unauthorized]]);
    expect(calls.length).toBe(before);
  });

  it('still refuses at the subgraph a caller the gateway would have stopped (defence in depth)', async () => {
    const response = await graphql(stack.subgraphs.catalog.url, {
      query: 'mutation($id: ID!) { discontinueProduct(id: $id) { id } }',
      variables: { id: product.id },
      headers: { [gatewayIdentityHeader]: await stack.signer.sign({ customerId, roles: ['customer'] }, 'catalog') },
    });
    expect(errorCodes(response)).toEqual(['FORBIDDEN']);
  });
});

describe('filtering an operation for a caller (fragments, interfaces, aliases)', () => {
  const schema = buildSchema(`
    interface Node { id: ID! secret: String }
    type Customer implements Node { id: ID! secret: String orders: [Int!] }
    type Product implements Node { id: ID! secret: String name: String }
    type Vault { code: String }
    type Query { node(id: ID!): Node nodes: [Node]! vault: Vault }
  `);
  const authenticated: Requirement = { authenticated: true, scopes: [], policies: [] };
  const admin: Requirement = { authenticated: false, scopes: [[['admin']]], policies: [] };
  const rules: AuthorizationRules = {
    types: new Map([['Vault', authenticated]]),
    fields: new Map([
      ['Customer.orders', authenticated],
      ['Customer.secret', admin],
    ]),
    policies: new Set(),
  };
  const anonymous: CallerAuthorization = { authenticated: false, scopes: new Set(), policies: new Set() };
  const customer: CallerAuthorization = { authenticated: true, scopes: new Set(['customer']), policies: new Set() };
  const filter = (caller: CallerAuthorization, source: string) => filterOperation(schema, rules, caller, parse(source), null);

  it('removes a field under a type condition only from objects of that type, telling them apart by a __typename it asks for and hides again', () => {
    const filtered = filter(anonymous, '{ nodes { id ... on Customer { orders } ...P } } fragment P on Product { name }');
    expect(print(filtered.document!)).toContain('_authorization_typename: __typename');
    expect(print(filtered.document!)).not.toContain('orders');
    const result = completeResult({ data: { nodes: [{ id: 'c', _authorization_typename: 'Customer' }, { id: 'p', name: 'Lamp', _authorization_typename: 'Product' }] } }, filtered);
    expect(result.data).toEqual({ nodes: [{ id: 'c', orders: null }, { id: 'p', name: 'Lamp' }] });
    expect(result.errors!.map((error) => [error.path, error.extensions.code])).toEqual([[['nodes', '@', 'orders'], unauthorized]]);
  });

  it('removes an interface field that one of its implementations restricts, whoever the object turns out to be', () => {
    const filtered = filter(customer, '{ node(id: "p") { id secret } }');
    const result = completeResult({ data: { node: { id: 'p' } } }, filtered);
    expect(result.data).toEqual({ node: { id: 'p', secret: null } });
    expect(result.errors!.map((error) => error.path)).toEqual([['node', 'secret']]);
    expect(filter({ ...customer, scopes: new Set(['admin']) }, '{ node(id: "p") { id secret } }').removed).toEqual([]);
  });

  it('removes a field whose type is restricted, and a field with nothing left under it, with the variables only it used', () => {
    const filtered = filter(anonymous, 'query($v: ID!) { safe: vault { code } mine: node(id: $v) { ... on Customer { orders } } other: node(id: "p") { id } }');
    expect(print(filtered.document!)).not.toContain('$v');
    const result = completeResult({ data: { other: { id: 'p' } } }, filtered);
    expect(result.data).toEqual({ safe: null, mine: null, other: { id: 'p' } });
    expect(result.errors!.map((error) => error.path)).toEqual([['safe'], ['mine', 'orders']]);
  });

  it('leaves nothing to execute when every root field is removed', () => {
    const filtered = filter(anonymous, '{ vault { code } }');
    expect(filtered.document).toBeNull();
    expect(completeResult({ data: {} }, filtered).data).toEqual({ vault: null });
  });
});
