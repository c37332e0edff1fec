import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient, type Client } from 'graphql-ws';
import { generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { issueCustomerToken } from '../platform/identity/customer-token.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import { anonymous } from '../platform/identity/identity.ts';
import { keyIdOf, signingAlgorithm } from '../platform/identity/keys.ts';
import type { Logger } from '../platform/logging/logger.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { startGateway, type RunningGateway } from '../gateway/server.ts';
import { RevocationFeed } from '../gateway/sessions/revocations.ts';
import { startAccountsSubgraph } from '../subgraphs/accounts/subgraph.ts';
import { errorCodes, graphql, type GraphQLResponse } from './support/graphql.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { recordSubscription } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

const password = 'a-long-enough-password-1';
const signInMutation = 'mutation ($email: String!, $password: String!) { signIn(email: $email, password: $password) { accessToken expiresAt customer { id } } }';
const myUpdates = 'subscription { myOrderUpdates { id status } }';

describe('mobile sessions revoked at the gateway', () => {
  let stack: Stack;
  let gateway: RunningGateway;
  const clients: Client[] = [];

  beforeAll(async () => {
    stack = await startStack();
    gateway = await startGateway(gatewayOptionsFor(stack, { sessions: { revocationPollMs: 200 } }));
  });
  afterAll(async () => {
    for (const client of clients) await client.dispose();
    await gateway?.stop();
    await stack?.stop();
  });

  async function newCustomer(): Promise<string> {
    const email = `mobile-${randomUUID()}@example.com`;
    const signedUp = await graphql(gateway.url, { query: 'mutation ($email: String!, $password: String!) { signUp(email: $email, password: $password, name: "Mo Bile") { message } }', variables: { email, password } });
    if (signedUp.errors) throw new Error(`signUp failed: ${JSON.stringify(signedUp.errors)}`);
    return email;
  }

  async function signIn(email: string, secret = password): Promise<{ accessToken: string; expiresAt: string }> {
    const response = await graphql(gateway.url, { query: signInMutation, variables: { email, password: secret } });
    if (!response.data?.signIn) throw new Error(`signIn failed: ${JSON.stringify(response.errors)}`);
    return response.data.signIn as { accessToken: string; expiresAt: string };
  }

  const me = (token: string) => graphql(gateway.url, { query: '{ me { id } }', token });

  /** Waits for the gateway to refuse the token as a session that has ended. */
  const refused = (token: string): Promise<GraphQLResponse> =>
    waitFor('the token refused', async () => {
      const response = await me(token);
      return response.status === 401 ? response : undefined;
    }, 10_000);

  it('refuses the access token of a signed-out session within a few poll intervals, long before it expires', async () => {
    const { accessToken, expiresAt } = await signIn(await newCustomer());
    expect((await me(accessToken)).status).toBe(200);
    const signedOut = await graphql(gateway.url, { query: 'mutation { signOut }', token: accessToken });
    expect(signedOut.data?.signOut).toBe(true);
    const signedOutAt = Date.now();

    const response = await refused(accessToken);
    // A measurement, not an assertion: how long a signed-out token still passed (poll every 200 ms here).
    console.log(`[measure] signed-out access token refused ${Date.now() - signedOutAt} ms after signOut answered (revocation poll 200 ms)`);
    expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
    expect(response.errors![0]!.message).toBe('The session has ended: sign in again');
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now() + 60_000);
  });

  it('refuses every session of a customer whose password changed, and accepts the new one', async () => {
    const email = await newCustomer();
    const phone = await signIn(email);
    const tablet = await signIn(email);
    const changed = await graphql(gateway.url, {
      query: 'mutation ($current: String!, $next: String!) { changePassword(currentPassword: $current, newPassword: $next) { accessToken } }',
      variables: { current: password, next: `${password}-changed` },
      token: phone.accessToken,
    });
    const renewed = changed.data?.changePassword.accessToken as string;
    expect(renewed).toEqual(expect.any(String));

    for (const old of [tablet.accessToken, phone.accessToken]) {
      expect((await refused(old)).errors![0]!.message).toBe('The session has ended: sign in again');
    }
    expect((await me(renewed)).status).toBe(200);
  });

  it('ends the open subscriptions of a signed-out session, over graphql-ws and SSE', async () => {
    const { accessToken } = await signIn(await newCustomer());
    const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${accessToken}` }, retryAttempts: 0 });
    clients.push(client);
    const overWebSocket = recordSubscription(client, myUpdates);
    const sse = await fetch(gateway.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${accessToken}` },
      body: JSON.stringify({ query: myUpdates }),
    });
    expect(sse.status).toBe(200);
    await waitFor('both subscriptions running', () => (gateway.subscriptionStats().clients >= 2 ? true : undefined));

    await graphql(gateway.url, { query: 'mutation { signOut }', token: accessToken });

    await waitFor('the socket closed', () => (overWebSocket.errors.some((error) => error.extensions?.code === 'CLOSE_4403') ? true : undefined), 10_000);
    // The stream's last event says why, then it ends.
    const text = await sse.text();
    expect(text).toContain('The session has ended: sign in again');
    expect(text).toMatch(/event: complete/);
  });
});

