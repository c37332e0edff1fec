/**
 * The catalog as a web client meets it: through the gateway over HTTP, on the seeded demo data
 * (6 categories × 10 products). Products a test creates carry a `TST-` SKU and are removed after
 * the test, so every test sees exactly the seeded catalog.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { maxCursorLength } from '../platform/graphql/pagination.ts';
import { demoCategories, demoProducts, type DemoProduct } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { connectCatalogDatabase, type CatalogDatabase } from '../subgraphs/catalog/infrastructure/database.ts';
import { errorCodes, graphql, type GraphQLResponse } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';

let stack: Stack;
let db: CatalogDatabase;
let adminToken: string;
let adminId: string;
let customerToken: string;

beforeAll(async () => {
  stack = await startStack();
  await seedDemoData(stack.databaseUrls);
  db = connectCatalogDatabase(stack.databaseUrls.catalog).db;
  adminId = randomUUID();
  adminToken = await stack.tokenFor({ customerId: adminId, roles: ['customer', 'admin'] });
  customerToken = await stack.tokenFor({ customerId: randomUUID(), roles: ['customer'] });
});

afterEach(async () => {
  await db.product.deleteMany({ where: { sku: { startsWith: 'TST-' } } });
});

afterAll(async () => {
  await db?.$disconnect();
  await stack?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const productFields = 'id sku name description price currency images discontinued category { id slug name }';

const productsQuery = /* GraphQL */ `
  query Products($filter: ProductFilter, $first: Int, $after: String) {
    products(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id sku name price category { id slug } } }
    }
  }
`;

const createProductMutation = /* GraphQL */ `
  mutation CreateProduct($input: CreateProductInput!) {
    createProduct(input: $input) { ${productFields} }
  }
`;

const updatePriceMutation = /* GraphQL */ `
  mutation UpdatePrice($id: ID!, $price: Int!) {
    updateProductPrice(id: $id, price: $price) { id price }
  }
`;

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const seededNamesInOrder = demoProducts.map((p) => p.name).sort(byName);
const category = (slug: string) => demoCategories.find((c) => c.slug === slug)!;
const nameSet = (products: { name: string }[]) => new Set(products.map((p) => p.name));

const uniqueSku = () => `TST-${randomUUID().slice(0, 8).toUpperCase()}`;

function browse(variables: Record<string, unknown>): Promise<GraphQLResponse> {
  return graphql(stack.gatewayUrl, { query: productsQuery, variables });
}

/** As the admin unless another token, or `null` for an anonymous caller, is given. */
function createProduct(input: Record<string, unknown>, token: string | null = adminToken): Promise<GraphQLResponse> {
  return graphql(stack.gatewayUrl, { query: createProductMutation, variables: { input }, ...(token ? { token } : {}) });
}

function newProductInput(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    sku: uniqueSku(),
    name: `Test Gadget ${randomUUID().slice(0, 6)}`,
    description: 'A gadget made by a test.',
    price: 2_499,
    currency: 'EUR',
    categoryId: category('computing').id,
    images: ['https://images.example.com/test.jpg'],
    ...overrides,
  };
}

async function createdProduct(overrides: Record<string, unknown> = {}): Promise<{ id: string; sku: string; price: number }> {
  const res = await createProduct(newProductInput(overrides));
  expect(res.errors).toBeUndefined();
  return res.data!.createProduct;
}

function expectOneError(res: GraphQLResponse, code: string, field?: string): void {
  expect(errorCodes(res)).toEqual([code]);
  if (field !== undefined) expect(res.errors![0]!.extensions?.field).toBe(field);
}

/** Every node of every page, following `endCursor` until `hasNextPage` is false. */
async function allPages(filter: Record<string, unknown> | undefined, first: number) {
  const nodes: { id: string; name: string; price: number; category: { id: string; slug: string } }[] = [];
  const totals: number[] = [];
  let after: string | null = null;
  for (let page = 0; page < 100; page++) {
    const res = await browse({ filter, first, after });
    expect(res.errors).toBeUndefined();
    const connection = res.data!.products;
    totals.push(connection.totalCount);
    nodes.push(...connection.edges.map((edge: { node: (typeof nodes)[number] }) => edge.node));
    if (connection.edges.length > 0) expect(connection.pageInfo.endCursor).toBe(connection.edges.at(-1).cursor);
    expect(connection.pageInfo.startCursor).toBe(connection.edges[0]?.cursor ?? null);
    // Relay: paging forward, a page after a cursor has one before it.
    expect(connection.pageInfo.hasPreviousPage).toBe(after !== null);
    if (!connection.pageInfo.hasNextPage) return { nodes, totals, pages: page + 1 };
    expect(connection.edges).toHaveLength(first);
    after = connection.pageInfo.endCursor;
  }
  throw new Error('pagination did not end');
}

