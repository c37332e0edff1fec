/**
 * Sessions at the accounts subgraph, talked to as the gateway talks to it (its signed identity on
 * every request): refresh-token rotation and reuse detection, sign-out, password changes, the
 * revocation feed the gateway polls, the JWKS it verifies tokens with, and web (cookie) sessions.
 * docs/decisions/0022-sessions.md is the contract.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportSPKI, generateKeyPair, type CryptoKey, type JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { dropDatabase } from '../platform/database/provision.ts';
import { issueCustomerToken, verifyCustomerToken } from '../platform/identity/customer-token.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import type { Identity } from '../platform/identity/identity.ts';
import { importPublicKeys, keyIdOf, signingAlgorithm } from '../platform/identity/keys.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { connectAccountsDatabase, type AccountsDatabase } from '../subgraphs/accounts/infrastructure/database.ts';
import { startAccountsSubgraph } from '../subgraphs/accounts/subgraph.ts';
import { errorCodes, type GraphQLResponse } from './support/graphql.ts';
import { cloneDatabase } from './support/postgres.ts';
import { freshDatabaseName, templateDatabaseName } from './support/run.ts';
import { generateTestKeys, type TestKeys } from './support/stack.ts';

let keys: TestKeys;
let retiredKeys: { privateKey: CryptoKey; publicKey: CryptoKey }[];
let accounts: RunningContextSubgraph;
let databaseUrl: string;
let db: AccountsDatabase;
let signer: GatewayIdentitySigner;
const baseUrl = () => accounts.url.replace(/\/graphql$/, '');

beforeAll(async () => {
  keys = await generateTestKeys();
  retiredKeys = [await generateKeyPair(signingAlgorithm, { extractable: true }), await generateKeyPair(signingAlgorithm, { extractable: true })];
  // As AUTH_TOKEN_RETIRED_PUBLIC_KEYS holds them: PEMs one after another.
  const retiredPems = (await Promise.all(retiredKeys.map((pair) => exportSPKI(pair.publicKey)))).join('\n');
  databaseUrl = await cloneDatabase(inject('testServerUrl'), templateDatabaseName(inject('runPrefix'), 'accounts'), freshDatabaseName(inject('runPrefix'), 'accounts'));
  accounts = await startAccountsSubgraph({
    databaseUrl,
    port: 0,
    host: '127.0.0.1',
    gatewayPublicKey: keys.gatewayIdentity.publicKey,
    production: false,
    authTokenPrivateKey: keys.authToken.privateKey,
    retiredTokenPublicKeys: await importPublicKeys(retiredPems),
  });
  db = connectAccountsDatabase(databaseUrl).db;
  signer = new GatewayIdentitySigner(keys.gatewayIdentity.privateKey);
});

afterAll(async () => {
  await db?.$disconnect();
  await accounts?.stop();
  if (databaseUrl) await dropDatabase(databaseUrl);
});

// ---------------------------------------------------------------------------------------------
// Talking to accounts as the gateway does
// ---------------------------------------------------------------------------------------------

interface Answer extends GraphQLResponse {
  headers: Headers;
}

const anonymous: Identity = { customerId: null, roles: [] };

async function call(query: string, variables: Record<string, unknown>, identity: Identity = anonymous, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(accounts.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', [gatewayIdentityHeader]: await signer.sign(identity, 'accounts'), ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, headers: response.headers, ...((await response.json()) as Omit<GraphQLResponse, 'status'>) };
}

const payloadFields = 'accessToken refreshToken token expiresAt customer { id email }';
const password = 'correct horse battery';

interface Session {
  customerId: string;
  email: string;
  accessToken: string;
  refreshToken: string;
  sessionId: string;
}

/** The identity the gateway forwards for a verified access token. */
function identityOf(accessToken: string): Identity {
  const claims = decodeJwt(accessToken);
  return { customerId: claims.sub!, roles: claims.roles as Identity['roles'], sessionId: claims.sid as string };
}

