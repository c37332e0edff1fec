import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '../platform/events/envelope.ts';
import type { Subscription } from '../platform/events/bus.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { demoCategories, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { startStack, type Stack, type TestBusKind } from './support/stack.ts';
import { waitFor } from './support/wait.ts';


async function outboxCount(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return Number((await client.query('SELECT count(*) AS n FROM outbox_events')).rows[0].n);
  } finally {
    await client.end();
  }
}

describe.each<TestBusKind>(['postgres', 'nats'])('domain events between contexts, on the %s bus', (busKind) => {
  let stack: Stack;
  let adminToken: string;
  let observer: Subscription;
  const observed: EventEnvelope[] = [];

  beforeAll(async () => {
    stack = await startStack({ eventBus: busKind });
    await seedDemoData(stack.databaseUrls);
    adminToken = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] });
    // Another context listening in, as orders will: it sees what the catalog and inventory publish.
    observer = await stack.eventBus!.subscribe(
      `observer${randomBytes(3).toString('hex')}`,
      { types: ['ProductCreated', 'ProductPriceChanged', 'ProductDiscontinued', 'StockAdjusted'] },
      async (event) => void observed.push(event),
    );
  });
  afterAll(async () => {
    await observer?.stop();
    await stack?.stop();
  });

  const eventsOf = (aggregateId: string) => observed.filter((event) => event.aggregateId === aggregateId);

  async function createProduct(sku: string, requestId?: string): Promise<string> {
    const response = await graphql(stack.gatewayUrl, {
      query: 'mutation ($input: CreateProductInput!) { createProduct(input: $input) { id } }',
      variables: { input: { sku, name: `Product ${sku}`, price: 1999, currency: 'EUR', categoryId: demoCategories[0]!.id } },
      token: adminToken,
      ...(requestId ? { headers: { 'x-request-id': requestId } } : {}),
    });
    expect(response.errors).toBeUndefined();
    return response.data!.createProduct.id;
  }

  it('shows stock { available: 0 } for a product an admin just created, once inventory heard of it', async () => {
    const id = await createProduct(`EVT-${randomBytes(3).toString('hex').toUpperCase()}`);
    const stock = await waitFor('inventory to create the stock record', async () => {
      const response = await graphql(stack.gatewayUrl, { query: 'query ($id: ID!) { product(id: $id) { stock { available reserved } inStock } }', variables: { id }, token: adminToken }); // reserved: admins only
      return response.data?.product.stock ?? undefined;
    });
    expect(stock).toEqual({ available: 0, reserved: 0 });
  });

  it('publishes ProductCreated, ProductPriceChanged and ProductDiscontinued with the product versions 1, 2 and 3', async () => {
    const id = await createProduct(`EVT-${randomBytes(3).toString('hex').toUpperCase()}`);
    const reprice = await graphql(stack.gatewayUrl, { query: 'mutation ($id: ID!) { updateProductPrice(id: $id, price: 2499) { price } }', variables: { id }, token: adminToken });
    expect(reprice.errors).toBeUndefined();
    const discontinue = await graphql(stack.gatewayUrl, { query: 'mutation ($id: ID!) { discontinueProduct(id: $id) { discontinued } }', variables: { id }, token: adminToken });
    expect(discontinue.data).toEqual({ discontinueProduct: { discontinued: true } });

    const events = await waitFor('three product events', async () => (eventsOf(id).length >= 3 ? eventsOf(id) : undefined));
    expect(events.map((event) => [event.type, event.aggregateVersion])).toEqual([
      ['ProductCreated', 1],
      ['ProductPriceChanged', 2],
      ['ProductDiscontinued', 3],
    ]);
    expect(events[1]!.payload).toEqual({ productId: id, price: 2499, previousPrice: 1999, currency: 'EUR' });
    expect(events.every((event) => event.source === 'catalog' && event.aggregateType === 'Product')).toBe(true);
  });

  it('publishes StockAdjusted when an admin adjusts stock', async () => {
    const id = await createProduct(`EVT-${randomBytes(3).toString('hex').toUpperCase()}`);
    await waitFor('the stock record', async () => ((await graphql(stack.gatewayUrl, { query: `{ product(id: "${id}") { stock { available } } }` })).data?.product.stock ? true : undefined));
    const adjusted = await graphql(stack.gatewayUrl, { query: `mutation { adjustStock(productId: "${id}", delta: 7, reason: "delivery") { stock { available } } }`, token: adminToken });
    expect(adjusted.data).toEqual({ adjustStock: { stock: { available: 7 } } });
    const event = await waitFor('StockAdjusted', async () => eventsOf(id).find((e) => e.type === 'StockAdjusted'));
    expect(event).toMatchObject({ source: 'inventory', aggregateType: 'StockItem', aggregateVersion: 1, payload: { productId: id, delta: 7, reason: 'delivery', available: 7, reserved: 0 } });
  });

  it('carries the id of the request that caused an event as its correlation and causation id', async () => {
    const requestId = `req-${randomBytes(6).toString('hex')}`;
    const id = await createProduct(`EVT-${randomBytes(3).toString('hex').toUpperCase()}`, requestId);
    const created = await waitFor('ProductCreated', async () => eventsOf(id).find((e) => e.type === 'ProductCreated'));
    expect(created.correlationId).toBe(requestId);
    expect(created.causationId).toBe(requestId);
  });

  it('writes no event when the change is refused', async () => {
    const sku = `EVT-${randomBytes(3).toString('hex').toUpperCase()}`;
    await createProduct(sku);
    const before = await outboxCount(stack.databaseUrls.catalog);
    const duplicate = await graphql(stack.gatewayUrl, {
      query: 'mutation ($input: CreateProductInput!) { createProduct(input: $input) { id } }',
      variables: { input: { sku, name: 'Twin', price: 1, currency: 'EUR', categoryId: demoCategories[0]!.id } },
      token: adminToken,
    });
    expect(duplicate.errors?.[0]?.extensions?.code).toBe('CONFLICT');
    expect(await outboxCount(stack.databaseUrls.catalog)).toBe(before);
  });
});
