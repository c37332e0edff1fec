/**
 * Production hygiene (issue 9, item 6): what a client, a log reader and an operator see of the
 * platform in production. Real subgraphs, a real gateway and real PostgreSQL, `production: true`.
 *
 * Tests marked GATEWAY WIRING need the gateway to use what this file's helpers provide (the
 * `textInput()` plugin, `requestErrorLogging`, `logWebSocketErrors`); the rest run on what the
 * subgraphs and the shared masking already do.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSchema, parse } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { formatErrorForClient, withoutSuggestions } from '../platform/errors/masking.ts';
import { findInvalidText } from '../platform/graphql/text-input.ts';
import type { ContextName } from '../platform/contexts.ts';
import { dropDatabase } from '../platform/database/provision.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import { anonymous } from '../platform/identity/identity.ts';
import { createLogger } from '../platform/logging/logger.ts';
import { logWebSocketErrors } from '../platform/logging/socket-errors.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { demoSeeding } from '../scripts/demo/settings.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { startCatalogSubgraph } from '../subgraphs/catalog/subgraph.ts';
import { orderSaga } from '../subgraphs/orders/saga/wiring.ts';
import { startOrdersSubgraph } from '../subgraphs/orders/subgraph.ts';
import { errorCodes, graphql, type GraphQLResponse } from './support/graphql.ts';
import { startProcess } from './support/processes.ts';
import { freshDatabases, generateTestKeys, startStack, type Stack } from './support/stack.ts';

/** Every JSON log line written to stderr while `during` runs. */
async function logLinesDuring(during: () => Promise<void>): Promise<Record<string, any>[]> {
  const written: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: unknown[]) => {
    written.push(String(chunk));
    return original(chunk as never, ...(rest as []));
  }) as typeof process.stderr.write);
  try {
    await during();
  } finally {
    spy.mockRestore();
  }
  return written.flatMap((chunk) => chunk.split('\n')).filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, any>);
}

/**
 * Nullable root fields of the request that fails field by field (a non-null one would end the
 * execution at its first error), within the operation limits of the gateway and the subgraphs.
 */
const failingFields = 15;

/** Opens a graphql-ws socket and sends one text frame that is not UTF-8; resolves with the close code. */
async function sendInvalidFrame(url: string): Promise<number> {
  const socket = new WebSocket(url.replace(/^http/, 'ws'), 'graphql-transport-ws');
  await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
  socket.send(Buffer.from([0xff, 0xfe, 0xfd]), { binary: false });
  return closed;
}

describe('finding invalid text in an operation', () => {
  it('names the argument path of a NUL inside a nested input object and list', () => {
    const document = parse('mutation { createProduct(input: { sku: "A", images: ["ok", "bad\\u0000"] }) { id } }');
    expect(findInvalidText(document, {})).toEqual({ field: 'input.images[1]', problem: 'NUL' });
  });

  it('names the variable path of a NUL deep inside a variable value', () => {
    const document = parse('mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }');
    const variables = { input: { lines: [{ productId: 'p', quantity: 1 }], shippingAddress: { name: 'Carl\u0000' } } };
    expect(findInvalidText(document, variables)).toEqual({ field: 'input.shippingAddress.name', problem: 'NUL' });
  });

  it('finds a NUL in a fragment’s arguments and in a variable’s default value', () => {
    expect(findInvalidText(parse('{ ...F } fragment F on Query { category(slug: "x\\u0000") { id } }'), {})).toEqual({ field: 'slug', problem: 'NUL' });
    expect(findInvalidText(parse('query ($s: String = "\\u0000") { category(slug: $s) { id } }'), {})).toEqual({ field: 's', problem: 'NUL' });
  });

  it('refuses a lone surrogate but lets a surrogate pair, tabs, newlines and other control characters through', () => {
    const document = parse('query ($s: String) { category(slug: $s) { id } }');
    expect(findInvalidText(document, { s: 'a\ud800b' })).toEqual({ field: 's', problem: 'LONE_SURROGATE' });
    expect(findInvalidText(document, { s: 'a\udc00' })).toEqual({ field: 's', problem: 'LONE_SURROGATE' });
    expect(findInvalidText(document, { s: 'emoji 😀, tab\t, newline\n, bell\u0007' })).toBeUndefined();
  });
});

