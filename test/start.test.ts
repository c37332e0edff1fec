import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { withDatabase } from '../platform/config.ts';
import { contextNames, type ContextName } from '../platform/contexts.ts';
import { readRuntimeFile } from '../platform/runtime-file.ts';
import { demoCategories, demoProducts, demoUsers } from '../scripts/demo/data.ts';
import { graphql } from './support/graphql.ts';
import { freePort, isListening, startProcess, type TestProcess } from './support/processes.ts';
import { readmeExamples, runReadmeExamples } from './support/readme-examples.ts';

/**
 * Seven processes started one after the other, each loading tsx and its Prisma client: ~40 s on an
 * idle machine, several minutes when a handful of test runs share its two cores.
 */
const platformStartMs = 240_000;

/** A free port for the gateway, the embedded PostgreSQL and every context. */
type Ports = Record<'gateway' | 'postgres' | ContextName, number>;

async function freePorts(): Promise<Ports> {
  const ports = { gateway: await freePort(), postgres: await freePort() } as Ports;
  for (const name of contextNames) ports[name] = await freePort();
  return ports;
}

/** `npm start` exactly as the README says, with its ports and data folder moved out of the way. */
function npmStart(ports: Ports, env: Record<string, string>): TestProcess {
  const base: NodeJS.ProcessEnv = { ...process.env };
  // The machine's own database, bus and keys would decide what each test means to choose.
  for (const name of Object.keys(base)) if (/DATABASE_URL|_KEY(_FILE)?$|^NATS_/.test(name)) delete base[name];
  return startProcess('npm', ['start'], {
    ...base,
    GATEWAY_PORT: String(ports.gateway),
    ...Object.fromEntries(contextNames.map((name) => [`${name.toUpperCase()}_PORT`, String(ports[name])])),
    EMBEDDED_POSTGRES_PORT: String(ports.postgres),
    ...env,
  });
}

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function tokenOf(ports: Ports, user: { email: string; password: string }): Promise<string> {
  const response = await graphql(`http://127.0.0.1:${ports.gateway}/graphql`, {
    query: 'mutation ($email: String!, $password: String!) { signIn(email: $email, password: $password) { token } }',
    variables: { email: user.email, password: user.password },
  });
  return response.data!.signIn.token as string;
}

/** Creates a product as the admin and waits until inventory, told by an event, shows its stock. */
async function expectEventsToFlow(ports: Ports, sku: string): Promise<void> {
  const created = await graphql(`http://127.0.0.1:${ports.gateway}/graphql`, {
    query: 'mutation ($sku: String!, $categoryId: ID!) { createProduct(input: { sku: $sku, name: "Started", price: 100, currency: "EUR", categoryId: $categoryId }) { id } }',
    variables: { sku, categoryId: demoCategories[0]!.id },
    token: await tokenOf(ports, demoUsers.admin),
  });
  const productId = created.data!.createProduct.id as string;
  await waitUntil(async () => {
    const response = await graphql(`http://127.0.0.1:${ports.gateway}/graphql`, { query: `{ product(id: "${productId}") { stock { available } } }` });
    return response.data?.product.stock?.available === 0;
  });
}

async function productCount(ports: Ports): Promise<number> {
  const response = await graphql(`http://127.0.0.1:${ports.gateway}/graphql`, { query: '{ products { totalCount } }' });
  return response.data!.products.totalCount;
}

/** npm re-raises Ctrl-C's SIGINT after its child exits (the shell's 130); the platform itself must say it stopped. */
async function expectCleanStop(started: TestProcess): Promise<void> {
  await started.exited;
  expect(started.child.exitCode === 0 || started.child.signalCode === 'SIGINT').toBe(true);
  expect(started.output()).toContain('Stopped.');
  expect(started.output()).not.toMatch(/Could not start|keeps crashing|did not stop/);
}

/**
 * Ctrl-C's stop as the supervisor reports it: the gateway, then every subgraph, then PostgreSQL
 * (when it started one), each after the one before had stopped; and no service complained.
 */
