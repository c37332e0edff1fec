/**
 * Client awareness and trusted documents (docs/decisions/0025): a mobile app's manifest published
 * with `npm run documents`, the app held to it on every transport (by hash and by text), unknown
 * and malformed client names refused, a forged manifest refused by the command, APQ registration
 * allowed or refused per app, and both stores (a directory, Redis).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type Client } from 'graphql-ws';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { documentId } from '../gateway/documents/manifest.ts';
import { clientRegistry, type ClientDeclaration } from '../gateway/plugins/client-awareness.ts';
import { errorCodes, type GraphQLResponse } from './support/graphql.ts';
import { startGateway, startShopSubgraph, type RunningGateway, type ShopSubgraph } from './support/shop-subgraph.ts';
import { recordSubscription } from './support/subscriptions.ts';
import { waitFor } from './support/wait.ts';

const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const products = 'query Products { products }';
const hello = 'query Hello($name: String) { hello(name: $name) }';
const ticks = 'subscription Ticks { ticks }';
const outside = 'mutation PlaceOrder { placeOrder }';

const operation = (name: string, type: string, body: string) => ({ id: documentId(body), name, type, body });
const manifest = { format: 'apollo-persisted-query-manifest', version: 1, operations: [operation('Products', 'query', products), operation('Hello', 'query', hello), operation('Ticks', 'subscription', ticks)] };
const persisted = (body: string) => ({ persistedQuery: { version: 1, sha256Hash: documentId(body) } });

/** `npm run documents -- <args>` against a directory, or against Redis. */
function documents(store: { directory: string } | { redis: string }, ...args: string[]): Promise<{ code: number; output: string }> {
  const env = { ...process.env, LOG_LEVEL: 'error', REDIS_URL: 'redis' in store ? store.redis : '', GATEWAY_TRUSTED_DOCUMENTS_DIR: 'directory' in store ? store.directory : '' };
  return new Promise((resolve) => {
    execFile('npm', ['run', '--silent', 'documents', '--', ...args], { env }, (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, output: `${stdout}${stderr}` }));
  });
}

