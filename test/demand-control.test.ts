import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { Kind, parse, validate, type DocumentNode, type OperationDefinitionNode } from 'graphql';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { demandControl, demandControlOptionsFromEnv, type DemandControl } from '../gateway/plugins/demand-control.ts';
import type { AdmittedOperation } from '../gateway/pipeline/plugin.ts';
import { GatewayRefusal } from '../gateway/pipeline/refusal.ts';
import { createCostModel, estimateCost, type CostModel } from '../platform/graphql/cost.ts';

const supergraphSdl = readFileSync(new URL('../schema/supergraph.graphql', import.meta.url), 'utf8');
/** Redis on which the shared-budget tests write (and delete) keys of their own. */
const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const shopSdl = /* GraphQL */ `
  directive @cost(weight: Int!) on ARGUMENT_DEFINITION | ENUM | FIELD_DEFINITION | INPUT_FIELD_DEFINITION | OBJECT | SCALAR
  directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!], requireOneSlicingArgument: Boolean = true) on FIELD_DEFINITION

  type Query {
    shelf(first: Int, search: String @cost(weight: 7)): ItemConnection! @listSize(slicingArguments: ["first"], sizedFields: ["edges"], assumedSize: 20, requireOneSlicingArgument: false)
    top(limit: Int = 4): [Item!]! @listSize(slicingArguments: ["limit"])
    everything: [Item!]!
    tags: [String!]!
    few: [Item!]! @listSize(assumedSize: 3)
    report: Report
    node: Node
  }
  type Mutation {
    buy(id: ID!): Item!
    refund(id: ID!): Item! @cost(weight: 40)
  }
  type ItemConnection { edges: [ItemEdge!]! total: Int! }
  type ItemEdge { cursor: String! node: Item! }
  type Item implements Node { id: ID! name: String! related(first: Int): ItemConnection! @listSize(slicingArguments: ["first"], sizedFields: ["edges"]) }
  interface Node { id: ID! }
  type Report @cost(weight: 25) { lines: Int! }
`;

