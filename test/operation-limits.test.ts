/**
 * The operation limits analyzer (platform/graphql/operation-limits.ts) and the gateway plugin
 * around it. End-to-end refusals through the running gateway are tested with the plugin seam;
 * here: what is measured, that attacks are measured as executed without being expanded, and that
 * every real operation of our README and tests passes the defaults, at the gateway and, once
 * planned, at the subgraphs.
 */
import { readFileSync } from 'node:fs';
import { Supergraph, operationFromDocument } from '@apollo/federation-internals';
import { QueryPlanner, type PlanNode, type QueryPlan, type SubscriptionNode } from '@apollo/query-planner';
import { GraphQLError, getIntrospectionQuery, parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { withoutAuthorizationDirectives } from '../gateway/authorization/rules.ts';
import { limitedParse, operationLimits, operationLimitsFromEnv } from '../gateway/plugins/operation-limits.ts';
import type { ParsedDocument } from '../gateway/pipeline/plugin.ts';
import { GatewayRefusal } from '../gateway/pipeline/refusal.ts';
import {
  checkOperationLimits,
  defaultOperationLimits,
  maxBracketNesting,
  measureOperation,
  parseWithLimits,
  subgraphOperationLimits,
  type OperationLimits,
} from '../platform/graphql/operation-limits.ts';
import { supergraphPath } from '../scripts/compose.ts';

const measure = (source: string, operationName?: string) => measureOperation(parse(source), operationName);
const check = (source: string, limits: Partial<OperationLimits> = {}, operationName?: string) =>
  checkOperationLimits(parse(source), operationName, { ...defaultOperationLimits, ...limits });

/** `{ f { f { … leaf } } }` with `levels` fields on the way down. */
const nested = (levels: number) => `{ ${'f { '.repeat(levels - 1)}leaf${' }'.repeat(levels - 1)} }`;

/** Fragment F0 selects three fields; each Fi spreads F(i-1) `spreads` times: 3 × spreads^levels fields. */
function fragmentBomb(levels: number, spreads = 10): string {
  const fragments = ['fragment F0 on Product { id name price }'];
  for (let i = 1; i <= levels; i++) fragments.push(`fragment F${i} on Product { ${Array.from({ length: spreads }, () => `...F${i - 1}`).join(' ')} }`);
  return `query Bomb { product(id: "1") { ...F${levels} } }\n${fragments.join('\n')}`;
}

/**
 * The fastest of 21 runs of parsing and checking `source`: the work itself, without the first
 * runs' JIT compilation or the pauses of a machine shared with other tests. An analyzer that
 * expanded fragments or recursed per spread would take seconds, whatever the noise.
 */
function timedRefusal(source: string, limits: OperationLimits) {
  const times: number[] = [];
  let violation;
  for (let run = 0; run < 21; run++) {
    const started = performance.now();
    const parsed = parseWithLimits(source, limits);
    violation = parsed.violation ?? checkOperationLimits(parsed.document!, null, limits);
    times.push(performance.now() - started);
  }
  return { violation, milliseconds: Math.min(...times) };
}

const aliased = (count: number) => `{ ${Array.from({ length: count }, (_, i) => `p${i}: products(first: 100) { totalCount }`).join(' ')} }`;

/** Real operations, copied from README.md and the tests that send them. */
const gatewayOperations: Record<string, string> = {
  'README Browse': `query Browse {
    products(first: 20, filter: { categorySlug: "audio" }) {
      totalCount
      edges { cursor node { id name price currency inStock stock { available } category { name } } }
      pageInfo { hasNextPage endCursor }
    }
  }`,
  'README Place': `mutation Place {
    placeOrder(input: {
      lines: [{ productId: "00000000-0000-0000-0000-000000000000", quantity: 2 }]
      shippingAddress: { name: "Carl Customer", line1: "1 Main Street", city: "Berlin", postalCode: "10115", country: "DE" }
      paymentToken: "tok_visa"
      idempotencyKey: "my-first-order"
    }) { id status }
  }`,
  'README Watch (query)': `query Watch($id: ID!) {
    order(id: $id) {
      status reason total
      items { quantity unitPrice product { name stock { available } } }
      rejectedLines { requested available product { name } }
      payment { status }
      shipment { trackingNumber status }
      timeline { status at }
    }
  }`,
  'README Watch (subscription)': `subscription Watch($id: ID!) {
    orderStatusChanged(orderId: $id) {
      status
      items { quantity product { name stock { available } } }
      payment { status }
      shipment { trackingNumber status }
    }
  }`,
  'README signIn': `mutation { signIn(email: "admin@example.com", password: "admin-demo-password") { token } }`,
  'README me': `{ me { email roles addresses { city } } }`,
  'README my orders': `{ me { orders(first: 10) { edges { node { id status } } } } }`,
  'order-saga-e2e customer list': '{ me { orders(first: 50) { edges { node { id status rejectedLines { requested available product { id name } } } } } } }',
  'batching 60 products': '{ products(first: 60) { edges { node { name category { name } stock { available } inStock } } } }',
  'catalog Products': `query Products($filter: ProductFilter, $first: Int, $after: String) {
    products(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id sku name price category { id slug } } }
    }
  }`,
  'gateway-subscriptions MyUpdates': `subscription MyUpdates {
    myOrderUpdates { id status items { quantity product { name stock { available } } } payment { status } shipment { trackingNumber status } }
  }`,
  'gateway product and products': '{ product(id: "6a96527f-26b5-5517-8241-d043cd7b10d4") { id } products(first: 1) { edges { node { stock { available } } } } }',
  'identity anonymous browse': '{ products(first: 1) { totalCount } me { id } }',
  'accounts me': '{ me { id email name roles addresses { id label line1 line2 city postalCode country isDefault } } }',
};

/** Operations that are not planned against our supergraph: introspection, a throwaway schema's. */
const otherGatewayOperations: Record<string, string> = {
  'getIntrospectionQuery()': getIntrospectionQuery(),
  'getIntrospectionQuery() with every option': getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
    oneOf: true,
  }),
  'generic subscription with aliases and fragments': 'subscription Count($from: Int!) { tick: countdown(from: $from) { n ...Labelled who: viewer } } fragment Labelled on Tick { label }',
};

