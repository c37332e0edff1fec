/**
 * The accounts context as a web client meets it: through the gateway over HTTP. Every error
 * assertion checks `extensions.code` (and `extensions.field` where the API sets one) and, for
 * mutations, reads the accounts database to prove nothing was written.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { connectAccountsDatabase, type AccountsDatabase } from '../subgraphs/accounts/infrastructure/database.ts';
import { errorCodes, graphql, type GraphQLResponse } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';

let stack: Stack;
let db: AccountsDatabase;

beforeAll(async () => {
  // Every sign-up here comes from one address, more than a person makes in an hour.
  stack = await startStack({ accounts: { throttling: { signUpsPerAddress: 1_000 } } });
  await seedDemoData(stack.databaseUrls);
  db = connectAccountsDatabase(stack.databaseUrls.accounts).db;
});

afterAll(async () => {
  await db?.$disconnect();
  await stack?.stop();
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const signUpMutation = /* GraphQL */ `
  mutation SignUp($email: String!, $password: String!, $name: String!) {
    signUp(email: $email, password: $password, name: $name) { message }
  }
`;

const signInMutation = /* GraphQL */ `
  mutation SignIn($email: String!, $password: String!) {
    signIn(email: $email, password: $password) {
      accessToken
      refreshToken
      token
      expiresAt
      customer { id email name roles createdAt addresses { id } }
    }
  }
`;

/** What sign-up answers, whether the email was free or taken. */
const signUpAnswer = 'If this email can be used, the account is ready: sign in';

const meQuery = /* GraphQL */ `
  query Me {
    me { id email name roles addresses { id label line1 line2 city postalCode country isDefault } }
  }
`;

const addAddressMutation = /* GraphQL */ `
  mutation AddAddress($input: AddressInput!) {
    addAddress(input: $input) { id label line1 line2 city postalCode country isDefault }
  }
`;

const removeAddressMutation = /* GraphQL */ `
  mutation RemoveAddress($id: ID!) { removeAddress(id: $id) }
`;

const uniqueEmail = (tag = 'user') => `${tag}-${randomUUID().slice(0, 12)}@example.com`;

const goodPassword = 'correct horse battery';

interface SignedUp {
  id: string;
  email: string;
  token: string;
}

async function signUp(variables: { email?: string; password?: string; name?: string } = {}): Promise<GraphQLResponse> {
  return graphql(stack.gatewayUrl, {
    query: signUpMutation,
    variables: { email: uniqueEmail(), password: goodPassword, name: 'Test Customer', ...variables },
  });
}

async function signInAs(email: string, password = goodPassword): Promise<GraphQLResponse> {
  return graphql(stack.gatewayUrl, { query: signInMutation, variables: { email, password } });
}

/** A customer as a client makes one: sign up, then sign in. */
async function newCustomer(): Promise<SignedUp> {
  const email = uniqueEmail('customer');
  const res = await signUp({ email });
  expect(res.errors).toBeUndefined();
  const signedIn = await signInAs(email);
  expect(signedIn.errors).toBeUndefined();
  return { id: signedIn.data!.signIn.customer.id, email, token: signedIn.data!.signIn.accessToken };
}

function address(overrides: Record<string, unknown> = {}) {
  return { label: 'Home', line1: 'Hauptstraße 1', city: 'Berlin', postalCode: '10115', country: 'DE', ...overrides };
}

async function addAddress(token: string | undefined, input: Record<string, unknown>): Promise<GraphQLResponse> {
  return graphql(stack.gatewayUrl, { query: addAddressMutation, variables: { input }, ...(token ? { token } : {}) });
}

/** The payload of a JWT, read as a client could (no verification). */
function jwtPayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

function expectOneError(res: GraphQLResponse, code: string, field?: string): void {
  expect(errorCodes(res)).toEqual([code]);
  if (field !== undefined) expect(res.errors![0]!.extensions?.field).toBe(field);
}