// ---------------------------------------------------------------------------------------------
// Browsing
// ---------------------------------------------------------------------------------------------

describe('paging through all products', () => {
  it('visits each of the 60 seeded products exactly once, in name order, and then reports no next page', async () => {
    const { nodes, totals, pages } = await allPages(undefined, 7);

    expect(pages).toBe(9);
    expect(nodes.map((n) => n.name)).toEqual(seededNamesInOrder);
    expect(new Set(nodes.map((n) => n.id)).size).toBe(60);
    expect(totals.every((total) => total === 60)).toBe(true);
  });

  it('returns 20 products when `first` is not given, with a next page', async () => {
    const res = await browse({});
    expect(res.errors).toBeUndefined();
    expect(res.data!.products.edges.map((e: { node: { name: string } }) => e.node.name)).toEqual(seededNamesInOrder.slice(0, 20));
    expect(res.data!.products.pageInfo.hasNextPage).toBe(true);
    expect(res.data!.products.totalCount).toBe(60);
  });

  it('returns all 60 in one page of the maximum size 100, with no next page', async () => {
    const res = await browse({ first: 100 });
    expect(res.errors).toBeUndefined();
    expect(res.data!.products.edges).toHaveLength(60);
    expect(res.data!.products.pageInfo).toEqual({
      hasNextPage: false,
      hasPreviousPage: false,
      startCursor: res.data!.products.edges[0].cursor,
      endCursor: res.data!.products.edges[59].cursor,
    });
  });

  it('returns an empty page with a null end cursor after the last product', async () => {
    const last = await browse({ first: 100 });
    const res = await browse({ first: 10, after: last.data!.products.pageInfo.endCursor });
    expect(res.errors).toBeUndefined();
    expect(res.data!.products).toEqual({ totalCount: 60, edges: [], pageInfo: { hasNextPage: false, hasPreviousPage: true, startCursor: null, endCursor: null } });
  });

  it('answers `first: 0` with no edges and the total count, and says more products follow (Relay HasNextPage)', async () => {
    const res = await browse({ first: 0 });
    expect(res.errors).toBeUndefined();
    expect(res.data!.products.edges).toEqual([]);
    expect(res.data!.products.totalCount).toBe(60);
    // Relay: with `first` set, hasNextPage is true when more than `first` edges follow the cursor.
    expect(res.data!.products.pageInfo.hasNextPage).toBe(true);
  });

  it('pages through products that share one name without skipping or repeating any', async () => {
    const name = `Twin Product ${randomUUID().slice(0, 6)}`;
    const created = [await createdProduct({ name }), await createdProduct({ name }), await createdProduct({ name })];

    const { nodes, totals } = await allPages({ search: name }, 1);

    expect(nodes.map((n) => n.id)).toEqual(created.map((p) => p.id).sort(byName));
    expect(totals.every((total) => total === 3)).toBe(true);
  });

  it('pages through products whose names are 200 characters long, with multibyte characters, quotes and control characters, without skipping or repeating any', async () => {
    // 200 UTF-16 code units is the longest name checkNewProduct accepts. A cursor holds the name
    // JSON-escaped and UTF-8 encoded, so these give cursors far longer than 200 characters; the
    // control characters (6 bytes each once escaped as \u0001) give the longest cursor there can be.
    const longName = (pattern: string) => pattern.repeat(200 / pattern.length);
    const names = [longName('é"漢\\😀\'ß'), longName('"'), longName('\u0001'), longName('Ω😀ж')];
    expect(names.map((name) => name.length)).toEqual([200, 200, 200, 200]);
    const created: { id: string }[] = [];
    for (const name of names) created.push(await createdProduct({ name }));
    // A twin of the first name: its place after the first is decided by id alone, inside the cursor.
    created.push(await createdProduct({ name: names[0] }));
    const onePage = await browse({ first: 100 });
    expect(onePage.errors).toBeUndefined();
    const inOrder: string[] = onePage.data!.products.edges.map((e: { node: { id: string } }) => e.node.id);

    // `first: 1`, so every product's cursor is sent back as `after` once.
    const { nodes } = await allPages(undefined, 1);

    expect(nodes.map((n) => n.id)).toEqual(inOrder);
    expect(new Set(nodes.map((n) => n.id)).size).toBe(60 + created.length);
    const namesById = new Map(nodes.map((n) => [n.id, n.name]));
    expect(created.map((p) => namesById.get(p.id))).toEqual([...names, names[0]]);
    // The control-character name's cursor is the longest legal one, and the accepted length is exactly that.
    const cursors = (await browse({ first: 100 })).data!.products.edges.map((e: { cursor: string }) => e.cursor);
    expect(Math.max(...cursors.map((cursor: string) => cursor.length))).toBe(maxCursorLength);
  });
});