describe('what a client reads of an error', () => {
  it('loses its "Did you mean" suggestions in production', () => {
    expect(withoutSuggestions('Cannot query field "nme" on type "Product". Did you mean "name"?')).toBe('Cannot query field "nme" on type "Product".');
    expect(withoutSuggestions('Variable "$r" got invalid value "ADMN"; Value "ADMN" does not exist in "Role" enum. Did you mean the enum value "ADMIN"?')).toBe(
      'Variable "$r" got invalid value "ADMN"; Value "ADMN" does not exist in "Role" enum.',
    );
    const formatted = { message: 'Cannot query field "nme" on type "Product". Did you mean "name"?', extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } };
    expect(formatErrorForClient(formatted, undefined, { maskInternalErrors: true }).message).toBe('Cannot query field "nme" on type "Product".');
    expect(formatErrorForClient(formatted, undefined, { maskInternalErrors: false }).message).toContain('Did you mean "name"?');
  });

  it('never carries the subgraph’s URL or response body, and names the subgraph only in development', () => {
    const relayed = {
      message: '401: Unauthorized',
      extensions: { code: 'UNAUTHENTICATED', serviceName: 'catalog', response: { url: 'http://10.0.0.7:4002/graphql', status: 401, body: 'secret' } },
    };
    expect(formatErrorForClient(relayed, undefined, { maskInternalErrors: true })).toEqual({ message: '401: Unauthorized', extensions: { code: 'UNAUTHENTICATED' } });
    expect(formatErrorForClient(relayed, undefined, { maskInternalErrors: false })).toEqual({
      message: '401: Unauthorized',
      extensions: { code: 'UNAUTHENTICATED', serviceName: 'catalog' },
    });
  });
});