/** Queries the accounts subgraph directly, with an identity signed as the gateway would. */
async function entitiesFromAccounts(identity: { customerId: string; roles: ('customer' | 'admin')[] }, customerId: string) {
  return graphql(stack.subgraphs.accounts.url, {
    query: /* GraphQL */ `
      query Entities($representations: [_Any!]!) {
        _entities(representations: $representations) { ... on Customer { id email name } }
      }
    `,
    variables: { representations: [{ __typename: 'Customer', id: customerId }] },
    headers: { 'x-commerce-identity': await stack.signer.sign(identity, 'accounts') },
  });
}

// ---------------------------------------------------------------------------------------------
// Signing up
// ---------------------------------------------------------------------------------------------

describe('signing up with valid details', () => {
  it('answers that the account is ready; signing in then returns tokens that work for `me` through the gateway', async () => {
    const email = uniqueEmail('fresh');
    const res = await signUp({ email, name: 'Grace Hopper' });

    expect(res.status).toBe(200);
    expect(res.errors).toBeUndefined();
    expect(res.data!.signUp).toEqual({ message: signUpAnswer });

    const signedIn = await signInAs(email);
    expect(signedIn.errors).toBeUndefined();
    const payload = signedIn.data!.signIn;
    expect(payload.customer).toMatchObject({ email, name: 'Grace Hopper', roles: ['CUSTOMER'], addresses: [] });
    expect(Number.isNaN(Date.parse(payload.customer.createdAt))).toBe(false);
    // A mobile session: a short access token (AUTH_ACCESS_TOKEN_TTL_SECONDS, 300 s) and a refresh token.
    const expiresIn = Date.parse(payload.expiresAt) - Date.now();
    expect(expiresIn).toBeGreaterThan(250_000);
    expect(expiresIn).toBeLessThanOrEqual(300_000);
    expect(payload.refreshToken).toMatch(/^rt_[A-Za-z0-9_-]{43}$/);
    expect(payload.token).toBe(payload.accessToken);
    expect(jwtPayload(payload.accessToken).sid).toEqual(expect.any(String));

    const me = await graphql(stack.gatewayUrl, { query: meQuery, token: payload.accessToken });
    expect(me.errors).toBeUndefined();
    expect(me.data!.me).toEqual({ id: payload.customer.id, email, name: 'Grace Hopper', roles: ['CUSTOMER'], addresses: [] });
  });

  it('answers `me` with null and UNAUTHORIZED_FIELD_OR_TYPE for an anonymous caller (`me` is @authenticated)', async () => {
    const me = await graphql(stack.gatewayUrl, { query: meQuery });
    expect(me.data?.me ?? null).toBeNull();
    expect(me.errors?.map((error) => [error.path, error.extensions?.code])).toEqual([[['me'], 'UNAUTHORIZED_FIELD_OR_TYPE']]);
  });

  it('stores the email trimmed and lower-cased, and the name trimmed', async () => {
    const local = `Mixed.Case-${randomUUID().slice(0, 8)}`;
    const res = await signUp({ email: `  ${local}@Example.COM \t`, name: '  Ada Lovelace  ' });

    expect(res.errors).toBeUndefined();
    const normalised = `${local.toLowerCase()}@example.com`;
    const row = await db.customer.findUnique({ where: { email: normalised } });
    expect(row).toMatchObject({ email: normalised, name: 'Ada Lovelace', roles: ['customer'] });
  });

  it('stores the password only as a salted scrypt hash that does not contain the password', async () => {
    const password = `Secret-${randomUUID()}`;
    const emails = [uniqueEmail('salt'), uniqueEmail('salt')];
    for (const email of emails) expect((await signUp({ email, password })).errors).toBeUndefined();

    const rows = await db.customer.findMany({ where: { email: { in: emails } } });
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row.passwordHash).toMatch(/^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/);
      expect(row.passwordHash).not.toContain(password);
      expect(row.passwordHash).not.toContain(Buffer.from(password).toString('base64'));
    }
    // Salted: the same password never hashes to the same string twice.
    expect(rows[0]!.passwordHash).not.toBe(rows[1]!.passwordHash);
  });

  it('accepts the longest allowed email (254), password (128) and name (100) and the shortest password (8)', async () => {
    const longEmail = `${'a'.repeat(254 - '@example.com'.length - 9)}-${randomUUID().slice(0, 8)}@example.com`;
    expect(longEmail).toHaveLength(254);
    const long = await signUp({ email: longEmail, password: 'p'.repeat(128), name: 'n'.repeat(100) });
    expect(long.errors).toBeUndefined();
    expect(await db.customer.findUnique({ where: { email: longEmail } })).toMatchObject({ email: longEmail, name: 'n'.repeat(100) });
    expect((await signInAs(longEmail, 'p'.repeat(128))).errors).toBeUndefined();

    const shortEmail = uniqueEmail('short');
    expect((await signUp({ email: shortEmail, password: '12345678' })).errors).toBeUndefined();
    expect((await signInAs(shortEmail, '12345678')).errors).toBeUndefined();
  });
});

