import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromGlobalId, toGlobalId } from '../platform/graphql/global-ids.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoCategories, demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { errorCodes, graphql } from './support/graphql.ts';
import { placeOrder } from './support/orders.ts';
import { startStack, type Stack } from './support/stack.ts';

const customerId = deterministicUuid('customer', demoUsers.customer.email);
const adminId = deterministicUuid('customer', demoUsers.admin.email);
const product = demoProducts[0]!;
const category = demoCategories[0]!;

const nodeQuery = `query ($id: ID!) {
  node(id: $id) {
    __typename id nodeId
    ... on Product { name price }
    ... on Category { slug }
    ... on Customer { email }
    ... on Order { status total customer { id } }
  }
}`;

describe('global ids (unit)', () => {
  it('round-trips every entity type and stays opaque (no UUID or type name in clear)', () => {
    for (const type of ['Customer', 'Product', 'Category', 'Order'] as const) {
      const id = deterministicUuid('test', type);
      const globalId = toGlobalId(type, id);
      expect(globalId).not.toContain(id);
      expect(globalId).not.toContain(type);
      expect(fromGlobalId(globalId)).toEqual({ __typename: type, id });
    }
  });

  it('rejects forged ids: unknown type, not a UUID, non-canonical encoding, garbage', () => {
    const id = deterministicUuid('test', 'x');
    for (const forged of [
      Buffer.from(`Payment:${id}`).toString('base64'),
      Buffer.from('Order:1').toString('base64'),
      Buffer.from(`Order:${id.toUpperCase()}`).toString('base64'),
      toGlobalId('Product', id).replace(/=+$/, ''),
      `${toGlobalId('Order', id)}\n`,
      id,
      '',
      '%%%',
    ]) {
      expect(fromGlobalId(forged), forged).toBeUndefined();
    }
  });
});