describe('signing key rotation', () => {
  let stack: Stack;
  let rotated: RunningContextSubgraph;
  let gateway: RunningGateway;

  beforeAll(async () => {
    stack = await startStack();
    // Accounts after a rotation: signing with a new key, the old one published as retired.
    const next = await generateKeyPair(signingAlgorithm, { extractable: true });
    rotated = await startAccountsSubgraph({
      port: 0,
      host: '127.0.0.1',
      production: false,
      gatewayPublicKey: stack.keys.gatewayIdentity.publicKey,
      databaseUrl: stack.databaseUrls.accounts,
      authTokenPrivateKey: next.privateKey,
      retiredTokenPublicKeys: [stack.keys.authToken.publicKey],
    });
    // No static key: every token is verified by its kid through the JWKS.
    const options = gatewayOptionsFor(stack, { sessions: { jwksUrl: new URL('/.well-known/jwks.json', rotated.url).href } });
    delete options.customerTokenPublicKey;
    gateway = await startGateway(options);
  });
  afterAll(async () => {
    await gateway?.stop();
    await rotated?.stop();
    await stack?.stop();
  });

  async function signInAt(accountsUrl: string, email: string): Promise<string> {
    const response = await graphql(accountsUrl, { query: signInMutation, variables: { email, password }, headers: { [gatewayIdentityHeader]: await stack.signer.sign(anonymous, 'accounts') } });
    if (!response.data?.signIn) throw new Error(`signIn failed: ${JSON.stringify(response.errors)}`);
    return response.data.signIn.accessToken as string;
  }

  it('accepts a token signed with the retired key and one signed with the new key', async () => {
    const email = `rotation-${randomUUID()}@example.com`;
    await graphql(stack.gatewayUrl, { query: 'mutation ($email: String!, $password: String!) { signUp(email: $email, password: $password, name: "Ro Tation") { message } }', variables: { email, password } });
    const signedBefore = await signInAt(stack.subgraphs.accounts.url, email);
    const signedAfter = await signInAt(rotated.url, email);
    for (const token of [signedBefore, signedAfter]) {
      const response = await graphql(gateway.url, { query: '{ me { email } }', token });
      expect(response.status).toBe(200);
      expect(response.data?.me.email).toBe(email);
    }
  });

  it('refuses a token whose kid is in no key set', async () => {
    const stranger = await generateKeyPair(signingAlgorithm, { extractable: true });
    const token = await issueCustomerToken(stranger.privateKey, { customerId: randomUUID(), roles: ['customer'] }, 300, { keyId: await keyIdOf(stranger.privateKey) });
    const response = await graphql(gateway.url, { query: '{ me { id } }', token });
    expect(response.status).toBe(401);
    expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
    expect(response.errors![0]!.message).toBe('The token is invalid');
  });
});