async function newAccount(): Promise<string> {
  const email = `session-${randomUUID().slice(0, 12)}@example.com`;
  const res = await call('mutation($e: String!, $p: String!) { signUp(email: $e, password: $p, name: "Sam") { message } }', { e: email, p: password }, anonymous, {
    'x-commerce-client-address': `198.51.100.${randomBytes(1)[0]}`,
  });
  expect(res.errors).toBeUndefined();
  return email;
}

async function signIn(email: string, pass = password, headers: Record<string, string> = {}): Promise<Answer> {
  return call(`mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { ${payloadFields} } }`, { e: email, p: pass }, anonymous, headers);
}

function sessionFrom(res: Answer, key: 'signIn' | 'refreshSession' | 'changePassword', email: string): Session {
  expect(res.errors).toBeUndefined();
  const payload = res.data![key];
  return { customerId: payload.customer.id, email, accessToken: payload.accessToken, refreshToken: payload.refreshToken, sessionId: decodeJwt(payload.accessToken).sid as string };
}

async function newSession(email?: string): Promise<Session> {
  const address = email ?? (await newAccount());
  return sessionFrom(await signIn(address), 'signIn', address);
}

function refresh(refreshToken: string): Promise<Answer> {
  return call(`mutation($t: String!) { refreshSession(refreshToken: $t) { ${payloadFields} } }`, { t: refreshToken });
}

function signOut(session: Pick<Session, 'accessToken'>, everywhere = false, headers: Record<string, string> = {}): Promise<Answer> {
  return call('mutation($everywhere: Boolean) { signOut(everywhere: $everywhere) }', { everywhere }, identityOf(session.accessToken), headers);
}

function changePassword(session: Pick<Session, 'accessToken'>, currentPassword: string, newPassword: string, headers: Record<string, string> = {}): Promise<Answer> {
  return call(
    `mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) { ${payloadFields} } }`,
    { c: currentPassword, n: newPassword },
    identityOf(session.accessToken),
    headers,
  );
}

interface Feed {
  status: number;
  revocations: { sessionId: string; expiresAt: string }[];
  cursor: string;
}

async function feed(after?: string, identityHeader?: string | null): Promise<Feed> {
  const header = identityHeader === undefined ? await signer.sign(anonymous, 'accounts') : identityHeader;
  const response = await fetch(`${baseUrl()}/sessions/revocations${after ? `?after=${encodeURIComponent(after)}` : ''}`, {
    headers: header ? { [gatewayIdentityHeader]: header } : {},
  });
  return { status: response.status, ...((await response.json()) as Omit<Feed, 'status'>) };
}

const revokedIds = (page: Feed) => page.revocations.map((revocation) => revocation.sessionId);

async function sessionRow(id: string) {
  return db.session.findUniqueOrThrow({ where: { id } });
}

// ---------------------------------------------------------------------------------------------