describe('signing up with an email that is already taken', () => {
  it('answers a second sign-up whose email differs only in case and spacing exactly like the first, and writes nothing', async () => {
    const email = uniqueEmail('taken');
    const first = await signUp({ email, name: 'First Owner' });
    expect(first.errors).toBeUndefined();
    const before = await db.customer.findUnique({ where: { email } });

    const second = await signUp({ email: `  ${email.toUpperCase()} `, name: 'Second Comer', password: 'another password' });

    // Nothing tells the caller that the email has an account.
    expect({ status: second.status, body: second.data }).toEqual({ status: first.status, body: first.data });
    expect(second.errors).toBeUndefined();
    const rows = await db.customer.findMany({ where: { email } });
    expect(rows).toEqual([before]);
  });

  it('writes exactly one account for two simultaneous sign-ups with one email, and answers both alike', async () => {
    const email = uniqueEmail('race');

    const results = await Promise.all([signUp({ email, name: 'Racer One' }), signUp({ email: email.toUpperCase(), name: 'Racer Two' })]);

    for (const res of results) expect(res).toEqual({ status: 200, data: { signUp: { message: signUpAnswer } } });
    expect(await db.customer.count({ where: { email } })).toBe(1);
  });

  it('keeps the original password working after a second sign-up with another password', async () => {
    const email = uniqueEmail('keeps');
    expect((await signUp({ email, password: 'original password' })).errors).toBeUndefined();
    expect((await signUp({ email, password: 'hijacker password' })).errors).toBeUndefined();

    const original = await signInAs(email, 'original password');
    const hijacker = await signInAs(email, 'hijacker password');
    expect(original.errors).toBeUndefined();
    expectOneError(hijacker, 'UNAUTHENTICATED');
  });
});