describe('a subgraph in production', () => {
  let catalog: RunningContextSubgraph;
  let orders: RunningContextSubgraph;
  let databaseUrls: Record<ContextName, string>;
  let signer: GatewayIdentitySigner;
  beforeAll(async () => {
    const keys = await generateTestKeys();
    signer = new GatewayIdentitySigner(keys.gatewayIdentity.privateKey);
    databaseUrls = await freshDatabases();
    const base = { port: 0, host: '127.0.0.1', gatewayPublicKey: keys.gatewayIdentity.publicKey, production: true };
    catalog = await startCatalogSubgraph({ ...base, databaseUrl: databaseUrls.catalog });
    orders = await startOrdersSubgraph({ ...base, databaseUrl: databaseUrls.orders, saga: orderSaga({}), projector: { pollIntervalMs: 200 } });
  });
  afterAll(async () => {
    await catalog?.stop();
    await orders?.stop();
    for (const url of Object.values(databaseUrls ?? {})) await dropDatabase(url);
  });
  afterEach(() => vi.restoreAllMocks());

  const atCatalog = async (query: string, variables?: Record<string, unknown>, headers: Record<string, string> = {}): Promise<GraphQLResponse> =>
    graphql(catalog.url, { query, ...(variables ? { variables } : {}), headers: { [gatewayIdentityHeader]: await signer.sign(anonymous, 'catalog'), ...headers } });

  it('answers a misspelt field without a "Did you mean" suggestion', async () => {
    const response = await atCatalog('{ products(first: 1) { edges { node { nme } } } }');
    expect(errorCodes(response)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
    expect(response.errors![0]!.message).toBe('Cannot query field "nme" on type "Product".');
  });

  it('refuses a NUL in an argument with BAD_USER_INPUT naming it, before PostgreSQL sees it', async () => {
    const response = await atCatalog('{ products(first: 1, filter: { search: "lamp\\u0000" }) { totalCount } }');
    expect(response.errors).toEqual([expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT', field: 'filter.search' } })]);
    expect(response.errors![0]!.message).toMatch(/NUL/);
  });

  it('refuses a lone surrogate in a variable with BAD_USER_INPUT naming its path', async () => {
    const response = await atCatalog('query ($filter: ProductFilter) { products(first: 1, filter: $filter) { totalCount } }', { filter: { search: 'lamp\ud800' } });
    expect(response.errors).toEqual([expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT', field: 'filter.search' } })]);
  });

  it('logs one line, with the request id and the errors’ codes, for a request whose every field failed', async () => {
    const database = new pg.Client({ connectionString: databaseUrls.catalog });
    await database.connect();
    try {
      await database.query('ALTER TABLE products RENAME TO products_elsewhere');
      const aliases = Array.from({ length: failingFields }, (_, i) => `a${i}: product(id: "${randomUUID()}") { name }`).join(' ');
      let response: GraphQLResponse | undefined;
      const lines = await logLinesDuring(async () => {
        response = await atCatalog(`query ManyAliases { ${aliases} }`, undefined, { 'x-request-id': 'hygiene-one-line' });
      });
      expect(response!.errors).toHaveLength(failingFields);
      expect(new Set(response!.errors!.map((error) => error.message))).toEqual(new Set(['Internal server error']));
      const fromCatalog = lines.filter((line) => line.component === 'catalog');
      expect(fromCatalog).toHaveLength(1);
      expect(fromCatalog[0]).toMatchObject({
        level: 'error',
        message: 'request failed',
        requestId: 'hygiene-one-line',
        operationName: 'ManyAliases',
        errorCount: failingFields,
        codes: { INTERNAL_SERVER_ERROR: failingFields },
      });
      // The real cause is kept in the log (masked for the client), the first few only, with no stack trace.
      expect(fromCatalog[0]!.errors).toHaveLength(3);
      expect(fromCatalog[0]!.errors[0]).toMatchObject({ message: 'The table `public.products` does not exist in the current database.', errorCode: 'P2021', path: 'a0' });
      // Neither a stack trace nor Prisma's code frame, which names our source files.
      expect(JSON.stringify(fromCatalog[0])).not.toMatch(/    at |\.ts:\d+|invocation in/);
    } finally {
      await database.query('ALTER TABLE products_elsewhere RENAME TO products');
      await database.end();
    }
  });

  // SUBGRAPH WIRING: passes once platform/subgraph/subscriptions.ts calls `logWebSocketErrors(wss, log)` after `useServer`.
  it('logs an invalid WebSocket frame as one line, without a stack trace', async () => {
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => {});
    let code = 0;
    // ws reports the frame on the server before the client reads the close it answers with.
    const lines = await logLinesDuring(async () => {
      code = await sendInvalidFrame(orders.url);
    });
    expect(code).toBe(1007);
    expect(consoleError).not.toHaveBeenCalled();
    expect(lines.filter((line) => line.component === 'orders' && line.errorCode === 'WS_ERR_INVALID_UTF8')).toHaveLength(1);
  });
});

describe('the gateway in production', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ production: true });
  });
  afterAll(() => stack?.stop());
  afterEach(() => vi.restoreAllMocks());

  it('answers a misspelt field without a "Did you mean" suggestion', async () => {
    const response = await graphql(stack.gatewayUrl, { query: '{ products(first: 1) { edges { node { nme } } } }' });
    expect(errorCodes(response)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
    expect(JSON.stringify(response)).not.toMatch(/Did you mean/);
  });

  it('relays a subgraph’s client error with its code and field but without the subgraph’s name', async () => {
    const response = await graphql(stack.gatewayUrl, { query: '{ products(first: -1) { totalCount } }' });
    expect(response.errors).toEqual([expect.objectContaining({ message: 'first must be between 0 and 100', extensions: { code: 'BAD_USER_INPUT', field: 'first' } })]);
    expect(JSON.stringify(response)).not.toMatch(/serviceName|catalog/);
  });

  it('refuses a NUL in a variable with BAD_USER_INPUT naming it, not an internal error', async () => {
    const response = await graphql(stack.gatewayUrl, {
      query: 'query ($filter: ProductFilter) { products(first: 1, filter: $filter) { totalCount } }',
      variables: { filter: { search: 'lamp\u0000' } },
    });
    expect(response.errors).toEqual([expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT', field: 'filter.search' } })]);
    expect(JSON.stringify(response)).not.toMatch(/serviceName|catalog|Internal server error/);
  });

  // GATEWAY WIRING: passes once `textInput()` (gateway/plugins/text-input.ts) is among the gateway's plugins.
  it('refuses a lone surrogate itself, with HTTP 400, before any subgraph is called', async () => {
    const response = await graphql(stack.gatewayUrl, { query: 'mutation ($e: String!, $p: String!) { signIn(email: $e, password: $p) { token } }', variables: { e: 'a\ud800@example.com', p: 'whatever1' } });
    expect(response.status).toBe(400);
    expect(response.errors).toEqual([expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT', field: 'e' } })]);
  });

  // GATEWAY WIRING: passes once gateway/server.ts uses `requestErrorLogging` and its formatError logs nothing.
  it('logs one line for a request whose every field failed', async () => {
    const catalog = new pg.Client({ connectionString: stack.databaseUrls.catalog });
    await catalog.connect();
    try {
      await catalog.query('ALTER TABLE products RENAME TO products_elsewhere');
      const aliases = Array.from({ length: failingFields }, (_, i) => `a${i}: product(id: "${randomUUID()}") { name }`).join(' ');
      const lines = await logLinesDuring(async () => {
        await graphql(stack.gatewayUrl, { query: `{ ${aliases} }` });
      });
      expect(lines.filter((line) => line.component === 'gateway' && line.level === 'error')).toHaveLength(1);
    } finally {
      await catalog.query('ALTER TABLE products_elsewhere RENAME TO products');
      await catalog.end();
    }
  });

  // GATEWAY WIRING: passes once gateway/subscriptions/websocket.ts calls `logWebSocketErrors(wss, log)` after `useServer`.
  it('logs an invalid WebSocket frame as one line, without a stack trace', async () => {
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => {});
    const code = await sendInvalidFrame(stack.gatewayUrl);
    expect(code).toBe(1007);
    expect(consoleError).not.toHaveBeenCalled();
  });

  it('seeds, when asked in production, the admin with the configured password and no account with a published one', async () => {
    // An earlier development start on the same database left the admin with the published password.
    await seedDemoData(stack.databaseUrls, [demoUsers.admin]);
    const seeding = demoSeeding({ NODE_ENV: 'production', SEED_DEMO_DATA: 'true', DEMO_ADMIN_PASSWORD: 'a-long-configured-secret' });
    expect(seeding.seed).toBe(true);
    const seeded = await seedDemoData(stack.databaseUrls, seeding.seed ? seeding.users : []);
    expect(seeded.passwordsReplaced).toBe(1);

    const signIn = (user: { email: string; password: string }) =>
      graphql(stack.gatewayUrl, {
        query: 'mutation ($email: String!, $password: String!) { signIn(email: $email, password: $password) { customer { roles } } }',
        variables: { email: user.email, password: user.password },
      });
    expect((await signIn({ email: demoUsers.admin.email, password: 'a-long-configured-secret' })).data?.signIn.customer.roles).toContain('ADMIN');
    expect(errorCodes(await signIn(demoUsers.admin))).toEqual(['UNAUTHENTICATED']);
    expect(errorCodes(await signIn(demoUsers.customer))).toEqual(['UNAUTHENTICATED']);
  });
});

describe('demo data seeding settings', () => {
  it('seeds the demo accounts with their published passwords in development, by default', () => {
    expect(demoSeeding({})).toEqual({ seed: true, users: [demoUsers.admin, demoUsers.customer], publishedPasswords: true });
    expect(demoSeeding({ SEED_DEMO_DATA: 'false' })).toEqual({ seed: false });
  });

  it('seeds nothing in production by default', () => {
    expect(demoSeeding({ NODE_ENV: 'production' })).toEqual({ seed: false });
  });

  it('refuses SEED_DEMO_DATA=true in production without DEMO_ADMIN_PASSWORD, or with a published password, naming the variable', () => {
    expect(() => demoSeeding({ NODE_ENV: 'production', SEED_DEMO_DATA: 'true' })).toThrow(/DEMO_ADMIN_PASSWORD/);
    expect(() => demoSeeding({ NODE_ENV: 'production', SEED_DEMO_DATA: 'true', DEMO_ADMIN_PASSWORD: demoUsers.admin.password })).toThrow(/published/);
    expect(() => demoSeeding({ NODE_ENV: 'production', SEED_DEMO_DATA: 'true', DEMO_ADMIN_PASSWORD: 'short' })).toThrow(/DEMO_ADMIN_PASSWORD must be 8/);
    expect(() => demoSeeding({ SEED_DEMO_DATA: 'yes' })).toThrow(/SEED_DEMO_DATA must be true or false/);
  });

  it('reads the admin password from DEMO_ADMIN_PASSWORD_FILE, without its trailing newline', () => {
    const dir = mkdtempSync(join(tmpdir(), 'demo-password-'));
    try {
      writeFileSync(join(dir, 'password'), 'from-a-mounted-secret\n');
      const seeding = demoSeeding({ NODE_ENV: 'production', SEED_DEMO_DATA: 'true', DEMO_ADMIN_PASSWORD_FILE: join(dir, 'password') });
      expect(seeding).toMatchObject({ seed: true, publishedPasswords: false, users: [{ email: demoUsers.admin.email, password: 'from-a-mounted-secret' }] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('makes `NODE_ENV=production SEED_DEMO_DATA=true npm start` exit 1 at once, naming DEMO_ADMIN_PASSWORD', { timeout: 60_000 }, async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', SEED_DEMO_DATA: 'true' };
    delete env.DEMO_ADMIN_PASSWORD;
    delete env.DEMO_ADMIN_PASSWORD_FILE;
    const dataDir = mkdtempSync(join(tmpdir(), 'demo-start-'));
    try {
      const started = startProcess('npm', ['start'], { ...env, DATA_DIR: dataDir });
      expect(await started.exited).toBe(1);
      expect(started.output()).toMatch(/Could not start: .*DEMO_ADMIN_PASSWORD/);
      expect(started.output()).not.toMatch(/embedded PostgreSQL|admin-demo-password/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('WebSocket errors in the logs', () => {
  let http: Server;
  let url: string;
  beforeAll(async () => {
    http = createServer();
    const wss = new WebSocketServer({ server: http, path: '/graphql' });
    useServer({ schema: buildSchema('type Query { ok: Boolean }') }, wss);
    logWebSocketErrors(wss, createLogger('socket-test'));
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(http.address() as { port: number }).port}/graphql`;
  });
  afterAll(() => new Promise<void>((resolve) => http.close(() => resolve())));

  it('are one warn line with the ws error code, never graphql-ws’s console.error with a stack trace', async () => {
    const consoleError = vi.spyOn(console, 'error').mockImplementation(() => {});
    let code = 0;
    const lines = await logLinesDuring(async () => {
      code = await sendInvalidFrame(url);
    });
    consoleError.mockRestore();
    expect(code).toBe(1007);
    expect(consoleError).not.toHaveBeenCalled();
    expect(lines.filter((line) => line.component === 'socket-test')).toEqual([
      expect.objectContaining({ level: 'warn', message: 'invalid WebSocket message from a client', errorCode: 'WS_ERR_INVALID_UTF8' }),
    ]);
    expect(JSON.stringify(lines)).not.toMatch(/    at /);
  });
});