describe('the cost of an operation', () => {
  const model = createCostModel(shopSdl);
  const cost = (source: string, variables: Record<string, unknown> = {}, operationName?: string) => {
    const document = parse(source);
    expect(validate(model.schema, document), source).toEqual([]);
    return estimateCost(model, document, operationName, variables);
  };

  it('counts 1 for each object and 0 for each scalar', () => {
    expect(cost('{ few { id name } }')).toBe(3);
    expect(cost('{ tags }')).toBe(0);
    expect(cost('{ __typename }')).toBe(0);
  });

  it("sizes a connection's edges by the literal first argument", () => {
    // shelf 1 + 50 × (edge 1 + node 1)
    expect(cost('{ shelf(first: 50) { edges { node { name } } } }')).toBe(101);
    expect(cost('{ shelf(first: 50) { total } }')).toBe(1);
  });

  it("takes the size from the operation's variables, then from the variable's default", () => {
    const source = 'query Shelf($n: Int = 5) { shelf(first: $n) { edges { node { id } } } }';
    expect(cost(source, { n: 30 })).toBe(61);
    expect(cost(source)).toBe(11);
  });

  it("falls back to the argument's default, then to assumedSize, then to the default list size of 10", () => {
    expect(cost('{ top { id } }')).toBe(4);
    expect(cost('{ shelf { edges { node { id } } } }')).toBe(41);
    expect(cost('{ everything { id } }')).toBe(10);
    const model5 = createCostModel(shopSdl, { defaultListSize: 5 });
    expect(estimateCost(model5, parse('{ everything { id } }'))).toBe(5);
  });

  it('multiplies nested connections', () => {
    // shelf 1 + 10 × (edge 1 + node 1 + related (1 + 10 × (1 + 1)))
    expect(cost('{ shelf(first: 10) { edges { node { related(first: 10) { edges { node { id } } } } } } }')).toBe(1 + 10 * (1 + 1 + (1 + 10 * 2)));
  });

  it('adds the @cost weights of fields, types and given arguments', () => {
    expect(cost('{ report { lines } }')).toBe(25);
    expect(cost('{ shelf(first: 1, search: "x") { total } }')).toBe(1 + 7);
  });

  it('charges each root field of a mutation the mutation weight of 10, aliases and fragments included', () => {
    expect(cost('mutation { buy(id: "1") { id } }')).toBe(10 + 1);
    expect(cost('mutation { refund(id: "1") { id } }')).toBe(10 + 40);
    expect(cost('mutation { a: buy(id: "1") { id } b: buy(id: "2") { id } ...More } fragment More on Mutation { c: buy(id: "3") { id } }')).toBe(3 * 11);
  });

  it('expands named and inline fragments, with the sizes of the field they are spread in', () => {
    const withFragments = `
      { shelf(first: 20) { ...Page } few { ...Names } node { ... on Item { related(first: 2) { total } } } }
      fragment Page on ItemConnection { edges { node { ...Names } } }
      fragment Names on Item { id name }
    `;
    const inline = '{ shelf(first: 20) { edges { node { id name } } } few { id name } node { ... on Item { related(first: 2) { total } } } }';
    expect(cost(withFragments)).toBe(cost(inline));
    expect(cost(inline)).toBe(1 + 20 * 2 + 3 + 1 + 1);
  });

  it('honours @skip and @include decided by a literal or a variable, and counts a field they leave undecided', () => {
    const source = 'query ($skipShelf: Boolean!, $withFew: Boolean!) { shelf(first: 10) @skip(if: $skipShelf) { edges { node { id } } } few @include(if: $withFew) { id } report @include(if: false) { lines } }';
    expect(cost(source, { skipShelf: true, withFew: false })).toBe(0);
    expect(cost(source, { skipShelf: false, withFew: true })).toBe(21 + 3);
    // Variables not given (as a subgraph may see them before coercion): both fields count.
    expect(cost(source)).toBe(21 + 3);
  });

  it('picks the named operation of a document that holds several', () => {
    const source = 'query Small { few { id } } query Big { everything { id } }';
    expect(cost(source, {}, 'Small')).toBe(3);
    expect(cost(source, {}, 'Big')).toBe(10);
  });

  it('stops at its ceiling, in milliseconds, on a fragment bomb and on nested lists of astronomic size', () => {
    const levels = 40;
    const fragments = Array.from({ length: levels }, (_, i) =>
      i === levels - 1 ? `fragment F${i} on Item { id }` : `fragment F${i} on Item { related(first: 100) { edges { node { ...F${i + 1} ...F${i + 1} } } } }`,
    ).join('\n');
    const bomb = parse(`{ shelf(first: 100) { edges { node { ...F0 } } } }\n${fragments}`);
    const started = performance.now();
    expect(estimateCost(model, bomb)).toBe(model.options.ceiling);
    expect(performance.now() - started).toBeLessThan(50);
    expect(estimateCost(createCostModel(shopSdl, { ceiling: 100 }), parse('{ shelf(first: 100) { edges { node { id } } } }'))).toBe(100);
  });

  it('answers the ceiling for fragments that spread each other (which validation refuses anyway)', () => {
    const cycle = parse('{ few { ...A } } fragment A on Item { related { edges { node { ...B } } } } fragment B on Item { ...A }');
    expect(estimateCost(model, cycle)).toBe(model.options.ceiling);
  });
});

describe('a cost model from a subgraph schema', () => {
  it('reads @cost and @listSize under the names its federation @link gives them', () => {
    const typeDefs = parse(/* GraphQL */ `
      extend schema @link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key", { name: "@listSize", as: "@size" }])
      type Query { things(first: Int): [Thing!]! @size(slicingArguments: ["first"]) expensive: Int @federation__cost(weight: 9) }
      type Thing @key(fields: "id") { id: ID! }
    `);
    const model = createCostModel(buildSubgraphSchema({ typeDefs, resolvers: {} }));
    expect(estimateCost(model, parse('{ things(first: 7) { id } expensive }'))).toBe(7 + 9);
  });

  it("sizes the gateway's entity fetch by its representations", () => {
    const catalog = buildSubgraphSchema({ typeDefs: parse(readFileSync(new URL('../subgraphs/catalog/schema.graphql', import.meta.url), 'utf8')), resolvers: {} });
    const model = createCostModel(catalog);
    const fetch = parse('query ($representations: [_Any!]!) { _entities(representations: $representations) { ... on Category { products(first: 100) { edges { node { name } } } } } }');
    const representations = [1, 2, 3].map((id) => ({ __typename: 'Category', id: String(id) }));
    expect(estimateCost(model, fetch, null, { representations })).toBe(3 * (1 + 1 + 100 * 2));
  });
});