function expectOrderlyStop(output: string, { embedded }: { embedded: boolean }): void {
  const afterStop = output.slice(output.indexOf('Stopping…')).split('\n');
  const stopped = afterStop.map((line) => (line === 'PostgreSQL stopped' ? 'PostgreSQL' : /^(\w+) stopped \(/.exec(line)?.[1])).filter(Boolean);
  expect(stopped).toEqual(['gateway', ...[...contextNames].reverse(), ...(embedded ? ['PostgreSQL'] : [])]);
  expect(afterStop.filter((line) => /"level":"(error|warn)"|error|terminat/i.test(line))).toEqual([]);
}

async function expectAllStopped(ports: Ports): Promise<void> {
  for (const port of Object.values(ports)) expect(await isListening(port), `port ${port} still in use`).toBe(false);
}

describe('npm start', () => {
  // Each test's data folders and processes, removed and killed after it whether it passed or not.
  // The process id in the prefix tells this file's folders from those of other runs on the machine.
  const dataDirPrefix = `commerce-start-${process.pid}-`;
  const dataDirs: string[] = [];
  const running: TestProcess[] = [];
  const newDataDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), dataDirPrefix));
    // mkdtemp makes it 0700; run as root, the embedded PostgreSQL runs as `postgres`, which must enter it.
    chmodSync(dir, 0o755);
    dataDirs.push(dir);
    return dir;
  };
  afterEach(async () => {
    for (const started of running.splice(0)) {
      started.signalGroup('SIGKILL');
      // Bounded: a service whose supervisor died stops itself, but must not hold up the cleanup.
      await Promise.race([started.exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    }
    // Retries: a dying embedded PostgreSQL may still be writing into its folder.
    for (const dir of dataDirs.splice(0)) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  });
  afterAll(() => {
    expect(readdirSync(tmpdir()).filter((name) => name.startsWith(dataDirPrefix)), 'data folders left behind').toEqual([]);
  });

  it('runs the platform on an embedded PostgreSQL with demo data, on which the README’s GraphQL examples run as written, stops on Ctrl-C, and reuses the data on the next start', { timeout: 2 * platformStartMs + 120_000 }, async () => {
    const dataDir = newDataDir();
    const ports = await freePorts();

    const first = npmStart(ports, { DATA_DIR: dataDir });
    running.push(first);
    expect(await first.waitForOutput(/Apollo Sandbox:/, platformStartMs)).toContain(`http://localhost:${ports.gateway}/graphql`);
    expect(first.output()).toContain('starting embedded PostgreSQL');
    // Before anything else touches the data: a newcomer's fresh start, every block in the README's order.
    const examples = readmeExamples(readFileSync(new URL('../README.md', import.meta.url), 'utf8'));
    expect(examples.length).toBeGreaterThan(0);
    await runReadmeExamples(`http://127.0.0.1:${ports.gateway}/graphql`, examples);
    expect(await productCount(ports)).toBeGreaterThanOrEqual(50);
    const signIn = await graphql(`http://127.0.0.1:${ports.gateway}/graphql`, {
      query: 'mutation ($email: String!, $password: String!) { signIn(email: $email, password: $password) { customer { roles } } }',
      variables: { email: demoUsers.admin.email, password: demoUsers.admin.password },
    });
    expect(signIn.data?.signIn.customer.roles).toContain('ADMIN');

    // Events cross processes: catalog's relay → the embedded PostgreSQL queue → inventory's consumer.
    await expectEventsToFlow(ports, 'START-001');
    // The saga across processes: orders → inventory → payments → shipping → orders.
    const customerToken = await tokenOf(ports, demoUsers.customer);
    const placed = await graphql(`http://127.0.0.1:${ports.gateway}/graphql`, {
      query: 'mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }',
      variables: {
        input: {
          lines: [{ productId: demoProducts[0]!.id, quantity: 1 }],
          shippingAddress: { name: 'Carl', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
          paymentToken: 'tok_visa',
          idempotencyKey: 'start-test-order',
        },
      },
      token: customerToken,
    });
    expect(placed.data?.placeOrder.status).toBe('PENDING');
    await waitUntil(async () => {
      const response = await graphql(`http://127.0.0.1:${ports.gateway}/graphql`, {
        query: `{ order(id: "${placed.data!.placeOrder.id}") { status payment { status } shipment { status } } }`,
        token: customerToken,
      });
      return JSON.stringify(response.data?.order) === JSON.stringify({ status: 'CONFIRMED', payment: { status: 'AUTHORIZED' }, shipment: { status: 'CREATED' } });
    }, 60_000);

    const status = startProcess('npm', ['run', '--silent', 'events', '--', 'status'], { ...process.env, DATA_DIR: dataDir });
    expect(await status.exited).toBe(0);
    expect(status.output()).toMatch(/Event bus: postgres/);
    expect(status.output()).toMatch(/inventory\s+lag\s+0\s+dead letters 0/);

    first.signalGroup('SIGINT');
    await expectCleanStop(first);
    expectOrderlyStop(first.output(), { embedded: true });
    await expectAllStopped(ports);

    const second = npmStart(ports, { DATA_DIR: dataDir });
    running.push(second);
    await second.waitForOutput(/Apollo Sandbox:/, platformStartMs);
    expect(second.output()).toMatch(/Demo data: 0 products, 0 categories, 0 users added/);
    expect(second.output()).toMatch(/accounts: database .*, up to date/);
    // The 60 demo products, not seeded twice, and the one created above, kept.
    expect(await productCount(ports)).toBe(61);
    second.signalGroup('SIGINT');
    await expectCleanStop(second);
    await expectAllStopped(ports);
  });

  it('uses the configured PostgreSQL server when DATABASE_URL is set', { timeout: platformStartMs + 120_000 }, async () => {
    const ports = await freePorts();
    const databaseUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_start`);
    const platform = npmStart(ports, { DATABASE_URL: databaseUrl, DATA_DIR: newDataDir() });
    running.push(platform);
    await platform.waitForOutput(/Apollo Sandbox:/, platformStartMs);
    expect(platform.output()).not.toContain('embedded PostgreSQL');
    expect(platform.output()).toContain(`/${inject('runPrefix')}_start_catalog`);
    expect(await productCount(ports)).toBe(60);
    platform.signalGroup('SIGINT');
    await expectCleanStop(platform);
    expectOrderlyStop(platform.output(), { embedded: false });
  });

  it('restarts a subgraph killed while the platform serves queries, says so, and leaves the other processes alone', { timeout: platformStartMs + 120_000 }, async () => {
    const ports = await freePorts();
    const dataDir = newDataDir();
    const databaseUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_startkill`);
    const platform = npmStart(ports, { DATABASE_URL: databaseUrl, DATA_DIR: dataDir });
    running.push(platform);
    await platform.waitForOutput(/Apollo Sandbox:/, platformStartMs);
    const before = readRuntimeFile(dataDir)!.services!;
    expect(Object.keys(before).sort()).toEqual([...contextNames, 'gateway'].sort());

    // Clients keep asking the whole time; a product list needs the catalog.
    const answers: ('ok' | 'failed')[] = [];
    let querying = true;
    const clients = (async () => {
      while (querying) {
        const response = await graphql(`http://127.0.0.1:${ports.gateway}/graphql`, { query: '{ products { totalCount } }' }).catch(() => undefined);
        answers.push(response?.data?.products?.totalCount === 60 ? 'ok' : 'failed');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    await waitUntil(async () => answers.includes('ok'));

    process.kill(before.catalog!.pid!, 'SIGKILL');

    expect(await platform.waitForOutput(/^catalog exited/)).toBe('catalog exited (signal SIGKILL); restarting in 0.25 s (restart 1)');
    await platform.waitForOutput(/^catalog is back \(healthy after/, 120_000);
    const answered = answers.length;
    await waitUntil(async () => answers.slice(answered).includes('ok'), 60_000);
    querying = false;
    await clients;

    const after = readRuntimeFile(dataDir)!.services!;
    expect(after.catalog).toEqual({ pid: expect.any(Number), port: ports.catalog, restarts: 1 });
    expect(after.catalog!.pid).not.toBe(before.catalog!.pid);
    for (const name of ['gateway', ...contextNames.filter((name) => name !== 'catalog')]) expect(after[name], name).toEqual(before[name]);
    // Only the catalog went down, once.
    expect(platform.output().match(/restarting in/g)).toHaveLength(1);
    platform.signalGroup('SIGINT');
    await expectCleanStop(platform);
    expectOrderlyStop(platform.output(), { embedded: false });
    await expectAllStopped(ports);
  });

  it('puts the PostgreSQL queue on the first context’s server, and says so, when only the six <CONTEXT>_DATABASE_URL are set', { timeout: platformStartMs + 120_000 }, async () => {
    const ports = await freePorts();
    const prefix = `${inject('runPrefix')}_startown`;
    const ownUrls = Object.fromEntries(contextNames.map((name) => [`${name.toUpperCase()}_DATABASE_URL`, withDatabase(inject('testServerUrl'), `${prefix}_${name}`)]));
    const platform = npmStart(ports, { ...ownUrls, DATA_DIR: newDataDir() });
    running.push(platform);

    const busLine = await platform.waitForOutput(/Event bus:/, 120_000);
    await platform.waitForOutput(/Apollo Sandbox:/, platformStartMs);

    expect(busLine).toContain(`PostgreSQL queue in postgres://`);
    expect(busLine).toContain(`/${prefix}_events`);
    expect(busLine).toContain('on the server of ACCOUNTS_DATABASE_URL');
    expect(platform.output()).not.toContain('embedded PostgreSQL');
    await expectEventsToFlow(ports, 'START-OWN-001');
    platform.signalGroup('SIGINT');
    await expectCleanStop(platform);
  });

  it('stops everything it started and exits 1 when a service cannot start', { timeout: platformStartMs + 120_000 }, async () => {
    const ports = await freePorts();
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(ports.catalog, '127.0.0.1', resolve));
    try {
      const databaseUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_startfail`);
      const platform = npmStart(ports, { DATABASE_URL: databaseUrl, DATA_DIR: newDataDir() });
      running.push(platform);
      expect(await platform.exited).toBe(1);
      expect(platform.output()).toMatch(/catalog exited with code 1 while starting/);
      expect(await isListening(ports.accounts)).toBe(false);
    } finally {
      blocker.close();
    }
  });
});