/** Operations the tests send to a subgraph directly, as the gateway's query plans do. */
const subgraphOperations: Record<string, string> = {
  'orders-api customer orders page': 'query ($reps: [_Any!]!, $after: String) { _entities(representations: $reps) { ... on Customer { orders(first: 2, after: $after) { edges { node { id status } } pageInfo { hasNextPage endCursor } } } } }',
  'orders-api order': 'query ($id: ID!) { order(id: $id) { id status reason total currency itemCount items { product { id } quantity unitPrice } timeline { status } placedAt updatedAt customer { id } } }',
};

function fetchesOf(node: PlanNode | SubscriptionNode | undefined): string[] {
  if (!node) return [];
  switch (node.kind) {
    case 'Fetch':
      return [node.operation];
    case 'Sequence':
    case 'Parallel':
      return node.nodes.flatMap(fetchesOf);
    case 'Flatten':
      return fetchesOf(node.node);
    case 'Subscription':
      return [...fetchesOf(node.primary), ...fetchesOf(node.rest)];
    case 'Condition':
      return [...fetchesOf(node.ifClause), ...fetchesOf(node.elseClause)];
    case 'Defer':
      return [...fetchesOf(node.primary.node), ...node.deferred.flatMap((deferred) => fetchesOf(deferred.node))];
  }
}

