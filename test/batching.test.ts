import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContextName } from '../platform/contexts.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import { demoCategories, demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';

/** How many SQL statements a context's database received while `work` ran. */
async function statementsDuring(stack: Stack, context: ContextName, work: () => Promise<unknown>): Promise<number> {
  const before = stack.subgraphs[context].statements.count;
  await work();
  return stack.subgraphs[context].statements.count - before;
}

describe('entity fetches are batched: one SQL statement whatever the list length', () => {
  let stack: Stack;
  const admin = { customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] as const };

  beforeAll(async () => {
    stack = await startStack();
    await seedDemoData(stack.databaseUrls);
  });
  afterAll(() => stack?.stop());

  async function fetchEntities(context: ContextName, typename: string, ids: string[], selection: string) {
    const response = await graphql(stack.subgraphs[context].url, {
      query: `query ($representations: [_Any!]!) { _entities(representations: $representations) { ... on ${typename} { ${selection} } } }`,
      variables: { representations: ids.map((id) => ({ __typename: typename, id })) },
      headers: { [gatewayIdentityHeader]: await stack.signer.sign({ customerId: admin.customerId, roles: [...admin.roles] }, context) },
    });
    expect(response.errors).toBeUndefined();
    return response.data!._entities as unknown[];
  }

  const cases: { context: ContextName; typename: string; ids: () => string[]; selection: string }[] = [
    { context: 'catalog', typename: 'Product', ids: () => demoProducts.map((p) => p.id), selection: 'id name price' },
    { context: 'catalog', typename: 'Category', ids: () => demoCategories.map((c) => c.id), selection: 'id name' },
    { context: 'inventory', typename: 'Product', ids: () => demoProducts.map((p) => p.id), selection: 'id stock { available reserved } inStock' },
    { context: 'accounts', typename: 'Customer', ids: () => [admin.customerId], selection: 'id email' },
  ];

  for (const { context, typename, ids, selection } of cases) {
    for (const length of [1, 6, 60]) {
      it(`resolves ${length} ${typename} reference(s) in ${context} with one statement`, async () => {
        const known = ids();
        // Repeat known ids to reach the length; unknown ones are in the same statement too.
        const wanted = Array.from({ length }, (_, i) => (i % 7 === 6 ? deterministicUuid('missing', String(i)) : known[i % known.length]!));
        let entities: unknown[] = [];
        const statements = await statementsDuring(stack, context, async () => {
          entities = await fetchEntities(context, typename, wanted, selection);
        });
        expect(entities).toHaveLength(length);
        expect(statements).toBe(1);
      });
    }
  }

  it('plans a 60-product page across catalog and inventory with one inventory statement', async () => {
    let response: Awaited<ReturnType<typeof graphql<Record<string, any>>>> | undefined;
    const inventoryStatements = await statementsDuring(stack, 'inventory', async () => {
      response = await graphql(stack.gatewayUrl, { query: '{ products(first: 60) { edges { node { name category { name } stock { available } inStock } } } }' });
    });
    expect(response!.errors).toBeUndefined();
    expect(response!.data!.products.edges).toHaveLength(60);
    expect(inventoryStatements).toBe(1);
  });

  it('loads the categories of a whole page with one statement besides the page itself', async () => {
    const catalogStatements = await statementsDuring(stack, 'catalog', () =>
      graphql(stack.gatewayUrl, { query: '{ products(first: 60) { edges { node { name category { name } } } } }' }),
    );
    expect(catalogStatements).toBe(2);
  });
});