describe('signing in on a mobile app', () => {
  it('opens a session: a short access token naming it (sid, kid) and a refresh token stored only as its hash', async () => {
    const session = await newSession();

    const header = decodeProtectedHeader(session.accessToken);
    expect(header.kid).toBe(await keyIdOf(keys.authToken.privateKey));
    const claims = decodeJwt(session.accessToken);
    expect(claims).toMatchObject({ sub: session.customerId, sid: session.sessionId, iss: 'commerce-accounts', aud: 'commerce-gateway' });
    expect(claims.exp! - claims.iat!).toBe(300);
    expect(await sessionRow(session.sessionId)).toMatchObject({ customerId: session.customerId, kind: 'mobile', revokedAt: null });
    const stored = await db.refreshToken.findMany({ where: { sessionId: session.sessionId } });
    expect(stored).toHaveLength(1);
    expect(stored[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(session.refreshToken.slice(3));
  });
});

describe('refreshing a session', () => {
  it('rotates the refresh token: a new access token of the same session, and a new refresh token that works in turn', async () => {
    const session = await newSession();

    const first = sessionFrom(await refresh(session.refreshToken), 'refreshSession', session.email);
    expect(first.sessionId).toBe(session.sessionId);
    expect(first.refreshToken).not.toBe(session.refreshToken);
    const second = sessionFrom(await refresh(first.refreshToken), 'refreshSession', session.email);
    expect(second.sessionId).toBe(session.sessionId);
    expect(await db.refreshToken.count({ where: { sessionId: session.sessionId, usedAt: { not: null } } })).toBe(2);
  });

  it('ends the whole session when a rotated refresh token is used again: the newer refresh token stops working too', async () => {
    const session = await newSession();
    const rotated = sessionFrom(await refresh(session.refreshToken), 'refreshSession', session.email);

    const replay = await refresh(session.refreshToken);

    expect(errorCodes(replay)).toEqual(['UNAUTHENTICATED']);
    expect(await sessionRow(session.sessionId)).toMatchObject({ revokedReason: 'refresh_token_reused' });
    expect(errorCodes(await refresh(rotated.refreshToken))).toEqual(['UNAUTHENTICATED']);
    expect(revokedIds(await feed())).toContain(session.sessionId);
  });

  it('lets exactly one of two simultaneous refreshes with one token win; the other counts as reuse and ends the session', async () => {
    const session = await newSession();

    const answers = await Promise.all([refresh(session.refreshToken), refresh(session.refreshToken)]);

    expect(answers.filter((answer) => !answer.errors)).toHaveLength(1);
    expect(answers.flatMap(errorCodes)).toEqual(['UNAUTHENTICATED']);
    expect(await sessionRow(session.sessionId)).toMatchObject({ revokedReason: 'refresh_token_reused' });
    const winner = answers.find((answer) => !answer.errors)!.data!.refreshSession.refreshToken as string;
    expect(errorCodes(await refresh(winner))).toEqual(['UNAUTHENTICATED']);
    expect(await db.refreshToken.count({ where: { sessionId: session.sessionId } })).toBe(2);
  });

  const refusals: Record<string, () => Promise<string>> = {
    'a forged refresh token': async () => `rt_${randomBytes(32).toString('base64url')}`,
    'a refresh token of the wrong shape': async () => 'not-a-refresh-token',
    'an access token in place of a refresh token': async () => (await newSession()).accessToken,
    'an expired refresh token': async () => {
      const session = await newSession();
      await db.refreshToken.updateMany({ where: { sessionId: session.sessionId }, data: { expiresAt: new Date(Date.now() - 1000) } });
      return session.refreshToken;
    },
    'the refresh token of a signed-out session': async () => {
      const session = await newSession();
      expect((await signOut(session)).data).toEqual({ signOut: true });
      return session.refreshToken;
    },
  };

  for (const [what, tokenOf] of Object.entries(refusals)) {
    it(`refuses ${what} with UNAUTHENTICATED and issues nothing`, async () => {
      const token = await tokenOf();
      const sessionsBefore = await db.session.count();
      const tokensBefore = await db.refreshToken.count();

      const res = await refresh(token);

      expect(errorCodes(res)).toEqual(['UNAUTHENTICATED']);
      expect(res.data ?? null).toBeNull();
      expect(await db.session.count()).toBe(sessionsBefore);
      expect(await db.refreshToken.count()).toBe(tokensBefore);
    });
  }
});

describe('signing out', () => {
  it("ends the caller's session only; it appears in the revocation feed until its last access token expires", async () => {
    const email = await newAccount();
    const phone = await newSession(email);
    const tablet = await newSession(email);
    const before = await feed();

    expect((await signOut(phone)).data).toEqual({ signOut: true });

    const after = await feed(before.cursor);
    expect(revokedIds(after)).toEqual([phone.sessionId]);
    const expiresAt = Date.parse(after.revocations[0]!.expiresAt);
    expect(expiresAt).toBeGreaterThanOrEqual(decodeJwt(phone.accessToken).exp! * 1000);
    expect(await sessionRow(phone.sessionId)).toMatchObject({ revokedReason: 'signed_out' });
    expect(await sessionRow(tablet.sessionId)).toMatchObject({ revokedAt: null });
    expect((await refresh(tablet.refreshToken)).errors).toBeUndefined();
    // Signing out again ends nothing more.
    expect((await signOut(phone)).data).toEqual({ signOut: false });
    expect(revokedIds(await feed(after.cursor))).toEqual([]);
  });

  it('answers false, ending nothing, for a token that names no session of ours (no sid, or a foreign one)', async () => {
    const session = await newSession();
    for (const sessionId of [undefined, 'not-a-session', randomUUID()]) {
      const identity: Identity = { customerId: session.customerId, roles: ['customer'], ...(sessionId ? { sessionId } : {}) };
      const res = await call('mutation { signOut }', {}, identity);
      expect(res).toMatchObject({ status: 200, data: { signOut: false } });
      expect(res.errors).toBeUndefined();
    }
    expect(await sessionRow(session.sessionId)).toMatchObject({ revokedAt: null });
  });

  it('everywhere ends every session of the customer and no one else', async () => {
    const email = await newAccount();
    const sessions = [await newSession(email), await newSession(email), await newSession(email)];
    const stranger = await newSession();
    const before = await feed();

    expect((await signOut(sessions[0]!, true)).data).toEqual({ signOut: true });

    expect(revokedIds(await feed(before.cursor)).sort()).toEqual(sessions.map((session) => session.sessionId).sort());
    for (const session of sessions) expect(errorCodes(await refresh(session.refreshToken))).toEqual(['UNAUTHENTICATED']);
    expect(await sessionRow(stranger.sessionId)).toMatchObject({ revokedAt: null });
  });
});

describe('changing the password', () => {
  it('ends every session of the customer and opens a new one for the caller', async () => {
    const email = await newAccount();
    const caller = await newSession(email);
    const other = await newSession(email);
    const before = await feed();

    const res = await changePassword(caller, password, 'a brand new secret');

    const fresh = sessionFrom(res, 'changePassword', email);
    expect([caller.sessionId, other.sessionId]).not.toContain(fresh.sessionId);
    expect(revokedIds(await feed(before.cursor)).sort()).toEqual([caller.sessionId, other.sessionId].sort());
    expect(await sessionRow(other.sessionId)).toMatchObject({ revokedReason: 'password_changed' });
    expect(await sessionRow(fresh.sessionId)).toMatchObject({ kind: 'mobile', revokedAt: null });
    expect((await refresh(fresh.refreshToken)).errors).toBeUndefined();
    expect(errorCodes(await signIn(email))).toEqual(['UNAUTHENTICATED']);
    expect((await signIn(email, 'a brand new secret')).errors).toBeUndefined();
  });

  it('refuses a wrong current password with BAD_USER_INPUT on currentPassword and ends nothing', async () => {
    const session = await newSession();

    const res = await changePassword(session, 'not my password', 'a brand new secret');

    expect(errorCodes(res)).toEqual(['BAD_USER_INPUT']);
    expect(res.errors![0]!.extensions?.field).toBe('currentPassword');
    expect(await sessionRow(session.sessionId)).toMatchObject({ revokedAt: null });
    expect((await signIn(session.email)).errors).toBeUndefined();
  });
});

describe('the revocation feed', () => {
  it('refuses a request without the gateway identity, or with one signed for another subgraph, with 401', async () => {
    expect((await feed(undefined, null)).status).toBe(401);
    expect((await feed(undefined, await signer.sign(anonymous, 'orders'))).status).toBe(401);
    const { privateKey } = await generateKeyPair(signingAlgorithm);
    expect((await feed(undefined, await new GatewayIdentitySigner(privateKey).sign(anonymous, 'accounts'))).status).toBe(401);
  });

  it('refuses a cursor it did not hand out with 400', async () => {
    expect((await feed('yesterday')).status).toBe(400);
  });

  it('answers from the start with the revocations whose tokens may still be alive, then only what follows the cursor', async () => {
    const expired = await newSession();
    await signOut(expired);
    // As if its last access token had expired long ago: the gateway need not hear of it again.
    await db.sessionRevocation.updateMany({ where: { sessionId: expired.sessionId }, data: { expiresAt: new Date(Date.now() - 60_000) } });
    const alive = await newSession();
    await signOut(alive);

    const start = await feed();
    expect(start.status).toBe(200);
    expect(revokedIds(start)).toContain(alive.sessionId);
    expect(revokedIds(start)).not.toContain(expired.sessionId);
    expect(revokedIds(await feed(start.cursor))).toEqual([]);

    const next = await newSession();
    await signOut(next);
    const page = await feed(start.cursor);
    expect(revokedIds(page)).toEqual([next.sessionId]);
    expect(revokedIds(await feed(page.cursor))).toEqual([]);
  });
});

describe('the JWKS', () => {
  it('lists the current key and the retired ones by kid, cacheable for five minutes, with no identity needed', async () => {
    const response = await fetch(`${baseUrl()}/.well-known/jwks.json`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toContain('max-age=300');
    const jwks = (await response.json()) as JSONWebKeySet;
    const expected = [await keyIdOf(keys.authToken.privateKey), ...(await Promise.all(retiredKeys.map((pair) => keyIdOf(pair.privateKey))))];
    expect(jwks.keys.map((key) => key.kid)).toEqual(expected);
    for (const key of jwks.keys) {
      expect(key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
      expect(key).not.toHaveProperty('d');
    }
  });

  it("verifies tokens signed with the current key and with a retired key (by kid), and refuses another key's", async () => {
    const jwks = createLocalJWKSet((await (await fetch(`${baseUrl()}/.well-known/jwks.json`)).json()) as JSONWebKeySet);
    const session = await newSession();
    expect(await verifyCustomerToken(jwks, session.accessToken)).toEqual({ customerId: session.customerId, roles: ['customer'], sessionId: session.sessionId });

    const retired = retiredKeys[1]!.privateKey;
    const fromBeforeRotation = await issueCustomerToken(retired, { customerId: session.customerId, roles: ['customer'], sessionId: 'old' }, 600, { keyId: await keyIdOf(retired) });
    expect(await verifyCustomerToken(jwks, fromBeforeRotation)).toMatchObject({ customerId: session.customerId, sessionId: 'old' });

    const { privateKey: stranger } = await generateKeyPair(signingAlgorithm, { extractable: true });
    const forged = await issueCustomerToken(stranger, { customerId: session.customerId, roles: ['admin'] }, 600, { keyId: await keyIdOf(stranger) });
    await expect(verifyCustomerToken(jwks, forged)).rejects.toMatchObject({ extensions: { code: 'UNAUTHENTICATED' } });
  });
});

describe('web (cookie) sessions', () => {
  const cookieMode = { 'x-commerce-session-mode': 'cookie' };

  it('puts the web session token in the x-commerce-session-grant header, never in the body, and keeps no refresh token', async () => {
    const email = await newAccount();

    const res = await signIn(email, password, cookieMode);

    expect(res.errors).toBeUndefined();
    expect(res.data!.signIn).toMatchObject({ accessToken: null, refreshToken: null, token: null });
    const grant = res.headers.get('x-commerce-session-grant')!;
    const claims = decodeJwt(grant);
    expect(claims.exp! - claims.iat!).toBe(43_200);
    expect(Date.parse(res.data!.signIn.expiresAt)).toBe(claims.exp! * 1000);
    expect(await sessionRow(claims.sid as string)).toMatchObject({ kind: 'web', customerId: claims.sub });
    expect(await db.refreshToken.count({ where: { sessionId: claims.sid as string } })).toBe(0);
    // Without the mode a sign-in is a mobile one, and no grant is sent.
    expect((await signIn(email)).headers.get('x-commerce-session-grant')).toBeNull();
  });

  it('answers a sign-out with the grant `ended`, and a password change with a new web session', async () => {
    const email = await newAccount();
    const first = (await signIn(email, password, cookieMode)).headers.get('x-commerce-session-grant')!;

    const changed = await changePassword({ accessToken: first }, password, 'another long secret', cookieMode);
    expect(changed.errors).toBeUndefined();
    expect(changed.data!.changePassword.accessToken).toBeNull();
    const second = changed.headers.get('x-commerce-session-grant')!;
    expect(decodeJwt(second).sid).not.toBe(decodeJwt(first).sid);
    expect(await sessionRow(decodeJwt(first).sid as string)).toMatchObject({ revokedReason: 'password_changed' });

    const out = await signOut({ accessToken: second }, false, cookieMode);
    expect(out.data).toEqual({ signOut: true });
    expect(out.headers.get('x-commerce-session-grant')).toBe('ended');
    expect(await sessionRow(decodeJwt(second).sid as string)).toMatchObject({ revokedReason: 'signed_out' });
  });
});
