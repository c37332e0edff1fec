import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { deterministicUuid } from '../platform/ids.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import type { GatewayPlugin } from '../gateway/pipeline/plugin.ts';
import type { SessionsPlugin } from '../gateway/plugins/sessions.ts';
import { startGateway, type RunningGateway } from '../gateway/server.ts';
import { clearCookie, cookieSecurityOf, cookieValue, sessionCookieFor, setCookie } from '../gateway/sessions/cookies.ts';
import { inStockProducts, testAddress } from './support/orders.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { recordSubscription, type Received } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

/** A request as node:http hands it over: only what the cookie rules read. */
function requestTo(host: string, extra: { encrypted?: boolean; forwardedProto?: string } = {}): IncomingMessage {
  return {
    headers: { host, ...(extra.forwardedProto ? { 'x-forwarded-proto': extra.forwardedProto } : {}) },
    socket: extra.encrypted ? { encrypted: true } : {},
  } as unknown as IncomingMessage;
}

describe('the session cookie', () => {
  it('is Secure with the __Host- prefix when the gateway is not served on localhost', () => {
    const cookie = sessionCookieFor(requestTo('api.shop.example.com'), 'auto');
    expect(cookie).toEqual({ name: '__Host-commerce-session', secure: true });
    expect(setCookie(cookie, 'jwt', 43_200)).toBe('__Host-commerce-session=jwt; HttpOnly; SameSite=Lax; Path=/; Max-Age=43200; Secure');
  });

  it('is not Secure when the gateway is served over plain HTTP on localhost or 127.0.0.1', () => {
    for (const host of ['localhost:4000', '127.0.0.1:4000', '[::1]:4000']) {
      const cookie = sessionCookieFor(requestTo(host), 'auto');
      expect(cookie).toEqual({ name: 'commerce-session', secure: false });
      expect(setCookie(cookie, 'jwt', 60)).toBe('commerce-session=jwt; HttpOnly; SameSite=Lax; Path=/; Max-Age=60');
    }
  });

  it('is Secure on localhost over TLS, or behind a proxy that terminated TLS', () => {
    expect(sessionCookieFor(requestTo('localhost:4000', { encrypted: true }), 'auto').secure).toBe(true);
    expect(sessionCookieFor(requestTo('localhost:4000', { forwardedProto: 'https' }), 'auto').secure).toBe(true);
  });

  it('follows GATEWAY_SESSION_COOKIE_SECURE when it is true or false', () => {
    expect(sessionCookieFor(requestTo('localhost'), cookieSecurityOf('true')).secure).toBe(true);
    expect(sessionCookieFor(requestTo('api.shop.example.com'), cookieSecurityOf('false')).secure).toBe(false);
    expect(cookieSecurityOf(undefined)).toBe('auto');
    expect(() => cookieSecurityOf('yes')).toThrow(/auto, true or false/);
  });

  it('is cleared with an empty value and Max-Age=0', () => {
    expect(clearCookie({ name: 'commerce-session', secure: false })).toBe('commerce-session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0');
  });

  it('is read from a Cookie header among others', () => {
    expect(cookieValue('a=1; commerce-session=abc.def.ghi; b=2', 'commerce-session')).toBe('abc.def.ghi');
    expect(cookieValue('__Host-commerce-session=x', 'commerce-session')).toBeUndefined();
    expect(cookieValue(undefined, 'commerce-session')).toBeUndefined();
  });
});

const shop = 'http://shop.test';
const evil = 'http://evil.test';
const signInMutation = `mutation ($email: String!, $password: String!) {
  signIn(email: $email, password: $password) { accessToken refreshToken token expiresAt customer { id } }
}`;
const myUpdates = 'subscription { myOrderUpdates { id status } }';