describe('browsing while products change', () => {
  it('leaves a discontinued product out of browsing but still answers it by id, marked discontinued', async () => {
    const product = await createdProduct();
    await db.product.update({ where: { id: product.id }, data: { status: 'DISCONTINUED' } });

    const browsed = await browse({ filter: { search: product.sku }, first: 5 });
    const read = await graphql(stack.gatewayUrl, { query: 'query($id: ID!) { product(id: $id) { id discontinued } }', variables: { id: product.id } });

    expect(browsed.data!.products).toMatchObject({ totalCount: 0, edges: [] });
    expect(read.data!.product).toEqual({ id: product.id, discontinued: true });
  });

  it('continues after a cursor whose product was discontinued since the page was read', async () => {
    const name = `Fading Product ${randomUUID().slice(0, 6)}`;
    const created = await Promise.all([1, 2, 3, 4].map(() => createdProduct({ name })));
    const ids = created.map((p) => p.id).sort(byName);
    const firstPage = await browse({ filter: { search: name }, first: 2 });
    expect(firstPage.data!.products.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual(ids.slice(0, 2));

    await db.product.update({ where: { id: ids[1]! }, data: { status: 'DISCONTINUED' } });
    const secondPage = await browse({ filter: { search: name }, first: 2, after: firstPage.data!.products.pageInfo.endCursor });

    expect(secondPage.errors).toBeUndefined();
    expect(secondPage.data!.products.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual(ids.slice(2));
    expect(secondPage.data!.products.pageInfo.hasNextPage).toBe(false);
  });

  it('continues after a cursor whose product was repriced out of the price filter since the page was read', async () => {
    const name = `Repriced Product ${randomUUID().slice(0, 6)}`;
    const created = await Promise.all([1, 2, 3, 4].map(() => createdProduct({ name, price: 1_000 })));
    const ids = created.map((p) => p.id).sort(byName);
    const filter = { search: name, maxPrice: 1_000 };
    const firstPage = await browse({ filter, first: 2 });
    expect(firstPage.data!.products.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual(ids.slice(0, 2));

    const repriced = await graphql(stack.gatewayUrl, { query: updatePriceMutation, variables: { id: ids[1], price: 5_000 }, token: adminToken });
    expect(repriced.errors).toBeUndefined();
    const secondPage = await browse({ filter, first: 2, after: firstPage.data!.products.pageInfo.endCursor });

    expect(secondPage.errors).toBeUndefined();
    expect(secondPage.data!.products.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual(ids.slice(2));
  });
});

describe('paging with an out-of-range page size', () => {
  it.each([-1, 101])('refuses first: %i with BAD_USER_INPUT on first', async (first) => {
    const res = await browse({ first });
    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', 'first');
  });

  it('refuses first: 100000 at the gateway with OPERATION_TOO_COSTLY, before the catalog is asked', async () => {
    const res = await browse({ first: 100_000 });
    expect(res.status).toBe(400);
    expect(res.errors?.map((error) => error.extensions?.code)).toEqual(['OPERATION_TOO_COSTLY']);
  });
});

describe('paging with a cursor that is not one of ours', () => {
  const cases: { label: string; after: string }[] = [
    { label: 'a short random string', after: 'abc' },
    { label: 'an empty string', after: '' },
    { label: 'base64 of garbage', after: Buffer.from('\u0000garbage\u00ff{}', 'utf8').toString('base64url') },
    { label: 'padded standard base64', after: Buffer.from('garbage!').toString('base64') },
    { label: 'a well-formed cursor of a non-uuid', after: Buffer.from('cursor:v1:not-a-uuid').toString('base64url') },
    { label: 'a cursor of another version', after: Buffer.from(`cursor:v0:${demoProducts[0]!.id}`).toString('base64url') },
    { label: 'a cursor of 300 characters', after: 'a'.repeat(300) },
    { label: 'a cursor of 100,000 characters', after: 'a'.repeat(100_000) },
    {
      label: 'a well-formed cursor longer than any cursor we hand out',
      after: Buffer.from(`cursor:v1:${JSON.stringify(['n'.repeat(maxCursorLength), demoProducts[0]!.id])}`).toString('base64url'),
    },
  ];

  it.each(cases)('refuses $label with BAD_USER_INPUT on after', async ({ after }) => {
    const res = await browse({ first: 5, after });
    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', 'after');
  });
});

describe('filtering products', () => {
  it('by category slug returns exactly that category, in name order', async () => {
    const books = category('books');
    const { nodes, totals } = await allPages({ categorySlug: 'books' }, 4);
    const expected = demoProducts.filter((p) => p.categoryId === books.id).map((p) => p.name).sort(byName);
    expect(nodes.map((n) => n.name)).toEqual(expected);
    expect(nodes.every((n) => n.category.slug === 'books')).toBe(true);
    expect(totals.every((total) => total === 10)).toBe(true);
  });

  it('by category id returns the same products as by its slug', async () => {
    const kitchen = category('kitchen');
    const bySlug = await browse({ filter: { categorySlug: 'kitchen' }, first: 50 });
    const byId = await browse({ filter: { categoryId: kitchen.id }, first: 50 });
    expect(byId.errors).toBeUndefined();
    expect(byId.data!.products.totalCount).toBe(10);
    expect(byId.data!.products.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual(
      bySlug.data!.products.edges.map((e: { node: { id: string } }) => e.node.id),
    );
    expect(byId.data!.products.edges.every((e: { node: { category: { id: string } } }) => e.node.category.id === kitchen.id)).toBe(true);
  });

  it('by a price range, including products priced exactly at either bound', async () => {
    const prices = [...new Set(demoProducts.map((p) => p.price))].sort((a, b) => a - b);
    const minPrice = prices[10]!;
    const maxPrice = prices[prices.length - 10]!;
    const expected = demoProducts.filter((p) => p.price >= minPrice && p.price <= maxPrice);

    const res = await browse({ filter: { minPrice, maxPrice }, first: 100 });

    expect(res.errors).toBeUndefined();
    const nodes = res.data!.products.edges.map((e: { node: { name: string; price: number } }) => e.node);
    expect(nodes.map((n: { name: string }) => n.name)).toEqual(expected.map((p) => p.name).sort(byName));
    expect(res.data!.products.totalCount).toBe(expected.length);
    expect(nodes.some((n: { price: number }) => n.price === minPrice)).toBe(true);
    expect(nodes.some((n: { price: number }) => n.price === maxPrice)).toBe(true);
  });

  it('by only a minimum or only a maximum price', async () => {
    const threshold = 5_000;
    const atLeast = await browse({ filter: { minPrice: threshold }, first: 100 });
    const atMost = await browse({ filter: { maxPrice: threshold }, first: 100 });
    expect(atLeast.data!.products.totalCount).toBe(demoProducts.filter((p) => p.price >= threshold).length);
    expect(atMost.data!.products.totalCount).toBe(demoProducts.filter((p) => p.price <= threshold).length);
    expect(atLeast.data!.products.edges.every((e: { node: { price: number } }) => e.node.price >= threshold)).toBe(true);
    expect(atMost.data!.products.edges.every((e: { node: { price: number } }) => e.node.price <= threshold)).toBe(true);
  });

  it('by a price range where minimum equals maximum, returning products at exactly that price', async () => {
    const price = demoProducts[0]!.price;
    const res = await browse({ filter: { minPrice: price, maxPrice: price }, first: 100 });
    expect(res.errors).toBeUndefined();
    expect(nodeNames(res)).toEqual(demoProducts.filter((p) => p.price === price).map((p) => p.name).sort(byName));
  });

  it('by search text, ignoring case, on the name', async () => {
    const res = await browse({ filter: { search: '  sPeAkEr ' }, first: 100 });
    expect(res.errors).toBeUndefined();
    expect(nodeNames(res)).toEqual(['Bluetooth Speaker', 'Smart Speaker']);
    expect(res.data!.products.totalCount).toBe(2);
  });

  it('by search text matching a SKU, ignoring case', async () => {
    const res = await browse({ filter: { search: 'boo-01' }, first: 100 });
    expect(nodeNames(res)).toEqual(['Site Reliability Engineering']);
  });

  it('by search text and category together', async () => {
    const res = await browse({ filter: { search: 'o', categorySlug: 'toys', maxPrice: 3_000 }, first: 100 });
    const toys = category('toys');
    const expected = demoProducts.filter(
      (p) => p.categoryId === toys.id && p.price <= 3_000 && matchesSearch(p, 'o'),
    );
    expect(nodeNames(res)).toEqual(expected.map((p) => p.name).sort(byName));
  });

  it.each([
    { text: '%', label: 'a percent sign' },
    { text: '1_0', label: 'an underscore' },
  ])('treats $label in search text as a plain character, not as a LIKE wildcard', async ({ text }) => {
    // No seeded product has a literal "%" or "1_0" in its name, description or SKU.
    expect(demoProducts.filter((p) => matchesSearch(p, text))).toEqual([]);

    const res = await browse({ filter: { search: text }, first: 100 });

    expect(res.errors).toBeUndefined();
    expect(nodeNames(res)).toEqual([]);
    expect(res.data!.products.totalCount).toBe(0);
  });

  it('ignores blank search text', async () => {
    const res = await browse({ filter: { search: '   ' }, first: 1 });
    expect(res.data!.products.totalCount).toBe(60);
  });
});

function matchesSearch(product: DemoProduct, text: string): boolean {
  const needle = text.toLowerCase();
  return [product.name, product.description, product.sku].some((value) => value.toLowerCase().includes(needle));
}

function nodeNames(res: GraphQLResponse): string[] {
  return res.data!.products.edges.map((e: { node: { name: string } }) => e.node.name);
}

describe('filtering products with an invalid filter', () => {
  const cases: { label: string; filter: Record<string, unknown>; field: string }[] = [
    { label: 'an unknown category slug', filter: { categorySlug: 'no-such-category' }, field: 'filter.categorySlug' },
    { label: 'an unknown category id', filter: { categoryId: randomUUID() }, field: 'filter.categoryId' },
    { label: 'a category id that is not a uuid', filter: { categoryId: 'books' }, field: 'filter.categoryId' },
    { label: 'both a category id and a slug', filter: { categoryId: demoCategories[0]!.id, categorySlug: demoCategories[0]!.slug }, field: 'filter.categorySlug' },
    { label: 'a minimum price above the maximum', filter: { minPrice: 5_000, maxPrice: 4_999 }, field: 'filter.minPrice' },
    { label: 'a negative minimum price', filter: { minPrice: -1 }, field: 'filter.minPrice' },
    { label: 'a negative maximum price', filter: { maxPrice: -1 }, field: 'filter.maxPrice' },
    { label: 'search text of 101 characters', filter: { search: 'x'.repeat(101) }, field: 'filter.search' },
  ];

  it.each(cases)('refuses $label with BAD_USER_INPUT on $field', async ({ filter, field }) => {
    const res = await browse({ filter, first: 5 });
    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', field);
  });
});

describe('reading one product', () => {
  it('returns a seeded product with its category', async () => {
    const seeded = demoProducts[12]!;
    const res = await graphql(stack.gatewayUrl, { query: `query($id: ID!) { product(id: $id) { ${productFields} } }`, variables: { id: seeded.id } });
    expect(res.errors).toBeUndefined();
    expect(res.data!.product).toEqual({
      id: seeded.id,
      sku: seeded.sku,
      name: seeded.name,
      description: seeded.description,
      price: seeded.price,
      currency: 'EUR',
      images: seeded.images,
      discontinued: false,
      category: { id: seeded.categoryId, slug: 'computing', name: 'Computing' },
    });
  });

  it('refuses an id that is not a uuid with BAD_USER_INPUT on id', async () => {
    const res = await graphql(stack.gatewayUrl, { query: '{ product(id: "not-a-uuid") { id } }' });
    expect(res.data).toEqual({ product: null });
    expectOneError(res, 'BAD_USER_INPUT', 'id');
  });

  it('answers null, without an error, for an unknown uuid', async () => {
    const res = await graphql(stack.gatewayUrl, { query: 'query($id: ID!) { product(id: $id) { id } }', variables: { id: randomUUID() } });
    expect(res.errors).toBeUndefined();
    expect(res.data).toEqual({ product: null });
  });
});

describe('reading categories', () => {
  it('lists the six seeded categories by name', async () => {
    const res = await graphql(stack.gatewayUrl, { query: '{ categories { id slug name } }' });
    expect(res.data!.categories).toEqual([...demoCategories].sort((a, b) => byName(a.name, b.name)));
  });

  it("pages through one category's products from the category itself", async () => {
    const res = await graphql(stack.gatewayUrl, {
      query: '{ category(slug: "outdoor") { name products(first: 3) { totalCount pageInfo { hasNextPage } edges { node { name } } } } }',
    });
    const outdoor = category('outdoor');
    expect(res.data!.category.products.totalCount).toBe(10);
    expect(res.data!.category.products.pageInfo.hasNextPage).toBe(true);
    expect(res.data!.category.products.edges.map((e: { node: { name: string } }) => e.node.name)).toEqual(
      demoProducts.filter((p) => p.categoryId === outdoor.id).map((p) => p.name).sort(byName).slice(0, 3),
    );
  });

  it('answers null for an unknown slug', async () => {
    const res = await graphql(stack.gatewayUrl, { query: '{ category(slug: "nope") { id } }' });
    expect(res.errors).toBeUndefined();
    expect(res.data).toEqual({ category: null });
  });
});

// ---------------------------------------------------------------------------------------------
// Creating products
// ---------------------------------------------------------------------------------------------

describe('creating a product as an admin', () => {
  it('creates it with a normalised SKU and currency, and it can be read and browsed', async () => {
    const sku = uniqueSku();
    const input = newProductInput({ sku: `  ${sku.toLowerCase()} `, currency: 'usd', name: '  Quantum Widget  ', price: 0 });

    const res = await createProduct(input);

    expect(res.errors).toBeUndefined();
    const created = res.data!.createProduct;
    expect(created).toMatchObject({
      sku,
      name: 'Quantum Widget',
      description: 'A gadget made by a test.',
      price: 0,
      currency: 'USD',
      images: ['https://images.example.com/test.jpg'],
      discontinued: false,
      category: { id: category('computing').id, slug: 'computing' },
    });
    const row = await db.product.findUnique({ where: { id: created.id } });
    expect(row).toMatchObject({ sku, priceAmount: 0, currency: 'USD', status: 'ACTIVE', categoryId: category('computing').id });

    const read = await graphql(stack.gatewayUrl, { query: 'query($id: ID!) { product(id: $id) { sku } }', variables: { id: created.id } });
    expect(read.data!.product).toEqual({ sku });
    const browsed = await browse({ filter: { categorySlug: 'computing', search: sku }, first: 5 });
    expect(browsed.data!.products.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual([created.id]);
    const all = await browse({ first: 100 });
    expect(all.data!.products.totalCount).toBe(61);
  });

  it('uses an empty description and no images when they are not given', async () => {
    const { description: _d, images: _i, ...input } = newProductInput();
    const res = await createProduct(input);
    expect(res.errors).toBeUndefined();
    expect(res.data!.createProduct).toMatchObject({ description: '', images: [] });
  });

  it.each([
    { fieldName: 'description', field: 'input.description', omitted: '' },
    { fieldName: 'images', field: 'input.images', omitted: [] },
  ])('treats an explicit null $fieldName like an omitted one, or refuses it on $field — never with an internal error', async ({ fieldName, field, omitted }) => {
    const before = await db.product.count();

    const res = await createProduct(newProductInput({ [fieldName]: null }));

    // `description: String = ""` and `images: [String!] = []` are nullable: a client may send null.
    expect(errorCodes(res)).not.toContain('INTERNAL_SERVER_ERROR');
    if (res.errors) {
      expectOneError(res, 'BAD_USER_INPUT', field);
      expect(await db.product.count()).toBe(before);
    } else {
      expect(res.data!.createProduct[fieldName]).toEqual(omitted);
    }
  });
});

describe('creating a product without the right to', () => {
  // The gateway removes the admin-only field before any subgraph call (docs/decisions/0026); the
  // catalog's own FORBIDDEN / UNAUTHENTICATED stay behind it (test/authorization-directives.test.ts).
  it('refuses a customer with UNAUTHORIZED_FIELD_OR_TYPE (admins only) and writes nothing', async () => {
    const before = await db.product.count();
    const input = newProductInput();
    const res = await createProduct(input, customerToken);
    expect(res.data).toBeNull();
    expectOneError(res, 'UNAUTHORIZED_FIELD_OR_TYPE');
    expect(res.errors![0]!.path).toEqual(['createProduct']);
    expect(await db.product.count()).toBe(before);
    expect(await db.product.findUnique({ where: { sku: input.sku as string } })).toBeNull();
  });

  it('refuses an anonymous caller with UNAUTHORIZED_FIELD_OR_TYPE and writes nothing', async () => {
    const before = await db.product.count();
    const res = await createProduct(newProductInput(), null);
    expect(res.data).toBeNull();
    expectOneError(res, 'UNAUTHORIZED_FIELD_OR_TYPE');
    expect(await db.product.count()).toBe(before);
  });
});

describe('creating a product whose SKU is taken', () => {
  it('refuses the same SKU in another case with CONFLICT on input.sku and keeps the first product', async () => {
    const first = await createdProduct({ name: 'The Original' });
    const before = await db.product.count();

    const res = await createProduct(newProductInput({ sku: first.sku.toLowerCase(), name: 'The Copy' }));

    expect(res.data).toBeNull();
    expectOneError(res, 'CONFLICT', 'input.sku');
    expect(await db.product.count()).toBe(before);
    expect(await db.product.findUnique({ where: { sku: first.sku } })).toMatchObject({ id: first.id, name: 'The Original' });
  });

  it('refuses the SKU of a seeded product with CONFLICT', async () => {
    const before = await db.product.count();
    const res = await createProduct(newProductInput({ sku: demoProducts[0]!.sku }));
    expectOneError(res, 'CONFLICT', 'input.sku');
    expect(await db.product.count()).toBe(before);
  });
});

describe('creating a product from invalid input', () => {
  const cases: { label: string; overrides: Record<string, unknown>; field: string }[] = [
    { label: 'a negative price', overrides: { price: -1 }, field: 'input.price' },
    { label: 'a price above 99,999,999 minor units', overrides: { price: 100_000_000 }, field: 'input.price' },
    { label: 'an unknown category', overrides: { categoryId: randomUUID() }, field: 'input.categoryId' },
    { label: 'a category id that is not a uuid', overrides: { categoryId: 'computing' }, field: 'input.categoryId' },
    { label: 'an unsupported currency', overrides: { currency: 'XYZ' }, field: 'input.currency' },
    { label: 'a currency that is not a code', overrides: { currency: 'euro' }, field: 'input.currency' },
    { label: 'a SKU of two characters', overrides: { sku: 'AB' }, field: 'input.sku' },
    { label: 'a SKU with a space', overrides: { sku: 'TST 123' }, field: 'input.sku' },
    { label: 'a SKU starting with a dash', overrides: { sku: '-TST-123' }, field: 'input.sku' },
    { label: 'a SKU of 33 characters', overrides: { sku: `TST-${'X'.repeat(29)}` }, field: 'input.sku' },
    { label: 'a blank name', overrides: { name: '   ' }, field: 'input.name' },
    { label: 'a name of 201 characters', overrides: { name: 'n'.repeat(201) }, field: 'input.name' },
    { label: 'a description of 5001 characters', overrides: { description: 'd'.repeat(5001) }, field: 'input.description' },
    { label: 'a plain-http image', overrides: { images: ['http://images.example.com/a.jpg'] }, field: 'input.images' },
    { label: 'an image that is not a URL', overrides: { images: ['not a url'] }, field: 'input.images' },
    { label: 'a javascript: image', overrides: { images: ['javascript:alert(1)'] }, field: 'input.images' },
    { label: 'eleven images', overrides: { images: Array.from({ length: 11 }, (_, i) => `https://img.example.com/${i}.jpg`) }, field: 'input.images' },
  ];

  it.each(cases)('refuses $label with BAD_USER_INPUT on $field and writes nothing', async ({ overrides, field }) => {
    const before = await db.product.count();
    const input = newProductInput(overrides);

    const res = await createProduct(input);

    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', field);
    expect(await db.product.count()).toBe(before);
  });

  it('refuses a non-integer price given as a variable with BAD_USER_INPUT (HTTP 400) on input.price, and writes nothing', async () => {
    const before = await db.product.count();

    const res = await createProduct(newProductInput({ price: 19.99 }));

    // Variable coercion fails before execution, which Apollo reports as BAD_USER_INPUT.
    expect(res.status).toBe(400);
    expectOneError(res, 'BAD_USER_INPUT', 'input.price');
    expect(res.errors![0]!.message).toContain('19.99');
    expect(await db.product.count()).toBe(before);
  });

  it('refuses a non-integer new price, and non-integer price bounds of a filter, with BAD_USER_INPUT on that field', async () => {
    const product = demoProducts[0]!;
    const priceBefore = (await db.product.findUniqueOrThrow({ where: { id: product.id } })).priceAmount;
    const repriced = await graphql(stack.gatewayUrl, {
      query: 'mutation ($id: ID!, $price: Int!) { updateProductPrice(id: $id, price: $price) { price } }',
      variables: { id: product.id, price: 9.5 },
      token: adminToken,
    });
    expectOneError(repriced, 'BAD_USER_INPUT', 'price');
    const filtered = await graphql(stack.gatewayUrl, {
      query: 'query ($filter: ProductFilter) { products(filter: $filter) { totalCount } }',
      variables: { filter: { minPrice: 10, maxPrice: 20.5 } },
    });
    expectOneError(filtered, 'BAD_USER_INPUT', 'filter.maxPrice');
    expect((await db.product.findUniqueOrThrow({ where: { id: product.id } })).priceAmount).toBe(priceBefore);
  });

  it('refuses a non-integer price written in the query with GRAPHQL_VALIDATION_FAILED and writes nothing', async () => {
    const before = await db.product.count();
    const res = await graphql(stack.gatewayUrl, {
      query: `mutation { createProduct(input: { sku: "${uniqueSku()}", name: "Float", price: 19.99, currency: "EUR", categoryId: "${category('books').id}" }) { id } }`,
      token: adminToken,
    });
    expect(res.status).toBe(400);
    expect(errorCodes(res)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
    expect(await db.product.count()).toBe(before);
  });
});

// ---------------------------------------------------------------------------------------------
// Changing prices
// ---------------------------------------------------------------------------------------------

describe("changing a product's price as an admin", () => {
  it('stores the new price, which reads and filters as such', async () => {
    const product = await createdProduct({ price: 1_000 });

    const res = await graphql(stack.gatewayUrl, { query: updatePriceMutation, variables: { id: product.id, price: 1_234 }, token: adminToken });

    expect(res.errors).toBeUndefined();
    expect(res.data!.updateProductPrice).toEqual({ id: product.id, price: 1_234 });
    expect(await db.product.findUnique({ where: { id: product.id } })).toMatchObject({ priceAmount: 1_234 });
    const filtered = await browse({ filter: { search: product.sku, minPrice: 1_234, maxPrice: 1_234 } });
    expect(filtered.data!.products.totalCount).toBe(1);
  });

  it('refuses an unknown product with NOT_FOUND', async () => {
    const res = await graphql(stack.gatewayUrl, { query: updatePriceMutation, variables: { id: randomUUID(), price: 100 }, token: adminToken });
    expect(res.data).toBeNull();
    expectOneError(res, 'NOT_FOUND');
  });

  it('refuses an id that is not a uuid with BAD_USER_INPUT on id', async () => {
    const res = await graphql(stack.gatewayUrl, { query: updatePriceMutation, variables: { id: 'TST-1', price: 100 }, token: adminToken });
    expectOneError(res, 'BAD_USER_INPUT', 'id');
  });

  it.each([
    { label: 'a negative price', price: -1 },
    { label: 'a price above the maximum', price: 100_000_000 },
  ])('refuses $label with BAD_USER_INPUT on price and keeps the old price', async ({ price }) => {
    const product = await createdProduct({ price: 1_000 });

    const res = await graphql(stack.gatewayUrl, { query: updatePriceMutation, variables: { id: product.id, price }, token: adminToken });

    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', 'price');
    expect(await db.product.findUnique({ where: { id: product.id } })).toMatchObject({ priceAmount: 1_000 });
  });
});

describe("changing a product's price without the right to", () => {
  it('refuses a customer and an anonymous caller with UNAUTHORIZED_FIELD_OR_TYPE, keeping the price', async () => {
    const product = await createdProduct({ price: 1_000 });

    const asCustomer = await graphql(stack.gatewayUrl, { query: updatePriceMutation, variables: { id: product.id, price: 1 }, token: customerToken });
    const anonymous = await graphql(stack.gatewayUrl, { query: updatePriceMutation, variables: { id: product.id, price: 1 } });

    expectOneError(asCustomer, 'UNAUTHORIZED_FIELD_OR_TYPE');
    expectOneError(anonymous, 'UNAUTHORIZED_FIELD_OR_TYPE');
    expect(await db.product.findUnique({ where: { id: product.id } })).toMatchObject({ priceAmount: 1_000 });
  });
});