describe('signing up with invalid details', () => {
  const cases: { label: string; variables: Record<string, string>; field: string }[] = [
    { label: 'an empty email', variables: { email: '' }, field: 'email' },
    { label: 'a whitespace-only email', variables: { email: '   ' }, field: 'email' },
    { label: 'an email of 255 characters', variables: { email: `${'a'.repeat(243)}@example.com` }, field: 'email' },
    { label: 'an email without @', variables: { email: 'ada.example.com' }, field: 'email' },
    { label: 'an email without a dot in the domain', variables: { email: 'ada@example' }, field: 'email' },
    { label: 'an email with two @', variables: { email: 'ada@@example.com' }, field: 'email' },
    { label: 'an email with a space inside', variables: { email: 'ada lovelace@example.com' }, field: 'email' },
    { label: 'a password of 7 characters', variables: { password: '1234567' }, field: 'password' },
    { label: 'a password of 129 characters', variables: { password: 'p'.repeat(129) }, field: 'password' },
    { label: 'a whitespace-only password', variables: { password: '          ' }, field: 'password' },
    { label: 'an empty name', variables: { name: '' }, field: 'name' },
    { label: 'a whitespace-only name', variables: { name: '    ' }, field: 'name' },
    { label: 'a name of 101 characters', variables: { name: 'n'.repeat(101) }, field: 'name' },
  ];

  it.each(cases)('refuses $label with BAD_USER_INPUT on $field and writes nothing', async ({ variables, field }) => {
    const email = uniqueEmail('invalid');
    const before = await db.customer.count();

    const res = await signUp({ email, ...variables });

    expect(res.status).toBe(200);
    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', field);
    expect(res.errors![0]!.message.length).toBeGreaterThan(0);
    expect(await db.customer.count()).toBe(before);
    expect(await db.customer.findUnique({ where: { email } })).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// Signing in
// ---------------------------------------------------------------------------------------------

describe('signing in with the right credentials', () => {
  it('returns a token for the same customer whatever the case and spacing of the email', async () => {
    const { id, email } = await newCustomer();

    const res = await graphql(stack.gatewayUrl, { query: signInMutation, variables: { email: ` ${email.toUpperCase()}  `, password: goodPassword } });

    expect(res.errors).toBeUndefined();
    expect(res.data!.signIn.customer).toMatchObject({ id, email, roles: ['CUSTOMER'] });
    const me = await graphql(stack.gatewayUrl, { query: meQuery, token: res.data!.signIn.accessToken });
    expect(me.data!.me.id).toBe(id);
  });

  it("gives the demo admin a token carrying the admin role, which can call an admin mutation", async () => {
    const res = await graphql(stack.gatewayUrl, {
      query: signInMutation,
      variables: { email: demoUsers.admin.email, password: demoUsers.admin.password },
    });
    expect(res.errors).toBeUndefined();
    const { accessToken: token, customer } = res.data!.signIn;
    expect(customer.id).toBe(deterministicUuid('customer', demoUsers.admin.email));
    expect([...customer.roles].sort()).toEqual(['ADMIN', 'CUSTOMER']);
    const claims = jwtPayload(token);
    expect(claims.sub).toBe(customer.id);
    expect([...(claims.roles as string[])].sort()).toEqual(['admin', 'customer']);

    const { data: categories } = await graphql(stack.gatewayUrl, { query: '{ categories { id slug } }' });
    const sku = `ACC-${randomUUID().slice(0, 8).toUpperCase()}`;
    const created = await graphql(stack.gatewayUrl, {
      query: 'mutation($input: CreateProductInput!) { createProduct(input: $input) { id sku } }',
      variables: { input: { sku, name: 'Admin-made thing', price: 1000, currency: 'EUR', categoryId: categories!.categories[0].id } },
      token,
    });
    expect(created.errors).toBeUndefined();
    expect(created.data!.createProduct.sku).toBe(sku);
  });

  it('gives the demo customer a token without the admin role, which the gateway refuses admin mutations (UNAUTHORIZED_FIELD_OR_TYPE)', async () => {
    const res = await graphql(stack.gatewayUrl, {
      query: signInMutation,
      variables: { email: demoUsers.customer.email, password: demoUsers.customer.password },
    });
    expect(res.errors).toBeUndefined();
    expect(res.data!.signIn.customer.roles).toEqual(['CUSTOMER']);
    expect(jwtPayload(res.data!.signIn.accessToken).roles).toEqual(['customer']);

    const { data: categories } = await graphql(stack.gatewayUrl, { query: '{ categories { id } }' });
    const sku = `ACC-${randomUUID().slice(0, 8).toUpperCase()}`;
    const created = await graphql(stack.gatewayUrl, {
      query: 'mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }',
      variables: { input: { sku, name: 'Not allowed', price: 1000, currency: 'EUR', categoryId: categories!.categories[0].id } },
      token: res.data!.signIn.accessToken,
    });
    expectOneError(created, 'UNAUTHORIZED_FIELD_OR_TYPE');
    const found = await graphql(stack.gatewayUrl, { query: '{ products(filter: { search: "Not allowed" }) { totalCount } }' });
    expect(found.data!.products.totalCount).toBe(0);
  });
});

describe('signing in with the wrong credentials', () => {
  it('refuses a wrong password and an unknown email alike: UNAUTHENTICATED with the same message', async () => {
    const { email } = await newCustomer();

    const wrongPassword = await graphql(stack.gatewayUrl, { query: signInMutation, variables: { email, password: 'not the password' } });
    const unknownEmail = await graphql(stack.gatewayUrl, { query: signInMutation, variables: { email: uniqueEmail('nobody'), password: goodPassword } });

    for (const res of [wrongPassword, unknownEmail]) {
      expect(res.status).toBe(200);
      expect(res.data).toBeNull();
      expectOneError(res, 'UNAUTHENTICATED');
    }
    expect(wrongPassword.errors![0]!.message).toBe(unknownEmail.errors![0]!.message);
  });

  it('refuses an empty email and an empty password with UNAUTHENTICATED', async () => {
    const { email } = await newCustomer();
    const emptyEmail = await graphql(stack.gatewayUrl, { query: signInMutation, variables: { email: '', password: goodPassword } });
    const emptyPassword = await graphql(stack.gatewayUrl, { query: signInMutation, variables: { email, password: '' } });
    expectOneError(emptyEmail, 'UNAUTHENTICATED');
    expectOneError(emptyPassword, 'UNAUTHENTICATED');
  });
});

describe('calling with a bad bearer token', () => {
  it('refuses a token with a tampered payload with HTTP 401 UNAUTHENTICATED instead of treating it as anonymous', async () => {
    const { token } = await newCustomer();
    const [header, , signature] = token.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...jwtPayload(token), roles: ['customer', 'admin'] })).toString('base64url');

    const res = await graphql(stack.gatewayUrl, { query: meQuery, token: `${header}.${forgedPayload}.${signature}` });

    expect(res.status).toBe(401);
    expectOneError(res, 'UNAUTHENTICATED');
  });
});

// ---------------------------------------------------------------------------------------------
// Address book
// ---------------------------------------------------------------------------------------------

describe('adding addresses', () => {
  it('makes the first address the default even when not asked to, and normalises the country', async () => {
    const { id, token } = await newCustomer();

    const res = await addAddress(token, address({ country: ' de ', isDefault: false, line2: '  ' }));

    expect(res.errors).toBeUndefined();
    expect(res.data!.addAddress).toMatchObject({ label: 'Home', line1: 'Hauptstraße 1', line2: null, city: 'Berlin', country: 'DE', isDefault: true });
    const rows = await db.address.findMany({ where: { customerId: id } });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: res.data!.addAddress.id, country: 'DE', isDefault: true, line2: null });
  });

  it('keeps the current default when a later address is not marked default', async () => {
    const { id, token } = await newCustomer();
    const first = await addAddress(token, address({ label: 'Home' }));
    const second = await addAddress(token, address({ label: 'Work', line1: 'Friedrichstraße 2' }));

    expect(second.errors).toBeUndefined();
    expect(second.data!.addAddress.isDefault).toBe(false);
    const defaults = await db.address.findMany({ where: { customerId: id, isDefault: true } });
    expect(defaults.map((row) => row.id)).toEqual([first.data!.addAddress.id]);
  });

  it('moves the default flag to a new default address, leaving exactly one default', async () => {
    const { id, token } = await newCustomer();
    const first = await addAddress(token, address({ label: 'Home' }));
    const second = await addAddress(token, address({ label: 'Work', line1: 'Friedrichstraße 2', isDefault: true }));

    expect(second.errors).toBeUndefined();
    expect(second.data!.addAddress.isDefault).toBe(true);
    const rows = await db.address.findMany({ where: { customerId: id } });
    expect(rows).toHaveLength(2);
    expect(rows.filter((row) => row.isDefault).map((row) => row.id)).toEqual([second.data!.addAddress.id]);

    const me = await graphql(stack.gatewayUrl, { query: meQuery, token });
    expect(me.data!.me.addresses.map((a: { id: string; isDefault: boolean }) => [a.id, a.isDefault])).toEqual([
      [second.data!.addAddress.id, true],
      [first.data!.addAddress.id, false],
    ]);
  });

  it('keeps exactly one default when several default addresses are added at once', async () => {
    const { id, token } = await newCustomer();

    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => addAddress(token, address({ label: `Place ${i}`, isDefault: true }))));

    for (const res of results) expect(res.errors).toBeUndefined();
    const rows = await db.address.findMany({ where: { customerId: id } });
    expect(rows).toHaveLength(6);
    expect(rows.filter((row) => row.isDefault)).toHaveLength(1);
  });

  it('refuses a 21st address with CONFLICT and keeps 20', async () => {
    const { id, token } = await newCustomer();
    for (let i = 0; i < 20; i++) {
      const res = await addAddress(token, address({ label: `Place ${i}` }));
      expect(res.errors).toBeUndefined();
    }

    const res = await addAddress(token, address({ label: 'One too many' }));

    expectOneError(res, 'CONFLICT');
    expect(await db.address.count({ where: { customerId: id } })).toBe(20);
  });
});