describe('web sessions through the gateway (cookie, CORS, CSRF)', () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let production: RunningGateway;
  const clients: Client[] = [];
  const customerId = deterministicUuid('customer', demoUsers.customer.email);
  /** Headers of every subgraph fetch, as the gateway's own plugins left them. */
  const fetches: { subgraph: string; headers: Record<string, string> }[] = [];
  const probe: GatewayPlugin = {
    name: 'probe',
    onSubgraphRequest(request) {
      if (request.kind === 'fetch') fetches.push({ subgraph: request.subgraph, headers: { ...request.headers } });
    },
  };

  beforeAll(async () => {
    stack = await startStack();
    await seedDemoData(stack.databaseUrls);
    gateway = await startGateway(gatewayOptionsFor(stack, { corsOrigins: [shop], sessions: { revocationPollMs: 200 }, plugins: [probe] }));
    production = await startGateway(gatewayOptionsFor(stack, { corsOrigins: [shop], production: true }));
  });
  afterAll(async () => {
    for (const client of clients) await client.dispose();
    await gateway?.stop();
    await production?.stop();
    await stack?.stop();
  });

  const post = (body: unknown, headers: Record<string, string>, url = gateway.url) =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  /** Signs the demo customer in with a cookie session: the cookie's value and the raw response. */
  async function signInWithCookie(): Promise<{ cookie: string; setCookie: string; text: string; status: number }> {
    const response = await post(
      { query: signInMutation, variables: { email: demoUsers.customer.email, password: demoUsers.customer.password } },
      { origin: shop, 'x-commerce-session': 'cookie' },
    );
    const text = await response.text();
    const set = response.headers.getSetCookie().find((value) => value.startsWith('commerce-session='));
    if (!set) throw new Error(`no session cookie set: ${response.status} ${text}`);
    return { cookie: set.split(';')[0]!, setCookie: set, text, status: response.status };
  }

  const me = (cookie: string, headers: Record<string, string> = { origin: shop }) => post({ query: '{ me { id } }' }, { cookie, ...headers });

  /** A WebSocket whose upgrade request carries these headers, as a browser's carries its cookie and Origin. */
  function socketWith(headers: Record<string, string>): unknown {
    return class extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        super(address, protocols, { headers });
      }
    };
  }

  function wsClient(headers: Record<string, string>): Client {
    const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: socketWith(headers), retryAttempts: 0, lazy: true });
    clients.push(client);
    return client;
  }

  const sessionsOf = (running: RunningGateway) => running.plugins.find((plugin) => plugin.name === 'sessions') as SessionsPlugin;

  /** Waits until the gateway has read its revocation feed `count` more times. */
  async function feedReadAgain(count = 2): Promise<void> {
    const feed = sessionsOf(gateway).revocations!;
    const target = feed.polls + count;
    await waitFor('the revocation feed read again', () => (feed.polls >= target ? true : undefined));
  }

  it('sets an HttpOnly SameSite cookie on sign-in, not Secure on localhost, and the body carries no token', async () => {
    const { cookie, setCookie: set, text, status } = await signInWithCookie();
    expect(status).toBe(200);
    expect(set).toMatch(/^commerce-session=[\w-]+\.[\w-]+\.[\w-]+; HttpOnly; SameSite=Lax; Path=\/; Max-Age=\d+$/);
    const maxAge = Number(/Max-Age=(\d+)/.exec(set)![1]);
    expect(maxAge).toBeGreaterThan(43_000);
    expect(maxAge).toBeLessThanOrEqual(43_200);
    const body = JSON.parse(text) as { data: { signIn: Record<string, unknown> } };
    expect(body.data.signIn).toMatchObject({ accessToken: null, refreshToken: null, token: null, customer: { id: customerId } });
    expect(text).not.toContain(cookie.split('=')[1]!);
  });

  it('asks accounts for a cookie session, and tells every subgraph the client’s address', async () => {
    fetches.length = 0;
    await signInWithCookie();
    const toAccounts = fetches.filter((fetch) => fetch.subgraph === 'accounts');
    expect(toAccounts.length).toBeGreaterThan(0);
    expect(toAccounts[0]!.headers['x-commerce-session-mode']).toBe('cookie');
    for (const fetch of fetches) expect(fetch.headers['x-commerce-client-address']).toMatch(/127\.0\.0\.1$/);
    fetches.length = 0;
    await post({ query: '{ __typename products(first: 1) { edges { node { id } } } }' }, {});
    expect(fetches.length).toBeGreaterThan(0);
    expect(fetches.every((fetch) => fetch.headers['x-commerce-session-mode'] === undefined)).toBe(true);
  });

  it('authenticates HTTP queries with the cookie from an allowed origin', async () => {
    const { cookie } = await signInWithCookie();
    const response = await me(cookie);
    expect(response.status).toBe(200);
    expect(((await response.json()) as { data: { me: { id: string } } }).data.me.id).toBe(customerId);
  });

  it('authenticates a graphql-ws subscription with the cookie of its upgrade request', async () => {
    const { cookie } = await signInWithCookie();
    const updates: Received = recordSubscription(wsClient({ cookie, origin: shop }), myUpdates);
    // The subscription is the cookie's customer's: their new order arrives on it.
    await waitFor('the subscription to start', () => (gateway.subscriptionStats().clients > 0 ? true : undefined));
    const orderId = await placeOrderWithCookie(cookie);
    const event = await waitFor('the new order on the subscription', () => updates.data.find((data) => data.myOrderUpdates.id === orderId));
    expect(event.myOrderUpdates.id).toBe(orderId);
    expect(updates.errors).toEqual([]);
    updates.dispose();
  });

  async function placeOrderWithCookie(cookie: string): Promise<string> {
    const response = await post(
      {
        query: 'mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }',
        variables: { input: { lines: [{ productId: inStockProducts[0]!.id, quantity: 1 }], shippingAddress: testAddress, paymentToken: 'tok_visa', idempotencyKey: randomUUID() } },
      },
      { cookie, origin: shop },
    );
    const body = (await response.json()) as { data?: { placeOrder: { id: string } }; errors?: unknown };
    if (!body.data) throw new Error(`placeOrder failed: ${JSON.stringify(body.errors)}`);
    return body.data.placeOrder.id;
  }

  it('clears the cookie on sign-out and refuses its old value within seconds, ending its subscriptions', async () => {
    const { cookie } = await signInWithCookie();
    const updates = recordSubscription(wsClient({ cookie, origin: shop }), myUpdates);
    await waitFor('the subscription to start', () => (gateway.subscriptionStats().clients > 0 ? true : undefined));
    const signOut = await post({ query: 'mutation { signOut }' }, { cookie, origin: shop, 'x-commerce-session': 'cookie' });
    expect(((await signOut.json()) as { data: { signOut: boolean } }).data.signOut).toBe(true);
    expect(signOut.headers.getSetCookie()).toContain('commerce-session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0');

    const refused = await waitFor('the old cookie refused', async () => {
      const response = await me(cookie);
      return response.status === 401 ? response : undefined;
    }, 10_000);
    const body = (await refused.json()) as { errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors[0]).toMatchObject({ message: 'The session has ended: sign in again', extensions: { code: 'UNAUTHENTICATED' } });
    // A browser cannot remove an HttpOnly cookie itself: the refusal clears it.
    expect(refused.headers.getSetCookie()).toContain('commerce-session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0');
    await waitFor('the subscription ended', () => (updates.errors.some((error) => error.extensions?.code === 'CLOSE_4403') ? true : undefined), 10_000);
  });

  describe('CSRF attempts with the victim’s cookie', () => {
    let cookie: string;
    beforeAll(async () => {
      ({ cookie } = await signInWithCookie());
    });

    it('refuses a form post (application/x-www-form-urlencoded)', async () => {
      const response = await fetch(gateway.url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin: evil },
        body: new URLSearchParams({ query: 'mutation { signOut }' }).toString(),
      });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { data?: unknown }).data).toBeUndefined();
    });

    it('refuses a text/plain post of a JSON body', async () => {
      const response = await fetch(gateway.url, { method: 'POST', headers: { 'content-type': 'text/plain', cookie, origin: evil }, body: JSON.stringify({ query: 'mutation { signOut }' }) });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { data?: unknown }).data).toBeUndefined();
    });

    it('refuses a cookie request from an origin that is not listed, and one with no Origin', async () => {
      for (const headers of [{ origin: evil }, {}] as Record<string, string>[]) {
        const response = await post({ query: 'mutation { signOut }' }, { cookie, ...headers });
        expect(response.status).toBe(403);
        expect(((await response.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe('CSRF_REJECTED');
      }
    });

    it('refuses a mutation sent as GET, even with a preflight header from an allowed origin', async () => {
      const url = `${gateway.url}?query=${encodeURIComponent('mutation { signOut }')}`;
      const response = await fetch(url, { headers: { cookie, origin: shop, 'apollo-require-preflight': 'true' } });
      expect(response.status).toBe(405);
    });

    it('refuses a WebSocket opened with the cookie from an origin that is not listed (close 4403)', async () => {
      const updates = recordSubscription(wsClient({ cookie, origin: evil }), myUpdates);
      await waitFor('the socket closed', () => (updates.errors.length > 0 ? true : undefined));
      expect(updates.errors[0]!.extensions?.code).toBe('CLOSE_4403');
    });

    it('leaves the session alive after every attempt', async () => {
      await feedReadAgain();
      const response = await me(cookie);
      expect(response.status).toBe(200);
    });
  });

  describe('CORS', () => {
    const preflight = (origin: string, url = gateway.url) =>
      fetch(url, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type, x-commerce-session' } });

    it('answers an allowed origin’s preflight with credentials allowed', async () => {
      const response = await preflight(shop);
      expect(response.status).toBe(204);
      expect(response.headers.get('access-control-allow-origin')).toBe(shop);
      expect(response.headers.get('access-control-allow-credentials')).toBe('true');
      // The request id and a refusal's Retry-After are readable by the app's script.
      expect(response.headers.get('access-control-expose-headers')).toBe('x-request-id, retry-after');
      expect(response.headers.get('x-request-id')).toMatch(/^[A-Za-z0-9._-]{1,64}$/);
      expect(response.headers.get('access-control-allow-methods')).toBe('GET, POST, OPTIONS');
      expect(response.headers.get('access-control-allow-headers')).toContain('x-commerce-session');
      expect(response.headers.get('access-control-max-age')).toBe('600');
      expect(response.headers.get('vary')).toContain('Origin');
    });

    it('gives an allowed origin’s request its CORS headers', async () => {
      const response = await post({ query: '{ __typename }' }, { origin: shop });
      expect(response.status).toBe(200);
      expect(response.headers.get('access-control-allow-origin')).toBe(shop);
      expect(response.headers.get('access-control-allow-credentials')).toBe('true');
    });

    it('refuses an unlisted origin’s preflight with no CORS header at all', async () => {
      const response = await preflight(evil);
      expect(response.status).toBe(403);
      expect(response.headers.get('access-control-allow-origin')).toBeNull();
      expect(response.headers.get('access-control-allow-credentials')).toBeNull();
      expect(((await response.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe('CORS_ORIGIN_NOT_ALLOWED');
      const request = await post({ query: '{ __typename }' }, { origin: evil });
      expect(request.headers.get('access-control-allow-origin')).toBeNull();
    });

    it('allows Apollo Sandbox’s origins in development only', async () => {
      for (const sandbox of ['https://studio.apollographql.com', 'https://sandbox.embed.apollographql.com']) {
        const development = await preflight(sandbox);
        expect(development.status).toBe(204);
        expect(development.headers.get('access-control-allow-origin')).toBe(sandbox);
        const inProduction = await preflight(sandbox, production.url);
        expect(inProduction.status).toBe(403);
        expect(inProduction.headers.get('access-control-allow-origin')).toBeNull();
      }
    });
  });
});
