import { Client, fetchExchange, gql } from '@urql/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deterministicUuid } from '../platform/ids.ts';
import { demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';

/** What @urql/core 6 sends with a query (its makeFetchOptions): no content-type on a GET. */
const urqlAccept = 'application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed';
const clientHeaders = { 'apollographql-client-name': 'storefront-web', 'apollographql-client-version': '1.4.0' };
const product = demoProducts[0]!;

describe('queries over GET (urql and other clients that cache by URL)', () => {
  let stack: Stack;
  let adminToken: string;

  beforeAll(async () => {
    stack = await startStack();
    await seedDemoData(stack.databaseUrls);
    adminToken = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] });
  });
  afterAll(() => stack?.stop());

  const getUrl = (query: string, variables?: Record<string, unknown>) => {
    const url = new URL(stack.gatewayUrl);
    url.searchParams.set('query', query);
    if (variables) url.searchParams.set('variables', JSON.stringify(variables));
    return url;
  };

  it('answers a GET query from a client that names itself (apollographql-client-name), with the headers urql sends', async () => {
    const response = await fetch(getUrl('query ($id: ID!) { product(id: $id) { name } }', { id: product.id }), { headers: { accept: urqlAccept, ...clientHeaders } });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ data: { product: { name: product.name } } });
  });

  it('refuses a GET query that neither names its client nor forces a preflight: what a cross-site <img> or link could send', async () => {
    const response = await fetch(getUrl('{ categories { name } }'), { headers: { accept: urqlAccept } });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { errors: { extensions?: { code?: string } }[] };
    expect(body.errors[0]?.extensions?.code).toBe('BAD_REQUEST');
  });

  it('refuses a mutation over GET with 405 and BAD_REQUEST, and nothing changes', async () => {
    const mutation = 'mutation ($id: ID!) { discontinueProduct(id: $id) { discontinued } }';
    const response = await fetch(getUrl(mutation, { id: product.id }), { headers: { accept: urqlAccept, ...clientHeaders, authorization: `Bearer ${adminToken}` } });
    expect(response.status).toBe(405);
    const body = (await response.json()) as { data?: unknown; errors: { extensions?: { code?: string } }[] };
    expect(body.data).toBeUndefined();
    expect(body.errors[0]?.extensions?.code).toBe('BAD_REQUEST');
    const after = await graphql(stack.gatewayUrl, { query: 'query ($id: ID!) { product(id: $id) { discontinued } }', variables: { id: product.id } });
    expect(after.data).toEqual({ product: { discontinued: false } });
  });

  it('works with urql as configured out of the box (queries as GET within the URL limit), naming its client', async () => {
    const methods: string[] = [];
    const client = new Client({
      url: stack.gatewayUrl,
      exchanges: [fetchExchange],
      // The one line a web app adds: name the client (the gateway's logs and limits use it too).
      fetchOptions: { headers: clientHeaders },
      fetch: (input, init) => {
        methods.push(init?.method ?? 'GET');
        return fetch(input, init);
      },
    });
    const query = await client.query(gql`query Product($id: ID!) { product(id: $id) { id nodeId name } }`, { id: product.id }).toPromise();
    expect(query.error).toBeUndefined();
    expect(query.data.product).toMatchObject({ id: product.id, name: product.name });

    const mutation = await client
      .mutation(gql`mutation SignIn($email: String!, $password: String!) { signIn(email: $email, password: $password) { customer { email } } }`, {
        email: demoUsers.customer.email,
        password: demoUsers.customer.password,
      })
      .toPromise();
    expect(mutation.error).toBeUndefined();
    expect(mutation.data.signIn.customer.email).toBe(demoUsers.customer.email);
    expect(methods).toEqual(['GET', 'POST']);
  });

  it('urql without a client name: its GET query is refused, and preferGetMethod: false is the other one-line fix', async () => {
    const anonymous = new Client({ url: stack.gatewayUrl, exchanges: [fetchExchange] });
    const refused = await anonymous.query(gql`{ categories { name } }`, {}).toPromise();
    expect(refused.error?.response?.status).toBe(400);

    const overPost = new Client({ url: stack.gatewayUrl, exchanges: [fetchExchange], preferGetMethod: false });
    const answered = await overPost.query(gql`{ categories { name } }`, {}).toPromise();
    expect(answered.error).toBeUndefined();
    expect(answered.data.categories.length).toBeGreaterThan(0);
  });
});
