/**
 * The demo accounts `npm start` seeds, as a newcomer meets them: signed in with the README's
 * passwords, each has an address book; seeding again (the next start) neither duplicates nor
 * restores what the customer changed in it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';

const addressesQuery = '{ me { addresses { id label line1 line2 city postalCode country isDefault } } }';

describe('the demo accounts’ address books', () => {
  let stack: Stack;
  const tokens: Partial<Record<keyof typeof demoUsers, string>> = {};

  const signIn = async (who: keyof typeof demoUsers): Promise<string> => {
    const response = await graphql(stack.gatewayUrl, {
      query: 'mutation ($email: String!, $password: String!) { signIn(email: $email, password: $password) { accessToken } }',
      variables: { email: demoUsers[who].email, password: demoUsers[who].password },
    });
    return (tokens[who] = response.data!.signIn.accessToken as string);
  };
  const addressesOf = async (who: keyof typeof demoUsers) => {
    const response = await graphql(stack.gatewayUrl, { query: addressesQuery, token: tokens[who] ?? (await signIn(who)) });
    expect(response.errors).toBeUndefined();
    return response.data!.me.addresses as { id: string; label: string; city: string; isDefault: boolean }[];
  };

  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('are filled on the first seeding: every demo account has its addresses, exactly one of them the default', async () => {
    const seeded = await seedDemoData(stack.databaseUrls);
    expect(seeded.customers).toBe(2);
    expect(seeded.addresses).toBe(demoUsers.admin.addresses.length + demoUsers.customer.addresses.length);
    for (const who of ['admin', 'customer'] as const) {
      const addresses = await addressesOf(who);
      expect(addresses.map((a) => [a.label, a.city]).sort(), who).toEqual(demoUsers[who].addresses.map((a) => [a.label, a.city]).sort());
      expect(addresses.filter((a) => a.isDefault), who).toHaveLength(1);
    }
    // The README's place-order step ships to the customer's default address.
    expect((await addressesOf('customer'))[0]).toMatchObject({ label: 'Home', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE', isDefault: true });
  });

  it('are not duplicated by a second seeding (the next `npm start`)', async () => {
    const before = await addressesOf('customer');
    const seeded = await seedDemoData(stack.databaseUrls);
    expect(seeded).toMatchObject({ customers: 0, addresses: 0 });
    expect(await addressesOf('customer')).toEqual(before);
  });

  it('keep an address the customer removed removed across seedings', async () => {
    const [, work] = await addressesOf('customer');
    const removed = await graphql(stack.gatewayUrl, { query: 'mutation ($id: ID!) { removeAddress(id: $id) }', variables: { id: work!.id }, token: tokens.customer });
    expect(removed.errors).toBeUndefined();
    await seedDemoData(stack.databaseUrls);
    expect((await addressesOf('customer')).map((a) => a.label)).toEqual(['Home']);
  });
});