/** `{ products(first: 100) { edges { node { name category { products(first: 100) { … } } } } } }`, `levels` deep. */
function nestedProducts(levels: number): string {
  const level = (n: number): string => (n === 0 ? 'name' : `name category { products(first: 100) { edges { node { ${level(n - 1)} } } } }`);
  return `{ products(first: 100) { edges { node { ${level(levels - 1)} } } } }`;
}

describe('the costs of the supergraph', () => {
  const model = createCostModel(supergraphSdl);
  const cost = (source: string, variables: Record<string, unknown> = {}) => {
    const document = parse(source);
    expect(validate(model.schema, document), source).toEqual([]);
    return estimateCost(model, document, undefined, variables);
  };

  it('come from the @cost and @listSize declared in the subgraph schemas and composed into it', () => {
    expect([...model.fields.keys()]).toEqual(expect.arrayContaining(['Query.products', 'Category.products', 'Customer.orders', 'Order.items', 'Mutation.placeOrder']));
    expect(cost('{ products(first: 100) { edges { node { name } } } }')).toBe(2 + 100 * 2);
  });

  it('put the nested-products attack far above the default maximum, and the legitimate operations below it', () => {
    const maxCost = demandControlOptionsFromEnv({}).maxCost!;
    expect(cost(nestedProducts(5))).toBeGreaterThan(maxCost * 1000);
    expect(cost(nestedProducts(2))).toBeGreaterThan(maxCost);

    // The largest operations of our tests and benchmarks (the first is test/order-saga-e2e.test.ts's).
    const ordinary = [
      '{ me { orders(first: 50) { edges { node { id status rejectedLines { requested available product { id name } } } } } } }',
      '{ products(first: 100) { edges { node { id stock { available reserved } inStock } } } }',
      '{ products(first: 60) { edges { node { name category { name } stock { available } inStock } } } }',
      'query ($first: Int) { products(first: $first) { totalCount edges { cursor node { id sku name description price currency images discontinued category { id slug name } } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }',
      'subscription ($id: ID!) { orderStatusChanged(orderId: $id) { id status items { quantity product { name stock { available } } } payment { status } shipment { trackingNumber status } } }',
      'mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }',
    ];
    for (const source of ordinary) expect(cost(source, { first: 100 }), source).toBeLessThanOrEqual(maxCost);
  });

  it("put every operation of the README's examples below the default maximum", () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const blocks = [...readme.matchAll(/```graphql\n([\s\S]*?)```/g)].map((match) => match[1]!);
    const inline = [...readme.matchAll(/`(\{ me [^`]*\})`/g)].map((match) => match[1]!);
    const operations = [...blocks, ...inline].flatMap((source) => {
      const document = parse(source.replace(/"<[^>]*>"/g, '"x"'));
      return document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION).map((operation) => ({ document, operation }));
    });
    expect(operations.length).toBeGreaterThanOrEqual(5);
    const maxCost = demandControlOptionsFromEnv({}).maxCost!;
    for (const { document, operation } of operations) {
      expect(validate(model.schema, document)).toEqual([]);
      expect(estimateCost(model, document, operation.name?.value, {}), operation.name?.value ?? 'anonymous').toBeLessThanOrEqual(maxCost);
    }
  });
});

/** An operation as the gateway's core admits it. */
function admitted(source: string, options: { caller?: string; headers?: Record<string, string>; variables?: Record<string, unknown> } = {}): AdmittedOperation {
  const document: DocumentNode = parse(source);
  const operation = document.definitions.find((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION)!;
  const caller = options.caller ?? 'address:192.0.2.1';
  return {
    connection: { transport: 'http', caller, remoteAddress: '192.0.2.1', activeOperations: 1, identity: { kind: 'anonymous' } } as unknown as AdmittedOperation['connection'],
    source,
    document,
    operation,
    operationName: operation.name?.value ?? null,
    variables: options.variables ?? {},
    context: { identity: { kind: 'anonymous' }, requestId: randomUUID() } as unknown as AdmittedOperation['context'],
    headers: options.headers ?? {},
    responseExtensions: {},
  };
}

async function refusalOf(promise: Promise<unknown>): Promise<GatewayRefusal> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GatewayRefusal);
  return error as GatewayRefusal;
}

const page = '{ products(first: 100) { edges { node { name } } } }'; // costs 202

describe('the demand control plugin', () => {
  const plugins: DemandControl[] = [];
  const plugin = (options: Omit<Parameters<typeof demandControl>[0], 'schema'> = {}) => {
    const created = demandControl({ schema: supergraphSdl, ...options });
    plugins.push(created);
    return created;
  };
  afterEach(async () => {
    await Promise.all(plugins.splice(0).map((p) => p.stop?.()));
  });

  it('refuses the nested-products attack with OPERATION_TOO_COSTLY and HTTP 400, in milliseconds', async () => {
    const control = plugin();
    const started = performance.now();
    const refusal = await refusalOf(control.onOperation!(admitted(nestedProducts(5))) as Promise<void>);
    expect(performance.now() - started).toBeLessThan(50);
    expect(refusal.status).toBe(400);
    expect(refusal.toClient().extensions).toEqual({ code: 'OPERATION_TOO_COSTLY', cost: control.model.options.ceiling, maxCost: 10_000 });
    expect(refusal.message).toContain('above the limit of 10,000');
  });

  it('lets an ordinary operation through and reports nothing unless asked', async () => {
    const control = plugin();
    const operation = admitted(page);
    await control.onOperation!(operation);
    expect(operation.responseExtensions).toEqual({});
  });

  it(`reports { estimated, max, remaining } in extensions.cost when the request says x-commerce-cost: true`, async () => {
    const control = plugin({ budget: 50_000 });
    const operation = admitted(page, { headers: { 'x-commerce-cost': 'true' } });
    await control.onOperation!(operation);
    expect(operation.responseExtensions.cost).toEqual({ estimated: 202, max: 10_000, remaining: 50_000 - 202 });

    const tooCostly = admitted(nestedProducts(3), { headers: { 'x-commerce-cost': 'true' } });
    await refusalOf(control.onOperation!(tooCostly) as Promise<void>);
    expect(tooCostly.responseExtensions.cost).toEqual({ estimated: expect.any(Number), max: 10_000 });
  });

  it('refuses a caller over its budget with COST_BUDGET_EXCEEDED, HTTP 429 and Retry-After, while another caller still passes', async () => {
    const control = plugin({ maxCost: 1_000, budget: 1_000, budgetWindowSeconds: 30 });
    for (let i = 0; i < 4; i += 1) await control.onOperation!(admitted(page, { caller: 'customer:greedy' }));
    const refusal = await refusalOf(control.onOperation!(admitted(page, { caller: 'customer:greedy' })) as Promise<void>);
    expect(refusal.status).toBe(429);
    expect(refusal.retryAfterSeconds).toBeGreaterThan(0);
    expect(refusal.retryAfterSeconds).toBeLessThanOrEqual(30);
    expect(refusal.toClient().extensions).toMatchObject({ code: 'COST_BUDGET_EXCEEDED', retryAfter: refusal.retryAfterSeconds, cost: 202, budget: 1_000 });
    await control.onOperation!(admitted(page, { caller: 'customer:modest' }));
  });

  it('gives the budget back when its window ends', async () => {
    const control = plugin({ maxCost: 500, budget: 500, budgetWindowSeconds: 1 });
    await control.onOperation!(admitted(page));
    await control.onOperation!(admitted(page));
    await refusalOf(control.onOperation!(admitted(page)) as Promise<void>);
    await expect.poll(() => control.onOperation!(admitted(page)), { timeout: 3_000, interval: 100 }).toBeUndefined();
  });

  it('refuses, at start-up, a budget smaller than the maximum cost of one operation', () => {
    expect(() => demandControl({ schema: supergraphSdl, maxCost: 5_000, budget: 1_000 })).toThrow(/budget \(1000\) must be at least maxCost \(5000\)/);
    expect(() => demandControl({ schema: supergraphSdl, maxCost: 0 })).toThrow(/maxCost must be a positive integer/);
  });

  it('reads its configuration from GATEWAY_MAX_COST, GATEWAY_COST_BUDGET, GATEWAY_COST_BUDGET_WINDOW_SECONDS and REDIS_URL', () => {
    expect(demandControlOptionsFromEnv({})).toEqual({ maxCost: 10_000, budget: 1_000_000, budgetWindowSeconds: 60 });
    expect(
      demandControlOptionsFromEnv({ GATEWAY_MAX_COST: '2000', GATEWAY_COST_BUDGET: '0', GATEWAY_COST_BUDGET_WINDOW_SECONDS: '10', REDIS_URL: redisUrl }),
    ).toEqual({ maxCost: 2_000, budget: 0, budgetWindowSeconds: 10, redis: redisUrl });
    expect(() => demandControlOptionsFromEnv({ GATEWAY_MAX_COST: 'lots' })).toThrow(/GATEWAY_MAX_COST must be an integer/);
  });
});

describe('cost budgets in Redis', () => {
  let redis: Redis;
  const prefixes: string[] = [];
  const plugins: DemandControl[] = [];
  const replica = (keyPrefix: string, options: Omit<Parameters<typeof demandControl>[0], 'schema' | 'keyPrefix'> = {}) => {
    const created = demandControl({ schema: supergraphSdl, keyPrefix, ...options });
    plugins.push(created);
    return created;
  };
  const uniquePrefix = () => {
    const prefix = `test:cost-budget:${randomUUID()}`;
    prefixes.push(prefix);
    return prefix;
  };

  beforeAll(async () => {
    redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
  });
  afterEach(async () => {
    await Promise.all(plugins.splice(0).map((p) => p.stop?.()));
    for (const prefix of prefixes.splice(0)) {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
    }
  });
  afterAll(async () => {
    await redis.quit();
  });

  it('are shared by gateway replicas: what one replica admitted counts at the other', async () => {
    const prefix = uniquePrefix();
    const first = replica(prefix, { maxCost: 1_000, budget: 1_000, redis: redisUrl });
    const second = replica(prefix, { maxCost: 1_000, budget: 1_000, redis: redisUrl });
    for (let i = 0; i < 4; i += 1) await first.onOperation!(admitted(page, { caller: 'customer:shared' }));

    const refusal = await refusalOf(second.onOperation!(admitted(page, { caller: 'customer:shared' })) as Promise<void>);
    expect(refusal.toClient().extensions.code).toBe('COST_BUDGET_EXCEEDED');
    expect(Number(await redis.get(`${prefix}:customer:shared`))).toBeGreaterThanOrEqual(4 * 202);
  });

  it("use the caller's connected ioredis client without closing it", async () => {
    const prefix = uniquePrefix();
    const control = replica(prefix, { budget: 20_000, redis });
    const operation = admitted(page, { headers: { 'x-commerce-cost': 'true' } });
    await control.onOperation!(operation);
    expect(operation.responseExtensions.cost).toEqual({ estimated: 202, max: 10_000, remaining: 20_000 - 202 });
    await control.stop!();
    expect(await redis.ping()).toBe('PONG');
  });

  it('are counted in memory, without stalling admissions, while Redis is unreachable', async () => {
    const control = replica(uniquePrefix(), { maxCost: 1_000, budget: 1_000, redis: 'redis://127.0.0.1:1' });
    const started = performance.now();
    for (let i = 0; i < 4; i += 1) await control.onOperation!(admitted(page, { caller: 'customer:offline' }));
    const refusal = await refusalOf(control.onOperation!(admitted(page, { caller: 'customer:offline' })) as Promise<void>);
    expect(refusal.toClient().extensions.code).toBe('COST_BUDGET_EXCEEDED');
    expect(performance.now() - started).toBeLessThan(200);
  });
});
