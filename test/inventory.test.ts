/**
 * Inventory as a web client meets it: stock joined onto catalog products by the gateway, and
 * admins adjusting stock. Tests that adjust stock use products of their own (created through
 * the gateway, named "Zz …" so they sort after the seeded ones) with a stock row arranged in
 * the inventory database.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoCategories, demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { connectInventoryDatabase, type InventoryDatabase } from '../subgraphs/inventory/infrastructure/database.ts';
import { errorCodes, graphql, type GraphQLResponse } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';

let stack: Stack;
let db: InventoryDatabase;
const adminId = deterministicUuid('customer', demoUsers.admin.email);
let adminToken: string;
let customerToken: string;

beforeAll(async () => {
  stack = await startStack();
  await seedDemoData(stack.databaseUrls);
  db = connectInventoryDatabase(stack.databaseUrls.inventory).db;
  adminToken = await stack.tokenFor({ customerId: adminId, roles: ['customer', 'admin'] });
  customerToken = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email), roles: ['customer'] });
});

afterAll(async () => {
  await db?.$disconnect();
  await stack?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const adjustStockMutation = /* GraphQL */ `
  mutation AdjustStock($productId: ID!, $delta: Int!, $reason: String!) {
    adjustStock(productId: $productId, delta: $delta, reason: $reason) { id name stock { available reserved } inStock }
  }
`;

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function adjustStock(variables: { productId: string; delta: number; reason?: string }, token: string | null = adminToken): Promise<GraphQLResponse> {
  return graphql(stack.gatewayUrl, {
    query: adjustStockMutation,
    variables: { reason: 'stock take', ...variables },
    ...(token ? { token } : {}),
  });
}

/** A product of the catalog (created through the gateway) and, unless `units` is null, its stock row. */
async function productWithStock(units: number | null): Promise<{ id: string; name: string }> {
  const name = `Zz Stock Test ${randomUUID().slice(0, 8)}`;
  const res = await graphql(stack.gatewayUrl, {
    query: 'mutation($input: CreateProductInput!) { createProduct(input: $input) { id name } }',
    variables: { input: { sku: `TST-${randomUUID().slice(0, 8)}`, name, price: 1_500, currency: 'EUR', categoryId: demoCategories[0]!.id } },
    token: adminToken,
  });
  expect(res.errors).toBeUndefined();
  const product = res.data!.createProduct as { id: string; name: string };
  if (units !== null) await db.stockItem.create({ data: { productId: product.id, available: units } });
  return product;
}

async function stockOf(productId: string) {
  return db.stockItem.findUnique({ where: { productId }, select: { available: true, reserved: true } });
}

async function adjustmentsOf(productId: string) {
  return db.stockAdjustment.findMany({ where: { productId }, orderBy: { createdAt: 'asc' } });
}

function expectOneError(res: GraphQLResponse, code: string, field?: string): void {
  expect(errorCodes(res)).toEqual([code]);
  if (field !== undefined) expect(res.errors![0]!.extensions?.field).toBe(field);
}

// ---------------------------------------------------------------------------------------------
// Reading stock through catalog products
// ---------------------------------------------------------------------------------------------

describe('reading stock on catalog products', () => {
  it("joins inventory's stock onto the first 20 catalog products, matching the seeded stock", async () => {
    const res = await graphql(stack.gatewayUrl, { query: '{ products(first: 20) { edges { node { name price stock { available } inStock } } } }' });

    expect(res.status).toBe(200);
    expect(res.errors).toBeUndefined();
    const expected = [...demoProducts]
      .sort((a, b) => byName(a.name, b.name))
      .slice(0, 20)
      .map((p) => ({ name: p.name, price: p.price, stock: { available: p.stock }, inStock: p.stock > 0 }));
    expect(res.data!.products.edges.map((e: { node: unknown }) => e.node)).toEqual(expected);
    // The seeded data has sold-out products among the first 20, so both states are exercised.
    expect(expected.some((p) => !p.inStock)).toBe(true);
    expect(expected.some((p) => p.inStock)).toBe(true);
  });

  it('joins stock onto every seeded product when browsing all of them (reserved units: admins only)', async () => {
    const res = await graphql(stack.gatewayUrl, { query: '{ products(first: 100) { edges { node { id stock { available reserved } inStock } } } }', token: adminToken });
    expect(res.errors).toBeUndefined();
    const byId = new Map(res.data!.products.edges.map((e: { node: { id: string } }) => [e.node.id, e.node]));
    for (const product of demoProducts) {
      expect(byId.get(product.id)).toEqual({ id: product.id, stock: { available: product.stock, reserved: 0 }, inStock: product.stock > 0 });
    }
  });

  it('reports stock as null (not zero) for a catalog product inventory has not heard of yet', async () => {
    const product = await productWithStock(null);
    const res = await graphql(stack.gatewayUrl, {
      query: 'query($id: ID!) { product(id: $id) { name stock { available reserved } inStock } }',
      variables: { id: product.id },
      token: adminToken,
    });
    expect(res.errors).toBeUndefined();
    expect(res.data!.product).toEqual({ name: product.name, stock: null, inStock: false });
  });
});

