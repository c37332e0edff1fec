/**
 * What an attacker sends to the gateway, built once for the abuse benchmark (abuse.ts) and the
 * end-to-end attack tests (test/gateway-abuse.test.ts), so both try the same things. Each builder
 * is pure and sized by its arguments: the benchmark uses the sizes of issue 9's measurements, the
 * tests the smallest document that crosses one limit.
 */

/** An ordinary product page: what a shop's front end asks for, catalog only. */
export const productPageQuery = `query ProductPage($id: ID!) {
  product(id: $id) { id name description price currency images category { id slug name } }
}`;

/** An ordinary listing, for "a legitimate request in parallel still succeeds". */
export const productListQuery = '{ products(first: 5) { edges { node { id name price } } } }';

/**
 * The cost bomb of issue 9: `products(first: N)` → each product's category → its `products(first: N)`
 * …, `levels` times. Four levels of depth per level (products, edges, node, category).
 */
export function nestedProducts(levels: number, first = 100): string {
  let inner = 'name';
  for (let level = 0; level < levels; level++) {
    inner = level === 0 ? `products(first: ${first}) { edges { node { ${inner} } } }` : `products(first: ${first}) { edges { node { name category { ${inner} } } } }`;
  }
  return `{ ${inner} }`;
}

/** The same bomb as a subscription: the caller's order updates, each item's product's category's products… */
export function nestedProductsSubscription(levels: number, first = 100): string {
  return `subscription { myOrderUpdates { id items { product { category ${nestedProducts(levels, first)} } } } }`;
}

/** A valid query nested `depth` fields deep (product ↔ category), with no list larger than 1. */
export function deepQuery(depth: number): string {
  const cycle = ['products(first: 1)', 'edges', 'node', 'category'];
  let open = '';
  for (let level = 0; level < depth - 1; level++) open += `${cycle[level % cycle.length]} { `;
  // The innermost field is selected on the type its parent returns: only a Product has `name`.
  const leaf = (depth - 1) % cycle.length === 3 ? 'name' : '__typename';
  return `{ ${open}${leaf}${' }'.repeat(depth - 1)} }`;
}

/** A subscription nested `depth` fields deep. */
export function deepSubscription(depth: number): string {
  return `subscription { myOrderUpdates { items { product { category ${deepQuery(Math.max(1, depth - 4))} } } } }`;
}

/** `count` aliases of `products(first)` at the root (issue 9: 1,000 of them). */
export function rootAliases(count: number, first = 100): string {
  return `{ ${Array.from({ length: count }, (_, i) => `a${i}: products(first: ${first}) { edges { node { name } } }`).join(' ')} }`;
}

/** `count` aliases of one cheap field, nested inside a one-product listing (crosses the alias limit only). */
export function nestedAliases(count: number): string {
  return `{ products(first: 1) { edges { node { ${Array.from({ length: count }, (_, i) => `n${i}: name`).join(' ')} } } } }`;
}

/**
 * A fragment bomb: fragment F(k) spreads F(k-1) `spreads` times, `levels` times over, so the
 * operation expands to spreads^levels fields in a document of a few KiB.
 */
export function fragmentBomb(levels: number, spreads: number): string {
  const fragments = ['fragment F0 on Product { name price }'];
  for (let level = 1; level <= levels; level++) fragments.push(`fragment F${level} on Product { ${`...F${level - 1} `.repeat(spreads)}}`);
  return `query Bomb { products(first: 100) { edges { node { ...F${levels} } } } }\n${fragments.join('\n')}`;
}

/** Two fragments that spread each other. */
export const fragmentCycle = 'query Cycle { products(first: 1) { edges { node { ...A } } } }\nfragment A on Product { name category { products(first: 1) { edges { node { ...B } } } } }\nfragment B on Product { price ...A }';

/** `count` root fields without aliases (the same field repeated: valid GraphQL, merged at execution). */
export function manyRootFields(count: number): string {
  return `{ ${'categories { id } '.repeat(count)}}`;
}

/** `count` directives on one field. */
export function manyDirectives(count: number): string {
  return `{ products(first: 1) { totalCount ${'@include(if: true) '.repeat(count)}} }`;
}

/** About `tokens` lexical tokens in one byte each (`[]` pairs: a list of empty lists). */
export function tokenFlood(tokens: number): string {
  return `{ product(id: [${'[]'.repeat(Math.ceil(tokens / 2))}]) { id } }`;
}

/** A valid query padded with a comment to `bytes` bytes of document. */
export function hugeDocument(bytes: number): string {
  const query = '{ products(first: 1) { totalCount } }\n#';
  return query + 'x'.repeat(Math.max(0, bytes - query.length));
}

/** JSON variables nested `depth` objects deep, for an input the schema declares flat. */
export function deeplyNestedVariables(depth: number): string {
  return `{"query":"query ($filter: ProductFilter) { products(filter: $filter, first: 1) { totalCount } }","variables":{"filter":${'{"search":'.repeat(depth)}"x"${'}'.repeat(depth)}}}`;
}

/** A batch: `count` operations in one JSON array body. */
export function batchBody(count: number): string {
  return JSON.stringify(Array.from({ length: count }, () => ({ query: productListQuery })));
}

/** A subscription document that fails validation, distinct per `n` and `bytes` long (≥ 80). */
export function invalidSubscription(n: number, bytes: number): string {
  const head = `subscription Poison${n} { myOrderUpdates { id `;
  const tail = ' } }';
  return `${head}${'f'.repeat(Math.max(1, bytes - head.length - tail.length))}${tail}`;
}

/** A text argument with a NUL byte, as a GraphQL string literal escape. */
export const nulInLiteral = '{ products(first: 1, filter: { search: "shoe\\u0000s" }) { totalCount } }';
/** The same NUL byte sent in a variable. */
export const nulInVariable = { query: 'query ($search: String) { products(first: 1, filter: { search: $search }) { totalCount } }', variables: { search: 'shoe\u0000s' } };
