/**
 * Logs as an operator reads them: the gateway and two subgraphs run as processes of their own,
 * their stderr captured, and one request followed by its id through every process it touched —
 * the gateway's access log line, the subgraph that served it, and the consumer that handled the
 * event it caused in another context.
 */
import { randomBytes } from 'node:crypto';
import { exportPKCS8, exportSPKI } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { contextNames, type ContextName } from '../platform/contexts.ts';
import { dropDatabase } from '../platform/database/provision.ts';
import { issueCustomerToken } from '../platform/identity/customer-token.ts';
import { createLogger } from '../platform/logging/logger.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { graphql } from './support/graphql.ts';
import { freePort, startProcess, type TestProcess } from './support/processes.ts';
import { freshDatabases, generateTestKeys, startTestBus, type TestBus, type TestKeys } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

type LogLine = Record<string, any>;

/** Every line a process wrote, each parsed as the JSON object it must be. */
function linesOf(process: TestProcess): LogLine[] {
  return process
    .output()
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      try {
        return JSON.parse(line) as LogLine;
      } catch {
        throw new Error(`not a JSON log line: ${line}`);
      }
    });
}

const ofRequest = (process: TestProcess, requestId: string) => linesOf(process).filter((line) => line.requestId === requestId);

/** What the test's stderr received while `during` ran, line by line. */
function stderrDuring(during: () => void): string[] {
  const written: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write);
  try {
    during();
  } finally {
    spy.mockRestore();
  }
  return written;
}

describe('log lines of one request, across the processes it touched', () => {
  const contexts = ['catalog', 'inventory'] as const satisfies readonly ContextName[];
  let keys: TestKeys;
  let databaseUrls: Record<ContextName, string>;
  let bus: TestBus;
  let gateway: TestProcess;
  let gatewayUrl: string;
  const subgraphs = {} as Record<(typeof contexts)[number], TestProcess>;

  /** The machine's own database, bus and keys must not leak into the processes. */
  const baseEnv = (): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const name of Object.keys(env)) if (/DATABASE_URL|_KEY(_FILE)?$|^NATS_|^LOG_FORMAT$/.test(name)) delete env[name];
    return { ...env, LOG_LEVEL: 'debug', DATABASE_POOL_SIZE: '2' };
  };

  beforeAll(async () => {
    keys = await generateTestKeys();
    databaseUrls = await freshDatabases();
    await seedDemoData(databaseUrls);
    bus = await startTestBus('postgres');
    // The processes open their own clients of the bus; this one only made its database and schema.
    await bus.bus.close();
    const gatewayPublicKey = await exportSPKI(keys.gatewayIdentity.publicKey);
    const urls: Record<string, string> = {};
    for (const context of contexts) {
      const port = await freePort();
      subgraphs[context] = startProcess(process.execPath, ['--import', 'tsx', `subgraphs/${context}/main.ts`], {
        ...baseEnv(),
        ...bus.env,
        [`${context.toUpperCase()}_DATABASE_URL`]: databaseUrls[context],
        MIGRATE_ON_START: 'false',
        PORT: String(port),
        HOST: '127.0.0.1',
        GATEWAY_IDENTITY_PUBLIC_KEY: gatewayPublicKey,
      });
      urls[context] = `http://127.0.0.1:${port}/graphql`;
    }
    for (const context of contexts) await subgraphs[context].waitForOutput(/subgraph listening/);
    const gatewayPort = await freePort();
    gateway = startProcess(
      process.execPath,
      ['--import', 'tsx', 'gateway/main.ts', '--port', String(gatewayPort), ...Object.entries(urls).flatMap(([name, url]) => ['--subgraph-url', `${name}=${url}`])],
      {
        ...baseEnv(),
        GATEWAY_IDENTITY_PRIVATE_KEY: await exportPKCS8(keys.gatewayIdentity.privateKey),
        AUTH_TOKEN_PUBLIC_KEY: await exportSPKI(keys.authToken.publicKey),
      },
    );
    await gateway.waitForOutput(/gateway ready/);
    gatewayUrl = `http://127.0.0.1:${gatewayPort}/graphql`;
  }, 240_000);

  afterAll(async () => {
    await gateway?.kill();
    for (const context of contexts) await subgraphs[context]?.kill();
    await bus?.dispose();
    for (const context of contextNames) if (databaseUrls?.[context]) await dropDatabase(databaseUrls[context]);
  });

  it("carries the request's id and trace id on its lines in the gateway, the subgraph that served it, and the consumer of the event it caused", async () => {
    const requestId = `test-${randomBytes(6).toString('hex')}`;
    const traceId = randomBytes(16).toString('hex');
    const { data: categories } = await graphql(gatewayUrl, { query: '{ categories { id } }' });
    const token = await issueCustomerToken(keys.authToken.privateKey, { customerId: '00000000-0000-4000-8000-000000000001', roles: ['customer', 'admin'] }, 600);
    const response = await fetch(gatewayUrl, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${token}`,
        'x-request-id': requestId,
        traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01`,
        'apollographql-client-name': 'request-logs-test',
        'apollographql-client-version': '1.2.3',
      },
      body: JSON.stringify({
        query: 'mutation CreateLoggedProduct($input: CreateProductInput!) { createProduct(input: $input) { id sku } }',
        variables: { input: { sku: `LOG-${randomBytes(3).toString('hex').toUpperCase()}`, name: 'Logged', price: 100, currency: 'EUR', categoryId: categories!.categories[0].id } },
      }),
    });
    const body = (await response.json()) as { errors?: unknown };
    expect(body.errors).toBeUndefined();
    expect(response.headers.get('x-request-id')).toBe(requestId);

    // The access log line: everything an operator needs, no variables, no token.
    const access = await waitFor('the access log line', () => ofRequest(gateway, requestId).find((line) => line.component === 'gateway.access'));
    expect(access).toMatchObject({
      level: 'info',
      message: 'request',
      requestId,
      traceId,
      method: 'POST',
      operationName: 'CreateLoggedProduct',
      operationType: 'mutation',
      clientName: 'request-logs-test',
      clientVersion: '1.2.3',
      status: 200,
    });
    expect(access.durationMs).toBeGreaterThan(0);
    expect(access).not.toHaveProperty('errorCodes');
    expect(JSON.stringify(linesOf(gateway))).not.toContain(token);

    // The subgraph that served the mutation, with no request id passed by hand.
    const served = await waitFor('catalog serving it', () => ofRequest(subgraphs.catalog, requestId).find((line) => line.message === 'request served'));
    expect(served).toMatchObject({ component: 'catalog', operationType: 'mutation', traceId });
    // The gateway names each fetch of its plan after the client's operation.
    expect(served.operationName).toMatch(/^CreateLoggedProduct__catalog__\d+$/);

    // Another context handling ProductCreated: the event's correlation id is the request's id.
    const handled = await waitFor(
      'inventory handling ProductCreated',
      () => ofRequest(subgraphs.inventory, requestId).find((line) => line.message === 'event handled'),
      60_000,
    );
    expect(handled).toMatchObject({ level: 'debug', component: 'inventory.consumer', consumer: 'inventory', eventType: 'ProductCreated', traceId });
  });

  it('logs a refused request too, with its status and error code, under a new id when the client sent a malformed one', async () => {
    const response = await fetch(gatewayUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'not a "safe" id\u00e9' },
      body: JSON.stringify({ query: '{ products(' }),
    });
    const body = (await response.json()) as { errors: { extensions: { code: string } }[] };
    const requestId = response.headers.get('x-request-id')!;
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.status).toBe(400);
    const access = await waitFor('the access log line', () => ofRequest(gateway, requestId).find((line) => line.component === 'gateway.access'));
    expect(access).toMatchObject({ method: 'POST', status: 400, operationName: null, errorCodes: [body.errors[0]!.extensions.code] });
    expect(access).not.toHaveProperty('traceId');
  });

  it('are JSON, one object per line, when stderr is not a terminal', () => {
    for (const process of [gateway, ...Object.values(subgraphs)]) {
      const lines = linesOf(process);
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(Object.keys(line).slice(0, 2)).toEqual(['level', 'time']);
    }
  });
});