describe('the revocation feed while accounts is down', () => {
  const lines: { level: string; message: string }[] = [];
  const logger: Logger = {
    debug: (message) => void lines.push({ level: 'debug', message }),
    info: (message) => void lines.push({ level: 'info', message }),
    warn: (message) => void lines.push({ level: 'warn', message }),
    error: (message) => void lines.push({ level: 'error', message }),
    child: () => logger,
  };
  let server: Server;
  let feed: RevocationFeed;
  let port: number;
  const requests: string[] = [];

  const listen = (at: number) =>
    new Promise<number>((resolve) => {
      server = createServer((request, response) => {
        requests.push(request.url ?? '');
        const signed = typeof request.headers[gatewayIdentityHeader] === 'string';
        response.writeHead(signed ? 200 : 401, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ revocations: [{ sessionId: 'sid-1', expiresAt: new Date(Date.now() + 60_000).toISOString() }], cursor: '7' }));
      });
      server.listen(at, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
    });
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()));

  afterAll(async () => {
    feed?.stop();
    if (server?.listening) await close();
  });

  it('keeps refusing what it knew, warns once for the outage, and catches up when accounts is back', async () => {
    port = await listen(0);
    const gatewayKeys = await generateKeyPair(signingAlgorithm);
    const ended: string[] = [];
    feed = new RevocationFeed({ url: new URL(`http://127.0.0.1:${port}/sessions/revocations`), signer: new GatewayIdentitySigner(gatewayKeys.privateKey), pollMs: 50, log: logger, onRevoked: (ids) => ended.push(...ids) });
    feed.start();
    await waitFor('the revocation learnt', () => (feed.isRevoked('sid-1') ? true : undefined));
    expect(ended).toEqual(['sid-1']);
    await waitFor('the next poll to ask after the cursor it was given', () => (requests.some((url) => url.endsWith('after=7')) ? true : undefined));

    await close();
    await waitFor('several failed polls', () => (lines.filter((line) => line.level === 'debug').length >= 3 ? true : undefined));
    // One warning per kind of failure: a poll caught on a keep-alive socket while the server
    // closes fails as a reset, the next ones as refused connections. Never one per poll.
    const warnings = lines.filter((line) => line.level === 'warn');
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.length).toBeLessThanOrEqual(2);
    expect(new Set(warnings.map((line) => line.message))).toEqual(new Set(['session revocation feed unreachable; keeping what is known and retrying']));
    const debugSoFar = lines.filter((line) => line.level === 'debug').length;
    await waitFor('more failed polls', () => (lines.filter((line) => line.level === 'debug').length >= debugSoFar + 3 ? true : undefined));
    expect(lines.filter((line) => line.level === 'warn')).toHaveLength(warnings.length);
    expect(feed.isRevoked('sid-1')).toBe(true);

    await listen(port);
    await waitFor('the recovery line', () => (lines.some((line) => line.level === 'info') ? true : undefined));
    expect(feed.isRevoked('sid-1')).toBe(true);
    // Already known: not ended twice.
    expect(ended).toEqual(['sid-1']);
  });

  it('reads everything still alive again when the feed no longer takes its cursor', async () => {
    feed.stop();
    await close();
    requests.length = 0;
    const refusing = createServer((request, response) => {
      requests.push(request.url ?? '');
      const after = new URL(request.url ?? '/', 'http://localhost').searchParams.get('after');
      response.writeHead(after === '7' ? 400 : 200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(after === '7' ? { errors: [] } : { revocations: [], cursor: '7' }));
    });
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', () => resolve()));
    const at = (refusing.address() as AddressInfo).port;
    const gatewayKeys = await generateKeyPair(signingAlgorithm);
    const again = new RevocationFeed({ url: new URL(`http://127.0.0.1:${at}/sessions/revocations`), signer: new GatewayIdentitySigner(gatewayKeys.privateKey), pollMs: 50, log: logger, onRevoked: () => {} });
    again.start();
    try {
      // Without a cursor, with it (refused), then without it again.
      await waitFor('a poll without the refused cursor', () => (requests.length >= 3 ? true : undefined));
      expect(requests.slice(0, 3).map((url) => url.includes('after='))).toEqual([false, true, false]);
    } finally {
      again.stop();
      await new Promise<void>((resolve) => refusing.close(() => resolve()));
    }
  });
});