// ---------------------------------------------------------------------------------------------
// Adjusting stock
// ---------------------------------------------------------------------------------------------

describe('adjusting stock as an admin', () => {
  it("adds units and records the adjustment with the admin's id as actor", async () => {
    const product = await productWithStock(5);

    const res = await adjustStock({ productId: product.id, delta: 7, reason: '  delivery from supplier  ' });

    expect(res.errors).toBeUndefined();
    expect(res.data!.adjustStock).toEqual({ id: product.id, name: product.name, stock: { available: 12, reserved: 0 }, inStock: true });
    expect(await stockOf(product.id)).toEqual({ available: 12, reserved: 0 });
    const adjustments = await adjustmentsOf(product.id);
    expect(adjustments).toHaveLength(1);
    expect(adjustments[0]).toMatchObject({ productId: product.id, delta: 7, reason: 'delivery from supplier', actorId: adminId });
  });

  it('removes units and records each adjustment in order', async () => {
    const product = await productWithStock(5);

    const first = await adjustStock({ productId: product.id, delta: -3, reason: 'damaged' });
    const second = await adjustStock({ productId: product.id, delta: -2, reason: 'lost' });

    expect(first.data!.adjustStock.stock.available).toBe(2);
    expect(second.data!.adjustStock).toMatchObject({ stock: { available: 0 }, inStock: false });
    expect(await stockOf(product.id)).toEqual({ available: 0, reserved: 0 });
    const adjustments = await adjustmentsOf(product.id);
    expect(adjustments.map((a) => [a.delta, a.reason, a.actorId])).toEqual([
      [-3, 'damaged', adminId],
      [-2, 'lost', adminId],
    ]);
  });

  it('shows the new level when the product is read afterwards', async () => {
    const product = await productWithStock(0);
    await adjustStock({ productId: product.id, delta: 4 });

    const res = await graphql(stack.gatewayUrl, { query: 'query($id: ID!) { product(id: $id) { stock { available } inStock } }', variables: { id: product.id } });

    expect(res.data!.product).toEqual({ stock: { available: 4 }, inStock: true });
  });

  it('lets the demo admin, signed in through the gateway, adjust stock as themself', async () => {
    const product = await productWithStock(1);
    const signIn = await graphql(stack.gatewayUrl, {
      query: 'mutation($email: String!, $password: String!) { signIn(email: $email, password: $password) { token } }',
      variables: { email: demoUsers.admin.email, password: demoUsers.admin.password },
    });

    const res = await adjustStock({ productId: product.id, delta: 2 }, signIn.data!.signIn.token);

    expect(res.errors).toBeUndefined();
    expect((await adjustmentsOf(product.id)).map((a) => a.actorId)).toEqual([adminId]);
  });
});

describe('adjusting stock with an adjustment inventory refuses', () => {
  it('refuses removing more than is available with BAD_USER_INPUT on delta, leaving stock and audit unchanged', async () => {
    const product = await productWithStock(3);

    const res = await adjustStock({ productId: product.id, delta: -4 });

    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', 'delta');
    expect(await stockOf(product.id)).toEqual({ available: 3, reserved: 0 });
    expect(await adjustmentsOf(product.id)).toEqual([]);
  });

  const cases: { label: string; delta: number; reason: string; field: string }[] = [
    { label: 'a delta of 0', delta: 0, reason: 'nothing', field: 'delta' },
    { label: 'a delta above 1,000,000', delta: 1_000_001, reason: 'too many', field: 'delta' },
    { label: 'a delta below -1,000,000', delta: -1_000_001, reason: 'too many', field: 'delta' },
    { label: 'a blank reason', delta: 1, reason: '   ', field: 'reason' },
    { label: 'a reason of 201 characters', delta: 1, reason: 'r'.repeat(201), field: 'reason' },
  ];

  it.each(cases)('refuses $label with BAD_USER_INPUT on $field and writes nothing', async ({ delta, reason, field }) => {
    const product = await productWithStock(10);

    const res = await adjustStock({ productId: product.id, delta, reason });

    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', field);
    expect(await stockOf(product.id)).toEqual({ available: 10, reserved: 0 });
    expect(await adjustmentsOf(product.id)).toEqual([]);
  });

  it('refuses an addition that would overflow the stock counter with BAD_USER_INPUT on delta, not an internal error', async () => {
    const product = await productWithStock(2_147_000_000);

    const res = await adjustStock({ productId: product.id, delta: 1_000_000 });

    expectOneError(res, 'BAD_USER_INPUT', 'delta');
    expect(await stockOf(product.id)).toEqual({ available: 2_147_000_000, reserved: 0 });
    expect(await adjustmentsOf(product.id)).toEqual([]);
  });
});