describe('a log line', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('never holds a password, a token, a cookie or a private key given in its fields, at any depth we log', () => {
    vi.stubEnv('LOG_FORMAT', 'json');
    const [line] = stderrDuring(() =>
      createLogger('accounts').warn('sign-in refused', {
        password: 'hunter2',
        headers: { authorization: 'Bearer eyJ.secret', cookie: 'session=s3cr3t', 'user-agent': 'curl' },
        variables: { input: { email: 'a@example.com', password: 'hunter3', paymentToken: 'tok_visa_secret' } },
        refreshToken: 'r3fresh',
        key: { privateKey: '-----BEGIN PRIVATE KEY-----' },
      }),
    );
    const entry = JSON.parse(line!);
    expect(line).not.toMatch(/hunter|eyJ\.secret|s3cr3t|r3fresh|tok_visa_secret|BEGIN PRIVATE KEY/);
    expect(entry).toMatchObject({
      password: '[redacted]',
      headers: { authorization: '[redacted]', cookie: '[redacted]', 'user-agent': 'curl' },
      variables: { input: { email: 'a@example.com', password: '[redacted]', paymentToken: '[redacted]' } },
      refreshToken: '[redacted]',
      key: { privateKey: '[redacted]' },
    });
  });

  it('is pretty for a person at a terminal, JSON for a pipe, and as LOG_FORMAT says when it is set', () => {
    vi.stubEnv('LOG_FORMAT', undefined);
    const log = createLogger('gateway');
    const writeOne = () => stderrDuring(() => log.warn('slow subgraph', { subgraph: 'catalog' }));
    const tty = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
    try {
      Object.defineProperty(process.stderr, 'isTTY', { value: false, configurable: true });
      expect(JSON.parse(writeOne()[0]!)).toMatchObject({ level: 'warn', component: 'gateway', message: 'slow subgraph', subgraph: 'catalog' });
      vi.stubEnv('LOG_FORMAT', 'pretty');
      const [pretty] = writeOne();
      expect(pretty).toMatch(/WARN.*gateway: slow subgraph.*"subgraph":"catalog"/);
      expect(pretty!.trimEnd().split('\n')).toHaveLength(1);
      Object.defineProperty(process.stderr, 'isTTY', { value: true, configurable: true });
      vi.stubEnv('LOG_FORMAT', undefined);
      expect(() => JSON.parse(writeOne()[0]!)).toThrow();
      vi.stubEnv('LOG_FORMAT', 'json');
      expect(JSON.parse(writeOne()[0]!)).toMatchObject({ message: 'slow subgraph' });
    } finally {
      if (tty) Object.defineProperty(process.stderr, 'isTTY', tty);
      else delete (process.stderr as { isTTY?: boolean }).isTTY;
    }
  });
});