describe('adding an invalid address', () => {
  const cases: { label: string; overrides: Record<string, unknown>; field: string }[] = [
    { label: 'a country name instead of a code', overrides: { country: 'Germany' }, field: 'input.country' },
    { label: 'a one-letter country', overrides: { country: 'D' }, field: 'input.country' },
    { label: 'a country with a digit', overrides: { country: 'D1' }, field: 'input.country' },
    { label: 'an empty country', overrides: { country: '' }, field: 'input.country' },
    { label: 'a blank first line', overrides: { line1: '   ' }, field: 'input.line1' },
    { label: 'a blank city', overrides: { city: '' }, field: 'input.city' },
    { label: 'a postal code of 21 characters', overrides: { postalCode: '1'.repeat(21) }, field: 'input.postalCode' },
    { label: 'a label of 51 characters', overrides: { label: 'l'.repeat(51) }, field: 'input.label' },
  ];

  it.each(cases)('refuses $label with BAD_USER_INPUT on $field and writes nothing', async ({ overrides, field }) => {
    const { id, token } = await newCustomer();

    const res = await addAddress(token, address(overrides));

    expect(res.data).toBeNull();
    expectOneError(res, 'BAD_USER_INPUT', field);
    expect(await db.address.count({ where: { customerId: id } })).toBe(0);
  });

  it('refuses a validly signed token whose account does not exist (any more) with a client error, not an internal one, and writes nothing', async () => {
    const goneCustomerId = randomUUID();
    const token = await stack.tokenFor({ customerId: goneCustomerId, roles: ['customer'] });

    const res = await addAddress(token, address());

    expect(res.data).toBeNull();
    expect(res.errors).toHaveLength(1);
    expect(['UNAUTHENTICATED', 'NOT_FOUND']).toContain(res.errors![0]!.extensions?.code);
    expect(res.errors![0]!.message).not.toMatch(/prisma|invocation|constraint/i);
    expect(await db.address.count({ where: { customerId: goneCustomerId } })).toBe(0);
  });

  it('refuses an anonymous caller at the gateway (UNAUTHORIZED_FIELD_OR_TYPE) and writes nothing', async () => {
    const before = await db.address.count();

    const res = await addAddress(undefined, address());

    expect(res.data).toBeNull();
    expectOneError(res, 'UNAUTHORIZED_FIELD_OR_TYPE');
    expect(await db.address.count()).toBe(before);
  });
});