describe('node(id:) through the gateway', () => {
  let stack: Stack;
  let customerToken: string;
  let adminToken: string;
  let otherToken: string;
  let orderId: string;

  beforeAll(async () => {
    stack = await startStack();
    await seedDemoData(stack.databaseUrls);
    customerToken = await stack.tokenFor({ customerId });
    adminToken = await stack.tokenFor({ customerId: adminId, roles: ['customer', 'admin'] });
    otherToken = await stack.tokenFor({ customerId: deterministicUuid('customer', 'someone-else@example.com') });
    orderId = await placeOrder(stack.gatewayUrl, customerToken);
  });
  afterAll(() => stack?.stop());

  const node = (id: string, token?: string) => graphql(stack.gatewayUrl, { query: nodeQuery, variables: { id }, ...(token ? { token } : {}) });

  it('gives every entity a nodeId that node(id:) resolves back to the same object', async () => {
    const read = await graphql(stack.gatewayUrl, {
      query: `query ($product: ID!, $order: ID!) {
        product(id: $product) { id nodeId category { id nodeId } }
        me { id nodeId }
        order(id: $order) { id nodeId }
      }`,
      variables: { product: product.id, order: orderId },
      token: customerToken,
    });
    expect(read.errors).toBeUndefined();
    const { product: p, me, order } = read.data!;
    expect(p.id).toBe(product.id);
    expect(fromGlobalId(p.nodeId)).toEqual({ __typename: 'Product', id: product.id });
    expect(fromGlobalId(p.category.nodeId)).toEqual({ __typename: 'Category', id: p.category.id });
    expect(fromGlobalId(me.nodeId)).toEqual({ __typename: 'Customer', id: customerId });
    expect(fromGlobalId(order.nodeId)).toEqual({ __typename: 'Order', id: orderId });

    const byNode = await Promise.all([p.nodeId, p.category.nodeId, me.nodeId, order.nodeId].map((id) => node(id, customerToken)));
    for (const response of byNode) expect(response.errors).toBeUndefined();
    expect(byNode.map((response) => response.data!.node)).toEqual([
      { __typename: 'Product', id: product.id, nodeId: p.nodeId, name: product.name, price: expect.any(Number) },
      { __typename: 'Category', id: p.category.id, nodeId: p.category.nodeId, slug: expect.any(String) },
      { __typename: 'Customer', id: customerId, nodeId: me.nodeId, email: demoUsers.customer.email },
      { __typename: 'Order', id: orderId, nodeId: order.nodeId, status: expect.any(String), total: expect.any(Number), customer: { id: customerId } },
    ]);
  });

  it('resolves a category by its global id', async () => {
    const response = await node(toGlobalId('Category', category.id));
    expect(response.errors).toBeUndefined();
    expect(response.data!.node).toMatchObject({ __typename: 'Category', id: category.id, slug: category.slug });
  });

  it('answers a forged or malformed global id with null and NOT_FOUND', async () => {
    for (const forged of ['not-a-global-id', Buffer.from(`Payment:${orderId}`).toString('base64'), orderId]) {
      const response = await node(forged, customerToken);
      expect(response.data, forged).toEqual({ node: null });
      expect(errorCodes(response), forged).toEqual(['NOT_FOUND']);
    }
  });

  it('answers a well-formed global id of nothing with null and no error, as product(id:) and order(id:) answer an unknown id', async () => {
    const missing = deterministicUuid('missing', 'node');
    for (const type of ['Product', 'Category', 'Order', 'Customer'] as const) {
      const response = await node(toGlobalId(type, missing), adminToken);
      expect(response.data, type).toEqual({ node: null });
      expect(response.errors, type).toBeUndefined();
    }
    const byId = await graphql(stack.gatewayUrl, { query: 'query ($id: ID!) { order(id: $id) { id } }', variables: { id: missing }, token: adminToken });
    expect(byId).toMatchObject({ data: { order: null } });
    expect(byId.errors).toBeUndefined();
  });

  it("keeps ownership: another customer's order by global id gets what order(id:) gives, null and FORBIDDEN", async () => {
    const byId = await graphql(stack.gatewayUrl, { query: 'query ($id: ID!) { order(id: $id) { id status } }', variables: { id: orderId }, token: otherToken });
    const byNode = await node(toGlobalId('Order', orderId), otherToken);
    expect(byId.data).toEqual({ order: null });
    expect(errorCodes(byId)).toEqual(['FORBIDDEN']);
    expect(byNode.data).toEqual({ node: null });
    expect(errorCodes(byNode)).toEqual(['FORBIDDEN']);
  });

  it("keeps ownership of customers: another customer's account by global id is null and FORBIDDEN; an admin reads it", async () => {
    const globalId = toGlobalId('Customer', customerId);
    const byOther = await node(globalId, otherToken);
    expect(byOther.data).toEqual({ node: null });
    expect(errorCodes(byOther)).toEqual(['FORBIDDEN']);
    const byAdmin = await node(globalId, adminToken);
    expect(byAdmin.errors).toBeUndefined();
    expect(byAdmin.data!.node.email).toBe(demoUsers.customer.email);
  });

  it('answers an anonymous caller asking for an order by global id as order(id:) does: null and UNAUTHENTICATED', async () => {
    const response = await node(toGlobalId('Order', orderId));
    expect(response.data).toEqual({ node: null });
    expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
  });

  it("runs Relay's refetch query for a fragment on an order (what relay-compiler generates with nodeInterfaceIdField: nodeId)", async () => {
    const refetch = `query OrderStatusRefetchQuery($nodeId: ID!) {
      node(id: $nodeId) { __typename ...OrderStatus_order nodeId }
    }
    fragment OrderStatus_order on Order { status itemCount items { quantity product { nodeId name } } nodeId }`;
    const nodeId = toGlobalId('Order', orderId);
    const response = await graphql(stack.gatewayUrl, { query: refetch, variables: { nodeId }, token: customerToken });
    expect(response.errors).toBeUndefined();
    expect(response.data!.node).toEqual({
      __typename: 'Order',
      nodeId,
      status: expect.any(String),
      itemCount: 1,
      items: [{ quantity: 1, product: { nodeId: expect.any(String), name: expect.any(String) } }],
    });
  });

  it("leaves Apollo Client's cache ids as they were: order(id:) and node(id:) fill the same Order:<uuid> entry", async () => {
    const client = new ApolloClient({
      link: new HttpLink({ uri: stack.gatewayUrl, headers: { authorization: `Bearer ${customerToken}` } }),
      cache: new InMemoryCache({ possibleTypes: { Node: ['Customer', 'Product', 'Category', 'Order'] } }),
    });
    try {
      await client.query({ query: gql`query ($id: ID!) { order(id: $id) { id status } }`, variables: { id: orderId } });
      await client.query({ query: gql`query ($id: ID!) { node(id: $id) { id ... on Order { nodeId total } } }`, variables: { id: toGlobalId('Order', orderId) } });
      const cache = client.cache.extract() as Record<string, Record<string, unknown>>;
      expect(Object.keys(cache).filter((key) => key.startsWith('Order:'))).toEqual([`Order:${orderId}`]);
      expect(cache[`Order:${orderId}`]).toMatchObject({ id: orderId, status: expect.any(String), nodeId: toGlobalId('Order', orderId), total: expect.any(Number) });
    } finally {
      client.stop();
    }
  });

  it('nodes(ids:) answers mixed types in order, with null and NOT_FOUND at the index of each missing one', async () => {
    const ids = [toGlobalId('Order', orderId), toGlobalId('Product', product.id), 'forged', toGlobalId('Customer', customerId)];
    const response = await graphql(stack.gatewayUrl, {
      query: 'query ($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Product { name } ... on Order { status } ... on Customer { name } } }',
      variables: { ids },
      token: customerToken,
    });
    expect(response.data!.nodes).toEqual([
      { __typename: 'Order', id: orderId, status: expect.any(String) },
      { __typename: 'Product', id: product.id, name: product.name },
      null,
      { __typename: 'Customer', id: customerId, name: demoUsers.customer.name },
    ]);
    expect(response.errors?.map((error) => [error.path, error.extensions?.code])).toEqual([[['nodes', 2], 'NOT_FOUND']]);
  });

  it('nodes(ids:) refuses more than 100 ids with BAD_USER_INPUT', async () => {
    const response = await graphql(stack.gatewayUrl, {
      query: 'query ($ids: [ID!]!) { nodes(ids: $ids) { id } }',
      variables: { ids: Array.from({ length: 101 }, () => toGlobalId('Product', product.id)) },
    });
    expect(errorCodes(response)).toContain('BAD_USER_INPUT');
  });

  it('fetches many nodes of one type with one SQL statement in the owning subgraph', async () => {
    const ids = demoProducts.slice(0, 30).map((p) => toGlobalId('Product', p.id));
    const catalogBefore = stack.subgraphs.catalog.statements.count;
    const inventoryBefore = stack.subgraphs.inventory.statements.count;
    const response = await graphql(stack.gatewayUrl, {
      query: 'query ($ids: [ID!]!) { nodes(ids: $ids) { ... on Product { name stock { available } } } }',
      variables: { ids },
    });
    expect(response.errors).toBeUndefined();
    expect(response.data!.nodes).toHaveLength(30);
    expect(stack.subgraphs.catalog.statements.count - catalogBefore).toBe(1);
    expect(stack.subgraphs.inventory.statements.count - inventoryBefore).toBe(1);
  });

  it("fetches several orders by global id with one fetch and one SQL statement in orders", async () => {
    const orderIds = [orderId, await placeOrder(stack.gatewayUrl, customerToken), await placeOrder(stack.gatewayUrl, customerToken)];
    // Orders' own background work (projection, outbox relay) also sends statements to its database
    // while this runs: the fetch is measured three times and the smallest count kept. Unbatched
    // fetches would cost one statement per order every time.
    const counts: number[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const ordersBefore = stack.subgraphs.orders.statements.count;
      const response = await graphql(stack.gatewayUrl, {
        query: 'query ($ids: [ID!]!) { nodes(ids: $ids) { ... on Order { id total } } }',
        variables: { ids: orderIds.map((id) => toGlobalId('Order', id)) },
        token: customerToken,
      });
      counts.push(stack.subgraphs.orders.statements.count - ordersBefore);
      expect(response.errors).toBeUndefined();
      expect(response.data!.nodes.map((order: { id: string }) => order.id)).toEqual(orderIds);
    }
    expect(Math.min(...counts)).toBe(1);
  });
});