describe('trusted documents', () => {
  let shop: ShopSubgraph;
  let directory: string;
  let manifestFile: string;
  /** Manifests from the directory, APQ in memory. */
  let gateway: RunningGateway;
  let token: string;
  const clients: Client[] = [];
  /** An app name of this run only: the Redis store is shared with whoever else uses this Redis. */
  const iosInRedis = `ios-${randomBytes(4).toString('hex')}`;
  const declared: Record<string, ClientDeclaration> = {
    ios: { kind: 'mobile' },
    [iosInRedis]: { kind: 'mobile' },
    web: { kind: 'web', apq: true },
    'web-locked': { kind: 'web' },
    'web-strict': { kind: 'web', documents: 'manifest' },
  };

  beforeAll(async () => {
    shop = await startShopSubgraph();
    directory = await mkdtemp(join(tmpdir(), 'trusted-documents-'));
    manifestFile = join(directory, '..', `${randomBytes(4).toString('hex')}-manifest.json`);
    await writeFile(manifestFile, JSON.stringify(manifest));
    gateway = await startGateway(shop.gatewayOptions({ clients: { clients: declared, unknownClients: 'refuse' }, trustedDocuments: { directory } }));
    token = await shop.tokenFor('customer-documents');
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.dispose()));
    await gateway?.stop();
    await shop?.stop();
    await rm(directory, { recursive: true, force: true });
    await rm(manifestFile, { force: true });
  });

  async function send(url: string, client: string | undefined, body: Record<string, unknown>, init: { method?: 'GET' | 'POST'; headers?: Record<string, string> } = {}): Promise<GraphQLResponse> {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...(client ? { 'apollographql-client-name': client, 'apollographql-client-version': '1.0.0' } : {}), ...init.headers };
    let response: Response;
    if (init.method === 'GET') {
      const search = new URLSearchParams(Object.entries(body).map(([name, value]): [string, string] => [name, typeof value === 'string' ? value : JSON.stringify(value)]));
      response = await fetch(`${url}?${search}`, { headers: { ...headers, 'apollo-require-preflight': 'true' } });
    } else {
      response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    }
    return { status: response.status, ...((await response.json()) as Omit<GraphQLResponse, 'status'>) };
  }

  const connect = (client: string) => {
    const socket = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${token}`, 'apollographql-client-name': client } });
    clients.push(socket);
    return socket;
  };

  it('publishes a mobile manifest with the command, and lists it', async () => {
    const published = await documents({ directory }, 'publish', '--client', 'ios', manifestFile);
    expect(published).toMatchObject({ code: 0 });
    expect(published.output).toContain('published 3 operation(s) for ios');
    const listed = await documents({ directory }, 'list');
    expect(listed.output).toMatch(/ios\s+3 operation\(s\)/);
  });

  it('runs an operation of its manifest for the mobile app by hash (POST and GET) and by full text', async () => {
    const byHash = await send(gateway.url, 'ios', { extensions: persisted(hello), variables: { name: 'ios' } });
    expect(byHash).toMatchObject({ status: 200, data: { hello: 'hello ios' } });
    const byGet = await send(gateway.url, 'ios', { extensions: persisted(products) }, { method: 'GET' });
    expect(byGet).toMatchObject({ status: 200, data: { products: ['tea', 'cake'] } });
    const byText = await send(gateway.url, 'ios', { query: products });
    expect(byText).toMatchObject({ status: 200, data: { products: ['tea', 'cake'] } });
  });

  it('refuses the mobile app an operation outside its manifest, by text, by an unknown hash, and a text edited by one space', async () => {
    for (const body of [{ query: outside }, { extensions: persisted(outside) }, { query: `${products} ` }]) {
      const refused = await send(gateway.url, 'ios', body);
      expect(refused.status).toBe(400);
      expect(errorCodes(refused)).toEqual(['PERSISTED_QUERY_NOT_IN_LIST']);
    }
  });

  it('holds the mobile app to its manifest over graphql-ws and SSE too', async () => {
    const socket = connect('ios');
    const allowed = recordSubscription(socket, '', {}, persisted(ticks));
    await waitFor('an event of the subscription sent by hash', () => (allowed.data.length > 0 ? true : undefined));
    allowed.dispose();
    const refused = recordSubscription(socket, 'subscription Other { ticks }');
    await waitFor('the refusal', () => (refused.errors.length > 0 ? true : undefined));
    expect(refused.errors[0]!.extensions?.code).toBe('PERSISTED_QUERY_NOT_IN_LIST');

    const controller = new AbortController();
    const stream = await fetch(gateway.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${token}`, 'apollographql-client-name': 'ios' },
      body: JSON.stringify({ extensions: persisted(ticks) }),
      signal: controller.signal,
    });
    expect(stream.status).toBe(200);
    const reader = stream.body!.getReader();
    let text = '';
    while (!text.includes('event: next')) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    expect(text).toContain('"ticks":');
    const sseRefused = await send(gateway.url, 'ios', { query: 'subscription Other { ticks }' }, { headers: { accept: 'text/event-stream' } });
    expect(errorCodes(sseRefused)).toEqual(['PERSISTED_QUERY_NOT_IN_LIST']);
  });

  it('refuses an unknown client name, no name, and a malformed one, on HTTP and graphql-ws', async () => {
    const unknown = await send(gateway.url, 'pirate-app', { query: products });
    expect(unknown.status).toBe(400);
    expect(errorCodes(unknown)).toEqual(['UNKNOWN_CLIENT']);
    expect(errorCodes(await send(gateway.url, undefined, { query: products }))).toEqual(['UNKNOWN_CLIENT']);
    expect(errorCodes(await send(gateway.url, 'ios', { extensions: persisted(products) }, { headers: { 'apollographql-client-name': 'ios; drop table' } }))).toEqual(['CLIENT_NAME_INVALID']);
    expect(errorCodes(await send(gateway.url, 'x'.repeat(65), { query: products }))).toEqual(['CLIENT_NAME_INVALID']);

    const closed = recordSubscription(connect('pirate-app'), ticks);
    await waitFor('the socket closed', () => (closed.errors.length > 0 ? true : undefined));
    expect(closed.errors[0]!.extensions?.code).toBe('CLOSE_4400');
  });

  it('lets unknown apps in during development and refuses them in production, once apps are declared', () => {
    const apps = { clients: { web: { kind: 'web' as const } } };
    expect(() => clientRegistry({ ...apps, production: false }).refuseUnknown({ name: 'anything', version: undefined })).not.toThrow();
    expect(() => clientRegistry({ ...apps, production: true }).refuseUnknown({ name: 'anything', version: undefined })).toThrow(/Unknown client/);
    expect(() => clientRegistry({ production: true }).refuseUnknown({ name: 'anything', version: undefined })).not.toThrow();
    expect(() => clientRegistry({ clients: { ios: { kind: 'mobile', apq: true } }, production: true })).toThrow(/cannot also register/);
  });

  it('refuses a forged manifest in the command, and writes nothing', async () => {
    const forged = { ...manifest, operations: [{ ...operation('Products', 'query', products), body: outside, type: 'mutation' }] };
    const file = join(directory, '..', `${randomBytes(4).toString('hex')}-forged.json`);
    await writeFile(file, JSON.stringify(forged));
    try {
      const refused = await documents({ directory }, 'publish', '--client', 'ios', file);
      expect(refused.code).toBe(1);
      expect(refused.output).toMatch(/is not the SHA-256 of its body/);
      await writeFile(file, JSON.stringify({ ...manifest, format: 'something-else' }));
      expect((await documents({ directory }, 'publish', '--client', 'ios', file)).output).toMatch(/format must be/);
      // A client name is a file name here: nothing outside the directory.
      const escaping = await documents({ directory }, 'publish', '--client', '../escape', manifestFile);
      expect(escaping.code).toBe(1);
      expect(escaping.output).toMatch(/client name/);
    } finally {
      await rm(file, { force: true });
    }
    expect(await readdir(directory)).toEqual(['ios.json']);
    expect(await send(gateway.url, 'ios', { query: outside })).toMatchObject({ status: 400 });
  });

  it('lets a web app run anything, and holds a web app declared with documents "manifest" to its own', async () => {
    expect(await send(gateway.url, 'web-locked', { query: outside })).toMatchObject({ data: { placeOrder: 'placed' } });
    expect(errorCodes(await send(gateway.url, 'web-strict', { query: products }))).toEqual(['PERSISTED_QUERY_NOT_IN_LIST']);
    expect((await documents({ directory }, 'publish', '--client', 'web-strict', manifestFile)).code).toBe(0);
    // A running gateway looks at a manifest file again at most once a second.
    const allowed = await waitFor('the new manifest read', async () => {
      const response = await send(gateway.url, 'web-strict', { query: products });
      return response.data ? response : undefined;
    });
    expect(allowed.data).toEqual({ products: ['tea', 'cake'] });
  });

  it('lets an app allowed to register persisted queries do so (APQ), after checking the hash', async () => {
    const query = `query Greeting { hello(name: "${randomBytes(4).toString('hex')}") }`;
    expect(errorCodes(await send(gateway.url, 'web', { extensions: persisted(query) }))).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    const mismatch = await send(gateway.url, 'web', { query: `${query} `, extensions: persisted(query) });
    expect(mismatch.status).toBe(400);
    expect(errorCodes(mismatch)).toEqual(['PERSISTED_QUERY_HASH_MISMATCH']);
    expect(errorCodes(await send(gateway.url, 'web', { extensions: persisted(query) }))).toEqual(['PERSISTED_QUERY_NOT_FOUND']);
    expect((await send(gateway.url, 'web', { query, extensions: persisted(query) })).data).toEqual({ hello: expect.stringMatching(/^hello /) });
    expect((await send(gateway.url, 'web', { extensions: persisted(query) })).data).toEqual({ hello: expect.stringMatching(/^hello /) });
  });

  it('registers nothing for an app not allowed to, which gets PERSISTED_QUERY_NOT_SUPPORTED and may send text', async () => {
    const query = `query Greeting { hello(name: "${randomBytes(4).toString('hex')}") }`;
    expect(errorCodes(await send(gateway.url, 'web-locked', { extensions: persisted(query) }))).toEqual(['PERSISTED_QUERY_NOT_SUPPORTED']);
    expect((await send(gateway.url, 'web-locked', { query, extensions: persisted(query) })).data).toEqual({ hello: expect.any(String) });
    expect(errorCodes(await send(gateway.url, 'web-locked', { extensions: persisted(query) }))).toEqual(['PERSISTED_QUERY_NOT_SUPPORTED']);
    // Nor does a mobile app, bound to its manifest: registering would let it run anything.
    expect(errorCodes(await send(gateway.url, 'ios', { query, extensions: persisted(query) }))).toEqual(['PERSISTED_QUERY_NOT_IN_LIST']);
  });

  describe('in Redis', () => {
    let redis: Redis;
    let redisGateway: RunningGateway;
    const apqQuery = `query Greeting { hello(name: "${randomBytes(4).toString('hex')}") }`;

    beforeAll(async () => {
      redis = new Redis(redisUrl);
      redisGateway = await startGateway(shop.gatewayOptions({ clients: { clients: declared, unknownClients: 'refuse' }, trustedDocuments: { redis: redisUrl } }));
    }, 60_000);
    afterAll(async () => {
      await redisGateway?.stop();
      await redis.del(`gateway:trusted-documents:client:${iosInRedis}`, `gateway:apq:${documentId(apqQuery)}`);
      await redis.srem('gateway:trusted-documents:clients', iosInRedis);
      await redis.quit();
    });

    it('publishes the manifest to Redis with the command, where a gateway finds it', async () => {
      expect(errorCodes(await send(redisGateway.url, iosInRedis, { extensions: persisted(products) }))).toEqual(['PERSISTED_QUERY_NOT_IN_LIST']);
      const published = await documents({ redis: redisUrl }, 'publish', '--client', iosInRedis, manifestFile);
      expect(published).toMatchObject({ code: 0 });
      expect(published.output).toContain('redis');
      expect(await redis.hlen(`gateway:trusted-documents:client:${iosInRedis}`)).toBe(3);
      expect((await documents({ redis: redisUrl }, 'list')).output).toMatch(new RegExp(`${iosInRedis}\\s+3 operation`));
      expect(await send(redisGateway.url, iosInRedis, { extensions: persisted(products) })).toMatchObject({ data: { products: ['tea', 'cake'] } });
      expect(errorCodes(await send(redisGateway.url, iosInRedis, { query: outside }))).toEqual(['PERSISTED_QUERY_NOT_IN_LIST']);
    });

    it('keeps APQ registrations in Redis', async () => {
      expect((await send(redisGateway.url, 'web', { query: apqQuery, extensions: persisted(apqQuery) })).data).toBeDefined();
      expect(await redis.get(`gateway:apq:${documentId(apqQuery)}`)).toBe(apqQuery);
      expect((await send(redisGateway.url, 'web', { extensions: persisted(apqQuery) })).data).toEqual({ hello: expect.any(String) });
    });
  });
});