describe('measuring an operation', () => {
  it('counts depth as fields nested in fields, the root field being level 1', () => {
    expect(measure('{ a }').depth).toBe(1);
    expect(measure(nested(7)).depth).toBe(7);
  });

  it('counts __typename and introspection fields like any other field', () => {
    expect(measure('{ a { __typename } }')).toMatchObject({ depth: 2, fields: 2 });
    expect(measure('{ __schema { types { name } } }').depth).toBe(3);
  });

  it('expands fragment spreads and inline fragments without adding a level for them', () => {
    const source = `{ a { ...B ... on T { c { d } } } } fragment B on T { b { e { f } } }`;
    expect(measure(source)).toMatchObject({ depth: 4, fields: 6, rootFields: 1 });
  });

  it('counts aliases, root fields and fields as executed: once per spread of their fragment', () => {
    const source = `{ ...Root ...Root } fragment Root on Query { x: a { y: b } c }`;
    expect(measure(source)).toMatchObject({ aliases: 4, rootFields: 4, fields: 6, depth: 2 });
  });

  it('counts every directive written in the document, in operations, fragments and variable definitions', () => {
    const source = `query Q($v: Boolean! @deprecated) @a { b @include(if: $v) { c @skip(if: $v) ...F @x } } fragment F on T @y { d @z }`;
    expect(measure(source).directives).toBe(7);
  });

  it('measures a fragment bomb as expanded (3 × 10^n fields) in time linear in the document', () => {
    expect(measure(fragmentBomb(4)).fields).toBe(1 + 3 * 10 ** 4);
    expect(measure(fragmentBomb(4)).depth).toBe(2);

    const bomb = fragmentBomb(40);
    const started = performance.now();
    const measured = measure(bomb);
    expect(performance.now() - started).toBeLessThan(50);
    expect(Buffer.byteLength(bomb)).toBeLessThan(4_096);
    expect(measured.fields).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('measures a chain of thousands of fragments, each spreading the next, without overflowing the stack', () => {
    const chain = Array.from({ length: 3_000 }, (_, i) => `fragment F${i} on T { a { ...F${i + 1} } }`).join(' ');
    expect(measure(`{ ...F0 } ${chain} fragment F3000 on T { b }`)).toMatchObject({ depth: 3_001, fields: 3_001, fragmentCycle: undefined });
  });

  it('counts a spread of an unknown fragment as empty, leaving it to validation', () => {
    expect(measure('{ a { ...Missing b } }')).toMatchObject({ depth: 2, fields: 2, fragmentCycle: undefined });
  });

  it('reports a fragment cycle, in an unused fragment too, instead of following it', () => {
    expect(measure('{ a { ...A } } fragment A on T { b { ...B } } fragment B on T { ...A }').fragmentCycle).toEqual(['A', 'B', 'A']);
    expect(measure('{ a } fragment Self on T { b ...Self }').fragmentCycle).toEqual(['Self', 'Self']);
  });

  it('measures the operation named by operationName, else the worst of all of them', () => {
    const source = `query Shallow { a } query Deep { a { b { c } } } query Wide { a b c d }`;
    expect(measure(source, 'Shallow')).toMatchObject({ depth: 1, rootFields: 1 });
    expect(measure(source)).toMatchObject({ depth: 3, rootFields: 4 });
    expect(measure(source, 'Unknown')).toMatchObject({ depth: 3, rootFields: 4 });
  });

  it('measures the worst of fragments defined twice under one name', () => {
    expect(measure('{ a { ...F } } fragment F on T { b } fragment F on T { b { c { d } } }').depth).toBe(4);
  });
});

describe('checking the limits', () => {
  it('refuses a query nested deeper than the limit with OPERATION_TOO_DEEP, naming both figures', () => {
    expect(check(nested(14), { maxDepth: 12 })).toEqual({
      code: 'OPERATION_TOO_DEEP',
      message: 'The operation is nested 14 levels deep; the limit is 12',
      limit: 12,
      actual: 14,
    });
    expect(check(nested(12), { maxDepth: 12 })).toBeUndefined();
  });

  it('refuses a depth-300 query, parse included, in well under 5 ms', () => {
    const { violation, milliseconds } = timedRefusal(nested(300), defaultOperationLimits);
    expect(milliseconds).toBeLessThan(5);
    expect(violation).toMatchObject({ code: 'OPERATION_TOO_DEEP', actual: 300, limit: defaultOperationLimits.maxDepth });
  });

  it('refuses aliases beyond the limit with TOO_MANY_ALIASES, counted through fragments', () => {
    const spreadTwice = `{ products { ...Many ...Many } } fragment Many on ProductConnection { ${Array.from({ length: 11 }, (_, i) => `t${i}: totalCount`).join(' ')} }`;
    expect(check(spreadTwice)).toMatchObject({ code: 'TOO_MANY_ALIASES', limit: 20, actual: 22, message: 'The operation uses 22 aliases (fragments expanded); the limit is 20' });
    expect(check(aliased(1_000), { maxDocumentBytes: 1_000_000 })).toMatchObject({ code: 'TOO_MANY_ALIASES', actual: 1_000 });
  });

  it('refuses more root fields than the limit with TOO_MANY_ROOT_FIELDS', () => {
    const source = `{ ${Array.from({ length: 21 }, (_, i) => `f${i}`).join(' ')} }`;
    expect(check(source)).toMatchObject({ code: 'TOO_MANY_ROOT_FIELDS', limit: 20, actual: 21 });
  });

  it('refuses a fragment bomb with OPERATION_TOO_LARGE, saying how many fields it expands to', () => {
    expect(check(fragmentBomb(2))).toBeUndefined(); // 301 fields
    expect(check(fragmentBomb(3))).toEqual({
      code: 'OPERATION_TOO_LARGE',
      message: 'The operation selects 3,001 fields once its fragments are expanded; the limit is 500',
      limit: 500,
      actual: 3_001,
    });
  });

  it('refuses directives beyond the limit with TOO_MANY_DIRECTIVES', () => {
    const source = `query ($v: Boolean!) { ${Array.from({ length: 51 }, (_, i) => `f${i}: a @include(if: $v)`).join(' ')} }`;
    expect(check(source, { maxAliases: 100, maxRootFields: 100 })).toMatchObject({ code: 'TOO_MANY_DIRECTIVES', limit: 50, actual: 51 });
  });

  it('refuses a fragment cycle with FRAGMENT_CYCLE, naming the fragments', () => {
    expect(check('{ a { ...A } } fragment A on T { ...B } fragment B on T { ...A }')).toEqual({
      code: 'FRAGMENT_CYCLE',
      message: 'Fragment A spreads itself (A → B → A); fragments must not form a cycle',
      limit: 0,
      actual: 2,
    });
  });
});

describe('parsing within limits', () => {
  it('refuses a document with more tokens than the limit with TOO_MANY_TOKENS, and accepts one at the limit', () => {
    // `{ a b c }`: 5 tokens; comments are not tokens.
    expect(parseWithLimits('{ a b c } # a comment', { maxTokens: 5, maxDocumentBytes: 1_000 }).document).toBeDefined();
    expect(parseWithLimits('{ a b c d }', { maxTokens: 5, maxDocumentBytes: 1_000 }).violation).toEqual({
      code: 'TOO_MANY_TOKENS',
      message: 'The document has more than 5 tokens; the limit is 5',
      limit: 5,
      actual: 6,
    });
  });

  it('refuses a document larger than the limit in UTF-8 bytes with DOCUMENT_TOO_LARGE, before parsing it', () => {
    const source = `{ a(text: "${'é'.repeat(60)}") }`; // 75 characters, 135 bytes
    expect(parseWithLimits(source, { maxTokens: 100, maxDocumentBytes: 135 }).document).toBeDefined();
    expect(parseWithLimits(source, { maxTokens: 100, maxDocumentBytes: 134 }).violation).toEqual({
      code: 'DOCUMENT_TOO_LARGE',
      message: 'The document is 135 bytes long; the limit is 134',
      limit: 134,
      actual: 135,
    });
    expect(parseWithLimits('not even graphql'.repeat(10_000)).violation).toMatchObject({ code: 'DOCUMENT_TOO_LARGE' });
  });

  it('refuses brackets nested deeper than the parser can recurse with OPERATION_TOO_DEEP, before parsing', () => {
    // 2,000 levels overflow graphql-js's recursive parser; 4,000 tokens are within the token limit.
    expect(parseWithLimits(nested(2_000)).violation).toEqual({
      code: 'OPERATION_TOO_DEEP',
      message: `The document nests brackets 2,000 levels deep; the limit is ${maxBracketNesting}`,
      limit: maxBracketNesting,
      actual: 2_000,
    });
    expect(parseWithLimits(`{ f(list: ${'['.repeat(1_000)}1${']'.repeat(1_000)}) }`).violation).toMatchObject({ code: 'OPERATION_TOO_DEEP', actual: 1_002 });
  });

  it('does not count brackets inside strings, block strings and comments as nesting', () => {
    const brackets = '{(['.repeat(200);
    const source = `{ f(a: "\\" ${brackets}", b: """ \\""" ${brackets} """) # ${brackets}
    }`;
    expect(parseWithLimits(source).document).toBeDefined();
    expect(parseWithLimits(`${source} query Deep ${nested(501)}`).violation).toMatchObject({ code: 'OPERATION_TOO_DEEP', actual: 501 });
  });

  it("throws graphql-js's syntax error for a document that does not parse", () => {
    expect(() => parseWithLimits('{ a ')).toThrow(GraphQLError);
  });

  it('refuses a 3 KiB fragment bomb and 1,000 aliases (size and token limits raised to let them parse), parse included, in well under 5 ms each', () => {
    const roomy = { ...defaultOperationLimits, maxDocumentBytes: 64 * 1024, maxTokens: 20_000 };
    expect(timedRefusal(fragmentBomb(40), roomy)).toMatchObject({ violation: { code: 'OPERATION_TOO_LARGE' }, milliseconds: expect.any(Number) });
    expect(timedRefusal(fragmentBomb(40), roomy).milliseconds).toBeLessThan(5);
    expect(timedRefusal(aliased(1_000), roomy)).toMatchObject({ violation: { code: 'TOO_MANY_ALIASES', actual: 1_000 } });
    expect(timedRefusal(aliased(1_000), roomy).milliseconds).toBeLessThan(5);
  });
});

describe('our real operations', () => {
  const all = { ...gatewayOperations, ...otherGatewayOperations };

  it.each(Object.entries(all))('pass the gateway defaults: %s', (_name, source) => {
    const parsed = parseWithLimits(source);
    expect(parsed.violation).toBeUndefined();
    expect(checkOperationLimits(parsed.document!, null)).toBeUndefined();
  });

  it('include the deepest and widest figures the defaults are set from (introspection: depth 15, 230 fields)', () => {
    const worst = Object.values(all).map((source) => measure(source));
    expect(Math.max(...worst.map((m) => m.depth))).toBe(15);
    expect(Math.max(...worst.map((m) => m.fields))).toBe(230);
  });

  it('pass the subgraph defaults in every fetch their query plans send, and as the tests send them to subgraphs', () => {
    // As the gateway plans: without the authorization directives it enforces itself.
    const supergraph = Supergraph.build(withoutAuthorizationDirectives(readFileSync(supergraphPath, 'utf8')));
    const planner = new QueryPlanner(supergraph);
    const fetches = Object.values(gatewayOperations).flatMap((source) => {
      const plan: QueryPlan = planner.buildQueryPlan(operationFromDocument(supergraph.schema, parse(source)));
      return fetchesOf(plan.node);
    });
    expect(fetches.length).toBeGreaterThan(Object.keys(gatewayOperations).length);
    for (const source of [...fetches, ...Object.values(subgraphOperations)]) {
      const parsed = parseWithLimits(source, subgraphOperationLimits);
      expect(parsed.violation, source).toBeUndefined();
      expect(checkOperationLimits(parsed.document!, null, subgraphOperationLimits), source).toBeUndefined();
    }
  });

  it('leave the subgraph limits looser than the gateway limits, every one of them', () => {
    for (const [name, limit] of Object.entries(defaultOperationLimits)) {
      expect(subgraphOperationLimits[name as keyof OperationLimits], name).toBeGreaterThan(limit);
    }
  });
});

describe('the operation-limits gateway plugin', () => {
  const parsedDocument = (source: string, operationName: string | null = null) => ({ document: parse(source), source, operationName }) as unknown as ParsedDocument;

  it('refuses a document over a limit with a GatewayRefusal: its code, HTTP 400, the limit and the actual value', () => {
    const plugin = operationLimits({ maxDepth: 3 });
    let refusal: unknown;
    try {
      plugin.onDocument!(parsedDocument(nested(4)));
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(GatewayRefusal);
    expect((refusal as GatewayRefusal).status).toBe(400);
    expect((refusal as GatewayRefusal).toClient()).toEqual({
      message: 'The operation is nested 4 levels deep; the limit is 3',
      extensions: { code: 'OPERATION_TOO_DEEP', limit: 3, actual: 4 },
    });
  });

  it('lets an operation within the limits through, measuring the one operationName selects', () => {
    const plugin = operationLimits({ maxDepth: 3 });
    expect(() => plugin.onDocument!(parsedDocument(`query Ok { a } query Deep ${nested(4)}`, 'Ok'))).not.toThrow();
    expect(() => plugin.onDocument!(parsedDocument(`query Ok { a } query Deep ${nested(4)}`, 'Deep'))).toThrow(GatewayRefusal);
  });

  it("gives the core a parser that refuses over-size and over-token documents and keeps graphql-js's syntax errors", () => {
    const parseDocument = limitedParse({ maxTokens: 5, maxDocumentBytes: 20 });
    expect(parseDocument('{ a b c }').kind).toBe('Document');
    expect(() => parseDocument('{ a b c d }')).toThrow(expect.objectContaining({ extensions: expect.objectContaining({ code: 'TOO_MANY_TOKENS' }) }));
    expect(() => parseDocument(`{ ${'a '.repeat(20)}}`)).toThrow(expect.objectContaining({ extensions: expect.objectContaining({ code: 'DOCUMENT_TOO_LARGE', limit: 20 }) }));
    expect(() => parseDocument('{ a')).toThrow(GraphQLError);
    expect(() => parseDocument('{ a')).not.toThrow(GatewayRefusal);
  });

  it('fails at start-up on a limit that is not a positive integer', () => {
    expect(() => operationLimits({ maxDepth: 0 })).toThrow('maxDepth must be a positive integer');
    expect(() => limitedParse({ maxTokens: Number.NaN })).toThrow('maxTokens must be a positive integer');
  });

  it('reads its limits from the environment, keeping the defaults for variables not set', () => {
    expect(operationLimitsFromEnv({ GATEWAY_MAX_DEPTH: '12', GATEWAY_MAX_DOCUMENT_BYTES: '65536' })).toEqual({ ...defaultOperationLimits, maxDepth: 12, maxDocumentBytes: 65_536 });
    expect(() => operationLimitsFromEnv({ GATEWAY_MAX_ALIASES: 'many' })).toThrow('GATEWAY_MAX_ALIASES must be an integer');
  });
});