describe('adjusting stock of a product inventory does not know', () => {
  it('refuses an unknown product with NOT_FOUND and creates no stock or audit rows', async () => {
    const productId = randomUUID();

    const res = await adjustStock({ productId, delta: 5 });

    expect(res.data).toBeNull();
    expectOneError(res, 'NOT_FOUND');
    expect(await stockOf(productId)).toBeNull();
    expect(await adjustmentsOf(productId)).toEqual([]);
  });

  it('refuses a catalog product without a stock record with NOT_FOUND', async () => {
    const product = await productWithStock(null);
    const res = await adjustStock({ productId: product.id, delta: 5 });
    expectOneError(res, 'NOT_FOUND');
    expect(await stockOf(product.id)).toBeNull();
  });

  it('refuses a product id that is not a uuid with BAD_USER_INPUT on productId', async () => {
    const before = await db.stockAdjustment.count();
    const res = await adjustStock({ productId: 'AUD-001', delta: 5 });
    expectOneError(res, 'BAD_USER_INPUT', 'productId');
    expect(await db.stockAdjustment.count()).toBe(before);
  });
});

describe('adjusting stock without the right to', () => {
  // The gateway removes the admin-only field before inventory is called (docs/decisions/0026);
  // inventory's own FORBIDDEN / UNAUTHENTICATED stay behind it.
  it('refuses a customer with UNAUTHORIZED_FIELD_OR_TYPE (admins only) and writes nothing', async () => {
    const product = await productWithStock(5);

    const res = await adjustStock({ productId: product.id, delta: 100 }, customerToken);

    expect(res.data).toBeNull();
    expectOneError(res, 'UNAUTHORIZED_FIELD_OR_TYPE');
    expect(await stockOf(product.id)).toEqual({ available: 5, reserved: 0 });
    expect(await adjustmentsOf(product.id)).toEqual([]);
  });

  it('refuses an anonymous caller with UNAUTHORIZED_FIELD_OR_TYPE and writes nothing', async () => {
    const product = await productWithStock(5);

    const res = await adjustStock({ productId: product.id, delta: -5 }, null);

    expectOneError(res, 'UNAUTHORIZED_FIELD_OR_TYPE');
    expect(await stockOf(product.id)).toEqual({ available: 5, reserved: 0 });
    expect(await adjustmentsOf(product.id)).toEqual([]);
  });
});

describe('adjusting stock concurrently', () => {
  it('lets exactly 5 of 20 simultaneous removals of one unit succeed on 5 units, never going below zero', async () => {
    const product = await productWithStock(5);

    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        graphql(stack.gatewayUrl, {
          query: 'mutation($id: ID!, $reason: String!) { adjustStock(productId: $id, delta: -1, reason: $reason) { stock { available } } }',
          variables: { id: product.id, reason: `sale ${i}` },
          token: adminToken,
        }),
      ),
    );

    const succeeded = results.filter((res) => !res.errors);
    const refused = results.filter((res) => res.errors);
    expect(succeeded).toHaveLength(5);
    expect(refused).toHaveLength(15);
    for (const res of refused) expectOneError(res, 'BAD_USER_INPUT', 'delta');
    // Each success saw a distinct level on the way down: 4, 3, 2, 1, 0.
    expect(succeeded.map((res) => res.data!.adjustStock.stock.available).sort()).toEqual([0, 1, 2, 3, 4]);
    expect(await stockOf(product.id)).toEqual({ available: 0, reserved: 0 });
    const adjustments = await adjustmentsOf(product.id);
    expect(adjustments).toHaveLength(5);
    expect(adjustments.every((a) => a.delta === -1 && a.actorId === adminId)).toBe(true);
  });
});
