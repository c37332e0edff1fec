/**
 * Rate limits at the gateway (docs/decisions/0024): per caller, per operation (root field) and per
 * client app, refused with RATE_LIMITED on every transport (HTTP 429 with Retry-After, multipart
 * and SSE refused before the stream, graphql-ws as the subscribe's error or a 4429 close), shared
 * by two gateways through Redis and counted in-process without it; and a subgraph's
 * TOO_MANY_ATTEMPTS (accounts' brute-force lock) answered as HTTP 429 with its Retry-After.
 */
import { randomUUID } from 'node:crypto';
import { createClient, type Client } from 'graphql-ws';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { rateLimits } from '../gateway/plugins/rate-limits.ts';
import { retryableStatusOf } from '../platform/graphql/overload-status.ts';
import { errorCodes, graphql, type GraphQLResponse } from './support/graphql.ts';
import { startGateway, startShopSubgraph, type RunningGateway, type ShopSubgraph } from './support/shop-subgraph.ts';
import { recordSubscription } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const multipart = 'multipart/mixed;subscriptionSpec="1.0"';
const sse = 'text/event-stream';

interface Refusal {
  status: number;
  retryAfter: string | null;
  body: GraphQLResponse;
}

describe('rate limits', () => {
  let shop: ShopSubgraph;
  /** In this process's memory: caller 5 per minute, signIn 2, the app "ios" 4. */
  let gateway: RunningGateway;
  const clients: Client[] = [];

  beforeAll(async () => {
    shop = await startShopSubgraph();
    gateway = await startGateway(
      shop.gatewayOptions({
        rateLimits: {
          caller: { points: 5, durationSeconds: 60 },
          operations: { signIn: { points: 2, durationSeconds: 60 } },
          clients: { ios: { points: 4, durationSeconds: 60 } },
        },
      }),
    );
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.dispose()));
    await gateway?.stop();
    await shop?.stop();
  });

  /** A caller no other test shares. */
  const newCaller = () => shop.tokenFor(`customer-${randomUUID()}`);

  async function post(url: string, body: unknown, headers: Record<string, string>): Promise<Refusal> {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, retryAfter: response.headers.get('retry-after'), body: JSON.parse(text) as GraphQLResponse };
  }

  const connect = (token: string, connectionParams: Record<string, unknown> = {}) => {
    const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, lazy: true, connectionParams: { Authorization: `Bearer ${token}`, ...connectionParams } });
    clients.push(client);
    return client;
  };

  it("refuses an HTTP caller over its limit with 429, Retry-After and RATE_LIMITED, and leaves other callers alone", async () => {
    const token = await newCaller();
    for (let i = 0; i < 5; i++) {
      const ok = await graphql(gateway.url, { query: '{ hello }', token });
      expect(ok.errors).toBeUndefined();
    }
    const refused = await post(gateway.url, { query: '{ hello }' }, { authorization: `Bearer ${token}` });
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    expect(refused.body.errors![0]!.extensions).toMatchObject({ code: 'RATE_LIMITED', scope: 'caller', limit: 5, durationSeconds: 60 });
    expect(refused.body.errors![0]!.extensions!.retryAfter).toBe(Number(refused.retryAfter));

    const someoneElse = await graphql(gateway.url, { query: '{ hello }', token: await newCaller() });
    expect(someoneElse.errors).toBeUndefined();
  });

  it('limits an operation per caller by its root field, whatever the operation is called and however often it is aliased', async () => {
    const token = await newCaller();
    const signIn = (name: string) => graphql(gateway.url, { query: `mutation ${name} { signIn(email: "a@example.com", password: "right") }`, token });
    expect((await signIn('First')).data).toEqual({ signIn: 'signed in' });
    expect((await signIn('RenamedToEvade')).data).toEqual({ signIn: 'signed in' });
    const third = await signIn('Third');
    expect(third.status).toBe(429);
    expect(third.errors![0]!.extensions).toMatchObject({ code: 'RATE_LIMITED', scope: 'operation', operation: 'signIn' });
    // Other operations of the same caller are not the signIn limit's business.
    expect((await graphql(gateway.url, { query: 'mutation { placeOrder }', token })).data).toEqual({ placeOrder: 'placed' });

    const aliased = await graphql(gateway.url, {
      query: 'mutation { a: signIn(email: "a@example.com", password: "x") b: signIn(email: "b@example.com", password: "x") ...More } fragment More on Mutation { c: signIn(email: "c@example.com", password: "x") }',
      token: await newCaller(),
    });
    expect(aliased.status).toBe(429);
    expect(errorCodes(aliased)).toEqual(['RATE_LIMITED']);
  });

  it('limits a client app as a whole, every caller together, by the name it sends', async () => {
    const asIos = async () => graphql(gateway.url, { query: '{ products }', token: await newCaller(), headers: { 'apollographql-client-name': 'ios', 'apollographql-client-version': '4.2.0' } });
    for (let i = 0; i < 4; i++) expect((await asIos()).errors).toBeUndefined();
    const refused = await asIos();
    expect(refused.status).toBe(429);
    expect(refused.errors![0]!.extensions).toMatchObject({ code: 'RATE_LIMITED', scope: 'client', client: 'ios' });
    const web = await graphql(gateway.url, { query: '{ products }', token: await newCaller(), headers: { 'apollographql-client-name': 'web' } });
    expect(web.errors).toBeUndefined();
  });

  it("refuses a graphql-ws subscribe over the caller's limit with RATE_LIMITED, and a new socket with close 4429", async () => {
    const token = await newCaller();
    const client = connect(token);
    // The socket is 1 point, each subscribe 1 more: 4 subscriptions fit in 5.
    const running = Array.from({ length: 4 }, () => recordSubscription(client, 'subscription { ticks }'));
    await waitFor('the four subscriptions running', () => (running.every((received) => received.data.length > 0) ? true : undefined));
    const refused = recordSubscription(client, 'subscription { ticks }');
    await waitFor('the refusal', () => (refused.errors.length > 0 ? true : undefined));
    expect(refused.errors[0]!.extensions).toMatchObject({ code: 'RATE_LIMITED', scope: 'caller' });
    expect(running.every((received) => received.errors.length === 0)).toBe(true);
    for (const received of running) received.dispose();

    const closed = recordSubscription(connect(token), 'subscription { ticks }');
    await waitFor('the socket closed', () => (closed.errors.length > 0 ? true : undefined));
    expect(closed.errors[0]!.extensions?.code).toBe('CLOSE_4429');
  });

  it('refuses multipart and SSE subscriptions over the limit with 429 and Retry-After before any stream starts', async () => {
    const token = await newCaller();
    for (let i = 0; i < 5; i++) expect((await graphql(gateway.url, { query: '{ hello }', token })).errors).toBeUndefined();
    for (const accept of [multipart, sse]) {
      const refused = await post(gateway.url, { query: 'subscription { ticks }' }, { authorization: `Bearer ${token}`, accept });
      expect(refused.status).toBe(429);
      expect(Number(refused.retryAfter)).toBeGreaterThan(0);
      expect(errorCodes(refused.body)).toEqual(['RATE_LIMITED']);
    }
  });

  it("answers a subgraph's TOO_MANY_ATTEMPTS (the accounts lock) with HTTP 429 and its Retry-After", async () => {
    const locked = await post(gateway.url, { query: 'mutation { signIn(email: "a@example.com", password: "locked") }' }, { authorization: `Bearer ${await newCaller()}` });
    expect(locked.status).toBe(429);
    expect(locked.retryAfter).toBe('42');
    expect(locked.body.errors![0]!.extensions).toMatchObject({ code: 'TOO_MANY_ATTEMPTS', retryAfter: 42 });
    expect(locked.body.data).toBeNull();
  });

  describe('where the counts are kept', () => {
    const keyPrefix = `test:rate-limit:${randomUUID()}`;
    let redis: Redis;
    let shared: RunningGateway[] = [];
    let separate: RunningGateway[] = [];

    beforeAll(async () => {
      redis = new Redis(redisUrl);
      const limits = { caller: { points: 4, durationSeconds: 60 }, operations: {} };
      shared = [
        await startGateway(shop.gatewayOptions({ rateLimits: { ...limits, redis: redisUrl, keyPrefix } })),
        await startGateway(shop.gatewayOptions({ rateLimits: { ...limits, redis: redisUrl, keyPrefix } })),
      ];
      separate = [await startGateway(shop.gatewayOptions({ rateLimits: limits })), await startGateway(shop.gatewayOptions({ rateLimits: limits }))];
    }, 60_000);
    afterAll(async () => {
      for (const running of [...shared, ...separate]) await running.stop();
      const keys = await redis.keys(`${keyPrefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    });

    it('shares one limit between two gateways through Redis', async () => {
      const token = await newCaller();
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await graphql(shared[i % 2]!.url, { query: '{ hello }', token })).status);
      expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
      expect((await redis.keys(`${keyPrefix}:caller:*`)).length).toBeGreaterThan(0);
    });

    it('counts in each gateway on its own without Redis', async () => {
      const token = await newCaller();
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) statuses.push((await graphql(separate[i % 2]!.url, { query: '{ hello }', token })).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 200, 200]);
      expect((await graphql(separate[0]!.url, { query: '{ hello }', token })).status).toBe(429);
    });
  });

  it('keeps a response with some data 200, and puts overload (503) before a lock (429) when both are there', () => {
    const locked = { message: 'locked', extensions: { code: 'TOO_MANY_ATTEMPTS', retryAfter: 42 } };
    const overloaded = { message: 'busy', extensions: { code: 'SERVICE_OVERLOADED', retryAfter: 2 } };
    expect(retryableStatusOf({ signIn: null }, [locked])).toEqual({ status: 429, retryAfter: 42 });
    expect(retryableStatusOf({ signIn: null, me: { id: '1' } }, [locked])).toBeUndefined();
    expect(retryableStatusOf(null, [locked, overloaded])).toEqual({ status: 503, retryAfter: 2 });
  });

  it('refuses nonsense limits at start-up', () => {
    expect(() => rateLimits({ caller: { points: 0, durationSeconds: 60 } })).toThrow(/points/);
    expect(() => rateLimits({ operations: { signIn: { points: 3, durationSeconds: 0 } } })).toThrow(/durationSeconds/);
  });
});