describe('removing addresses', () => {
  it('removes one of your own addresses', async () => {
    const { token } = await newCustomer();
    const added = await addAddress(token, address());
    const addressId = added.data!.addAddress.id as string;

    const res = await graphql(stack.gatewayUrl, { query: removeAddressMutation, variables: { id: addressId }, token });

    expect(res.errors).toBeUndefined();
    expect(res.data!.removeAddress).toBe(true);
    expect(await db.address.findUnique({ where: { id: addressId } })).toBeNull();
  });

  it("refuses to remove someone else's address with NOT_FOUND and leaves it in place", async () => {
    const owner = await newCustomer();
    const intruder = await newCustomer();
    const added = await addAddress(owner.token, address());
    const addressId = added.data!.addAddress.id as string;

    const res = await graphql(stack.gatewayUrl, { query: removeAddressMutation, variables: { id: addressId }, token: intruder.token });

    expect(res.data).toBeNull();
    expectOneError(res, 'NOT_FOUND');
    expect(await db.address.findUnique({ where: { id: addressId } })).toMatchObject({ customerId: owner.id, isDefault: true });
  });

  it('refuses an id that is not a uuid, and an unknown one, with NOT_FOUND', async () => {
    const { token } = await newCustomer();
    const malformed = await graphql(stack.gatewayUrl, { query: removeAddressMutation, variables: { id: 'not-a-uuid' }, token });
    const unknown = await graphql(stack.gatewayUrl, { query: removeAddressMutation, variables: { id: randomUUID() }, token });
    expectOneError(malformed, 'NOT_FOUND');
    expectOneError(unknown, 'NOT_FOUND');
  });

  it('refuses an anonymous caller at the gateway (UNAUTHORIZED_FIELD_OR_TYPE) and leaves the address in place', async () => {
    const owner = await newCustomer();
    const added = await addAddress(owner.token, address());
    const addressId = added.data!.addAddress.id as string;

    const res = await graphql(stack.gatewayUrl, { query: removeAddressMutation, variables: { id: addressId } });

    expectOneError(res, 'UNAUTHORIZED_FIELD_OR_TYPE');
    expect(await db.address.findUnique({ where: { id: addressId } })).not.toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// Privacy of customers at the subgraph
// ---------------------------------------------------------------------------------------------

describe('resolving Customer entities straight from the accounts subgraph', () => {
  it("refuses a customer reading another customer with FORBIDDEN and reveals nothing", async () => {
    const victim = await newCustomer();
    const snoop = await newCustomer();

    const res = await entitiesFromAccounts({ customerId: snoop.id, roles: ['customer'] }, victim.id);

    expect(errorCodes(res)).toEqual(['FORBIDDEN']);
    expect(JSON.stringify(res)).not.toContain(victim.email);
    expect(res.data?._entities?.[0] ?? null).toBeNull();
  });

  it('lets a customer resolve themself', async () => {
    const self = await newCustomer();

    const res = await entitiesFromAccounts({ customerId: self.id, roles: ['customer'] }, self.id);

    expect(res.errors).toBeUndefined();
    expect(res.data!._entities).toEqual([{ id: self.id, email: self.email, name: 'Test Customer' }]);
  });

  it('lets an admin resolve any customer', async () => {
    const customer = await newCustomer();

    const res = await entitiesFromAccounts({ customerId: randomUUID(), roles: ['customer', 'admin'] }, customer.id);

    expect(res.errors).toBeUndefined();
    expect(res.data!._entities).toEqual([{ id: customer.id, email: customer.email, name: 'Test Customer' }]);
  });

  it('refuses a request that does not carry the gateway-signed identity with HTTP 401', async () => {
    const customer = await newCustomer();
    const res = await graphql(stack.subgraphs.accounts.url, {
      query: 'query($r: [_Any!]!) { _entities(representations: $r) { ... on Customer { email } } }',
      variables: { r: [{ __typename: 'Customer', id: customer.id }] },
    });
    expect(res.status).toBe(401);
    expectOneError(res, 'UNAUTHENTICATED');
  });
});
