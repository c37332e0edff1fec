/**
 * `npm run bench -- subscriptions [--subscribers 1000,10000] [--unshared 1000,10000] [--orders 100]
 *    [--rate 10] [--workers 2] [--concurrency 50] [--idle-seconds 12] [--bus nats|postgres]
 *    [--profile <dir>] [--quick]`
 *
 * Order subscriptions through the gateway, against the same subscriptions made at the orders
 * subgraph directly (the hop-free baseline), so the gateway's cost is a ratio.
 *
 * Processes: the gateway (gateway/main.ts, as deployed) and the orders subgraph
 * (subgraphs/orders/main.ts: its saga, projector and subscriptions) each run as a process of
 * their own, started afresh for every run, so their CPU and memory are that run's and theirs
 * alone (read from /proc; their JavaScript heap through scripts/bench/memory-probe.ts). The
 * subscribers are in `--workers` client processes (scripts/bench/subscription-clients.ts), one
 * WebSocket each, so their sockets count against neither service. The other five subgraphs and
 * the event bus run in this process. `--profile <dir>` writes V8 CPU profiles of the gateway
 * and orders processes there.
 *
 * Scenarios, each run both ways (through the gateway; directly at the orders subgraph, with the
 * same identities, the gateway's signature made by the benchmark):
 * - shared, for each `--subscribers` N: N subscribers spread evenly over `--orders` orders
 *   placed for as many customers; each subscriber signs in as its order's customer, so the
 *   gateway serves all of an order's subscribers from ONE upstream subscription (one per order
 *   and caller);
 * - unshared, for each `--unshared` N: every subscriber is a different caller (an admin with a
 *   synthetic customer id: admins may watch any order), so the gateway opens one upstream
 *   subscription per subscriber.
 * Either way the gateway's upstream subscriptions share one socket to the orders subgraph, each
 * carrying its caller's signed identity.
 *
 * Every subscriber runs `subscription Watch($id: ID!) { orderStatusChanged(orderId: $id)
 * { id status updatedAt } }`: fields of the orders subgraph only, so both paths resolve the same
 * thing and the gateway's part is the hop, the fan-out and its bookkeeping. A warm-up first
 * takes an order of its own through every step with a few subscribers. Then all subscribe (each
 * gets its order as it is: CONFIRMED), stay idle for `--idle-seconds` (one keep-alive interval:
 * the CPU of an idle subscription), and every order's shipment is advanced (advanceShipment at
 * the shipping subgraph, as an admin) to DISPATCHED, IN_TRANSIT and DELIVERED, `--rate` orders
 * per second, waiting between steps until every subscriber has the step's event: each
 * subscriber gets SHIPPED and DELIVERED (IN_TRANSIT does not change the order's status). Every
 * event must arrive, once, in order: anything else fails the run.
 *
 * Latency, the same definition on both paths: from the order's commit to the client receiving
 * the event, measured as (arrival in the client process, wall clock) − (the event's
 * `Order.updatedAt`, the time the orders subgraph stamps on the status change inside the
 * transaction that commits it). The stamp precedes the commit by the rest of that transaction
 * (a few ms) and is truncated to the millisecond. Also printed: from the projection's commit
 * (a listener process hears the projector's NOTIFY on `order_projections`, which is what wakes
 * the subscriptions) to the client, i.e. the subscription path without the projector.
 *
 * Also printed per run: the serving process's memory per subscription (RSS delta, and heap
 * delta after a full GC, from before the subscribers connected to after), the gateway's and the
 * orders subgraph's CPU to accept the subscriptions, idle, and while events flowed (per
 * delivered event, net of idle), and the orders database's PostgreSQL backends' CPU.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { exportPKCS8, exportSPKI, generateKeyPair, type CryptoKey } from 'jose';
import pg from 'pg';
import { withDatabase } from '../../platform/config.ts';
import { contextNames, type ContextName } from '../../platform/contexts.ts';
import { applyMigrations, migrationsDirOf } from '../../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';
import type { EventBus } from '../../platform/events/bus.ts';
import { createJetStreamBus } from '../../platform/events/bus/nats-jetstream.ts';
import { createPostgresQueueBus } from '../../platform/events/bus/postgres-queue.ts';
import { issueCustomerToken } from '../../platform/identity/customer-token.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader } from '../../platform/identity/gateway-identity.ts';
import { anonymous, type Identity } from '../../platform/identity/identity.ts';
import { signingAlgorithm } from '../../platform/identity/keys.ts';
import type { RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import { startAccountsSubgraph } from '../../subgraphs/accounts/subgraph.ts';
import { startCatalogSubgraph } from '../../subgraphs/catalog/subgraph.ts';
import { startInventorySubgraph } from '../../subgraphs/inventory/subgraph.ts';
import { ORDER_PROJECTIONS_CHANNEL } from '../../subgraphs/orders/projections/projector.ts';
import { startPaymentsSubgraph } from '../../subgraphs/payments/subgraph.ts';
import { startShippingSubgraph } from '../../subgraphs/shipping/subgraph.ts';
import { demoProducts } from '../demo/data.ts';
import { seedDemoData } from '../demo/seed.ts';
import { deleteStreams } from './platform.ts';
import { cpuMsOf, establishedConnectionsOf, freePort, IpcWorker, machineCpuTimes, memoryProbe, repoRoot, ServiceProcess, startGatewayProcess, type JsMemory } from './processes.ts';
import type { ClientsCommand, CollectResult, CountResult, ListenerCommand, OpenResult, SubscriberSpec } from './subscription-clients.ts';
import { benchNatsUrl, benchServerUrl, machineLine, printTable, sleep, summarize, Cleanups } from './support.ts';

const watchQuery = 'subscription Watch($id: ID!) { orderStatusChanged(orderId: $id) { id status updatedAt } }';
/** The shipment steps, and the order status each one leads to (none: the order does not change). */
const steps: { to: 'DISPATCHED' | 'IN_TRANSIT' | 'DELIVERED'; orderStatus?: 'SHIPPED' | 'DELIVERED' }[] = [
  { to: 'DISPATCHED', orderStatus: 'SHIPPED' },
  { to: 'IN_TRANSIT' },
  { to: 'DELIVERED', orderStatus: 'DELIVERED' },
];
const expectedSequence = 'CONFIRMED→SHIPPED→DELIVERED';
const measuredPerSubscriber = steps.filter((step) => step.orderStatus).length;
const address = { name: 'Bench Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };
const tsxLoader = ['--import', 'tsx'];
/** Node flags of a measured service: heap readable after a full GC, optionally CPU-profiled. */
const serviceExecArgv = (options: Options) => [
  '--expose-gc',
  ...(options.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.profileDir}`] : []),
  ...tsxLoader,
  '--import',
  pathToFileURL(memoryProbe).href,
];
const clientsModule = new URL('./subscription-clients.ts', import.meta.url).pathname;

type Path = 'gateway' | 'direct';
type Sharing = 'shared' | 'unshared';

interface Options {
  subscribers: number[];
  unshared: number[];
  orders: number;
  rate: number;
  workers: number;
  bus: 'nats' | 'postgres';
  concurrency: number;
  /** Seconds of idle with every subscription open, before the events (CPU of the keep-alives). */
  idleSeconds: number;
  /** Writes V8 CPU profiles of the gateway and orders processes into this directory. */
  profileDir?: string;
}

// ── the platform: orders in a process of its own, five subgraphs and the bus in this one ──────

interface Platform {
  prefix: string;
  databaseUrls: Record<ContextName, string>;
  /** PEM keys, as the services read them from their environment. */
  keys: { authTokenPublic: string; gatewayIdentityPrivate: string };
  authTokenPrivateKey: CryptoKey;
  /** Signs identities as the gateway would, valid for an hour (direct clients, setup requests). */
  signer: GatewayIdentitySigner;
  subgraphUrls: Record<ContextName, string>;
  /** The orders subgraph's process: a fresh one per run (restartOrders). */
  orders: ServiceProcess;
  ordersPort: number;
  restartOrders(): Promise<void>;
}


async function startSplitPlatform(options: Options, cleanups: Cleanups): Promise<Platform> {
  const prefix = `bench_${randomBytes(4).toString('hex')}`;
  const databases: string[] = [];
  cleanups.add(`dropping the ${prefix}_* databases`, () => Promise.all(databases.map((url) => dropDatabase(url))));
  const database = async (name: string) => {
    const url = withDatabase(benchServerUrl, `${prefix}_${name}`);
    databases.push(url);
    await ensureDatabase(url);
    return url;
  };
  const databaseUrls = {} as Record<ContextName, string>;
  for (const context of contextNames) {
    databaseUrls[context] = await database(context);
    await applyMigrations({ databaseUrl: databaseUrls[context], migrationsDir: migrationsDirOf(context) });
  }
  await seedDemoData(databaseUrls);
  const inventory = new pg.Client({ connectionString: databaseUrls.inventory });
  await inventory.connect();
  await inventory.query('UPDATE stock_items SET available = 1000000, version = version + 1, updated_at = now()').finally(() => inventory.end());

  const authToken = await generateKeyPair(signingAlgorithm, { extractable: true });
  const gatewayIdentity = await generateKeyPair(signingAlgorithm, { extractable: true });
  const keys = { authTokenPublic: await exportSPKI(authToken.publicKey), gatewayIdentityPrivate: await exportPKCS8(gatewayIdentity.privateKey) };
  const gatewayIdentityPublic = await exportSPKI(gatewayIdentity.publicKey);

  let eventBus: EventBus;
  const busEnv: Record<string, string> = {};
  if (options.bus === 'nats') {
    const stream = `BENCH_${randomBytes(4).toString('hex').toUpperCase()}`;
    const subjectPrefix = `b${randomBytes(4).toString('hex')}`;
    cleanups.add(`deleting stream ${stream}`, () => deleteStreams(benchNatsUrl, stream, `${stream}_DEAD_LETTERS`));
    eventBus = await createJetStreamBus({ servers: benchNatsUrl, stream, subjectPrefix });
    Object.assign(busEnv, { NATS_URL: benchNatsUrl, NATS_STREAM: stream, NATS_SUBJECT_PREFIX: subjectPrefix });
  } else {
    const busUrl = await database('bus');
    eventBus = await createPostgresQueueBus({ databaseUrl: busUrl });
    busEnv.EVENT_BUS_DATABASE_URL = busUrl;
  }
  cleanups.add('closing the event bus', () => eventBus.close());

  const base = { port: 0, host: '127.0.0.1', gatewayPublicKey: gatewayIdentity.publicKey, production: true, eventBus };
  const inProcess: Partial<Record<ContextName, RunningContextSubgraph>> = {};
  const started = async (name: ContextName, start: () => Promise<RunningContextSubgraph>) => {
    inProcess[name] = await start();
    cleanups.add(`stopping ${name}`, () => inProcess[name]!.stop());
  };
  await started('accounts', () => startAccountsSubgraph({ ...base, databaseUrl: databaseUrls.accounts, authTokenPrivateKey: authToken.privateKey }));
  await started('catalog', () => startCatalogSubgraph({ ...base, databaseUrl: databaseUrls.catalog }));
  await started('inventory', () => startInventorySubgraph({ ...base, databaseUrl: databaseUrls.inventory }));
  await started('payments', () => startPaymentsSubgraph({ ...base, databaseUrl: databaseUrls.payments }));
  await started('shipping', () => startShippingSubgraph({ ...base, databaseUrl: databaseUrls.shipping }));

  const ordersPort = await freePort();
  const childEnv = { ...process.env };
  for (const name of ['NATS_URL', 'NATS_STREAM', 'NATS_SUBJECT_PREFIX', 'EVENT_BUS_DATABASE_URL', 'DATABASE_URL']) delete childEnv[name];
  const startOrders = () => ServiceProcess.start({
    name: 'orders',
    module: `${repoRoot}subgraphs/orders/main.ts`,
    execArgv: serviceExecArgv(options),
    env: {
      ...childEnv,
      ...busEnv,
      NODE_ENV: 'production',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      ORDERS_DATABASE_URL: databaseUrls.orders,
      MIGRATE_ON_START: 'false',
      PORT: String(ordersPort),
      HOST: '127.0.0.1',
      GATEWAY_IDENTITY_PUBLIC_KEY: gatewayIdentityPublic,
    },
    healthUrl: `http://127.0.0.1:${ordersPort}/health`,
  });
  let orders = await startOrders();
  cleanups.add('stopping the orders subgraph', () => orders.stop());
  const subgraphUrls = Object.fromEntries(contextNames.map((name) => [name, name === 'orders' ? `http://127.0.0.1:${ordersPort}/graphql` : inProcess[name]!.url])) as Record<
    ContextName,
    string
  >;
  const platform: Platform = {
    prefix,
    databaseUrls,
    keys,
    authTokenPrivateKey: authToken.privateKey,
    signer: new GatewayIdentitySigner(gatewayIdentity.privateKey, { callTtlSeconds: 3600, subscriptionTtlSeconds: 3600 }),
    subgraphUrls,
    orders,
    ordersPort,
    async restartOrders() {
      await orders.stop();
      orders = platform.orders = await startOrders();
    },
  };
  return platform;
}

async function startBenchGateway(platform: Platform, options: Options, maxConnectionsPerCaller: number): Promise<{ gateway: ServiceProcess; port: number; wsUrl: string }> {
  return startGatewayProcess({
    subgraphUrls: platform.subgraphUrls,
    execArgv: serviceExecArgv(options),
    env: {
      ...process.env,
      NODE_ENV: 'production',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      AUTH_TOKEN_PUBLIC_KEY: platform.keys.authTokenPublic,
      GATEWAY_IDENTITY_PRIVATE_KEY: platform.keys.gatewayIdentityPrivate,
      GATEWAY_MAX_CONNECTIONS_PER_CALLER: String(maxConnectionsPerCaller),
      // Thousands of subscribers from one address: the benchmark measures fan-out, not rate limits.
      GATEWAY_RATE_LIMITS: 'off',
    },
  });
}

// ── requests straight to the subgraphs, signed as the gateway signs them ─────────────────────

async function subgraphRequest(platform: Platform, subgraph: ContextName, identity: Identity, query: string, variables: Record<string, unknown> = {}): Promise<any> {
  const response = await fetch(platform.subgraphUrls[subgraph], {
    method: 'POST',
    headers: { 'content-type': 'application/json', [gatewayIdentityHeader]: await platform.signer.sign(identity, subgraph) },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: any; errors?: { message: string; extensions?: { code?: string } }[] };
  if (body.errors?.length || !body.data) throw new Error(`${subgraph} answered ${response.status}: ${JSON.stringify(body.errors ?? body)}`);
  return body.data;
}

const admin: Identity = { customerId: randomUUID(), roles: ['customer', 'admin'] };

interface BenchOrder {
  id: string;
  customer: Identity;
}

/** Places `count` orders, one per new customer, at the orders subgraph; resolves once all are CONFIRMED. */
async function placeConfirmedOrders(platform: Platform, count: number): Promise<BenchOrder[]> {
  const orders: BenchOrder[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < count) {
        const n = next++;
        const customer: Identity = { customerId: randomUUID(), roles: ['customer'] };
        const product = demoProducts[n % demoProducts.length]!;
        const data = await subgraphRequest(platform, 'orders', customer, 'mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }', {
          input: { lines: [{ productId: product.id, quantity: 1 }], shippingAddress: address, paymentToken: 'tok_visa', idempotencyKey: randomUUID() },
        });
        orders.push({ id: data.placeOrder.id, customer });
      }
    }),
  );
  const client = new pg.Client({ connectionString: platform.databaseUrls.orders });
  await client.connect();
  try {
    const deadline = Date.now() + 60_000 + count * 200;
    while (true) {
      const { rows } = await client.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM order_summaries WHERE order_id = ANY($1::uuid[]) GROUP BY status', [
        orders.map((order) => order.id),
      ]);
      const confirmed = rows.find((row) => row.status === 'CONFIRMED')?.n ?? 0;
      const failed = rows.filter((row) => row.status !== 'CONFIRMED' && row.status !== 'PENDING');
      if (failed.length > 0) throw new Error(`orders placed for the benchmark ended ${failed.map((row) => `${row.n} ${row.status}`).join(', ')}`);
      if (confirmed === count) return orders;
      if (Date.now() > deadline) throw new Error(`only ${confirmed} of ${count} orders CONFIRMED in time`);
      await sleep(250);
    }
  } finally {
    await client.end();
  }
}

async function advance(platform: Platform, orderId: string, to: string): Promise<void> {
  await subgraphRequest(platform, 'shipping', admin, `mutation ($id: ID!) { advanceShipment(orderId: $id, to: ${to}) { status } }`, { id: orderId });
}

// ── CPU of the rest: PostgreSQL backends of the orders database, the machine ─────────────────

async function backendCpuMs(platform: Platform): Promise<Map<number, number>> {
  const client = new pg.Client({ connectionString: withDatabase(benchServerUrl, 'postgres') });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [`${platform.prefix}_orders`]);
    const cpu = new Map<number, number>();
    for (const { pid } of rows) {
      const ms = await cpuMsOf(pid);
      if (ms !== undefined) cpu.set(pid, ms);
    }
    return cpu;
  } finally {
    await client.end();
  }
}


// ── one run: N subscribers on one path ─────────────────────────────────────────────────────

interface Run {
  sharing: Sharing;
  subscribers: number;
  path: Path;
}

interface RunResult extends Run {
  orders: number;
  /** Subscriptions at the orders subgraph and the sockets they use (gateway: its upstreams; direct: the clients'). */
  upstreamSubscriptions: number;
  upstreamSockets: number;
  /** Client sockets the client processes hold to the serving process (counted in /proc). */
  clientSockets: number;
  subscribeSeconds: number;
  latency: ReturnType<typeof summarize>;
  fromProjection: ReturnType<typeof summarize>;
  /** Smallest commit → client latency seen (a sanity check of the clocks: must not be negative). */
  minLatency: number;
  delivered: number;
  expected: number;
  sequences: Record<string, number>;
  problems: string[];
  /** Of the serving process (gateway, or orders for direct): bytes per subscription. */
  rssPerSubscription: number;
  heapPerSubscription: number;
  /** Of the serving process after the events, bytes. */
  rssAfter: number;
  heapAfter: number;
  /** Heap of the orders subgraph per subscription (both paths). */
  ordersHeapPerSubscription: number;
  /** CPU ms of each process: accepting the subscriptions, idle with them open (per second), while events flowed. */
  gatewayCpu: { subscribe: number; idlePerSecond: number; events: number };
  ordersCpu: { subscribe: number; idlePerSecond: number; events: number };
  postgresEventsCpuMs: number;
  clientsEventsCpuMs: number;
  eventsSeconds: number;
  machineBusy: number;
}

class ClientWorkers {
  readonly workers: IpcWorker<ClientsCommand>[];

  constructor(count: number) {
    this.workers = Array.from({ length: count }, (_, i) => new IpcWorker<ClientsCommand>(`clients-${i + 1}`, clientsModule, ['clients'], tsxLoader));
  }

  /** Opens the subscribers, dealt round-robin over the workers. */
  async open(url: string, subscribers: SubscriberSpec[], concurrency: number): Promise<OpenResult> {
    const shares = this.workers.map((_, w) => subscribers.filter((_, i) => i % this.workers.length === w));
    const results = await Promise.all(
      this.workers.map((worker, w) => worker.request<OpenResult>({ type: 'open', url, query: watchQuery, subscribers: shares[w]!, concurrency, timeoutMs: 120_000 })),
    );
    return {
      opened: results.reduce((n, r) => n + r.opened, 0),
      failed: results.reduce((n, r) => n + r.failed, 0),
      failures: results.flatMap((r) => r.failures).slice(0, 5),
      ms: Math.max(...results.map((r) => r.ms)),
    };
  }

  async count(): Promise<CountResult> {
    const counts = await Promise.all(this.workers.map((worker) => worker.request<CountResult>({ type: 'count' })));
    const byStatus: Record<string, number> = {};
    for (const count of counts) for (const [status, n] of Object.entries(count.byStatus)) byStatus[status] = (byStatus[status] ?? 0) + n;
    return { initial: counts.reduce((n, c) => n + c.initial, 0), byStatus, problems: counts.reduce((n, c) => n + c.problems, 0) };
  }

  async collect(): Promise<CollectResult> {
    const all = await Promise.all(this.workers.map((worker) => worker.request<CollectResult>({ type: 'collect' })));
    const sequences: Record<string, number> = {};
    for (const result of all) for (const [key, n] of Object.entries(result.sequences)) sequences[key] = (sequences[key] ?? 0) + n;
    return {
      order: all.flatMap((r) => r.order),
      status: all.flatMap((r) => r.status),
      receivedAt: all.flatMap((r) => r.receivedAt),
      updatedAt: all.flatMap((r) => r.updatedAt),
      sequences,
      problems: all.flatMap((r) => r.problems).slice(0, 10),
      cpuMs: all.reduce((n, r) => n + r.cpuMs, 0),
    };
  }

  /** Sockets the client processes hold open to `port` (counted in /proc). */
  async socketsTo(port: number): Promise<number> {
    let sockets = 0;
    for (const worker of this.workers) sockets += (await establishedConnectionsOf(worker.pid)).toRemotePort.get(port) ?? 0;
    return sockets;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.request({ type: 'close' })));
  }

  async reset(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.request({ type: 'reset' })));
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.stop()));
  }
}

interface Identities {
  /**
   * The connection_init payload of subscriber i, for each path, and on the direct path the
   * subscription's own signed identity (its `extensions`), as the gateway sends them.
   */
  of(i: number, order: BenchOrder, path: Path): Promise<Pick<SubscriberSpec, 'connectionParams' | 'extensions'>>;
}

function identitiesFor(platform: Platform, sharing: Sharing): Identities {
  const tokens = new Map<string, string>();
  const callers = new Map<number, Identity>();
  return {
    async of(i, order, path): Promise<Pick<SubscriberSpec, 'connectionParams' | 'extensions'>> {
      let identity = order.customer;
      if (sharing === 'unshared') {
        if (!callers.has(i)) callers.set(i, { customerId: randomUUID(), roles: ['customer', 'admin'] });
        identity = callers.get(i)!;
      }
      const key = `${path}|${identity.customerId}`;
      let token = tokens.get(key);
      if (!token) {
        token =
          path === 'gateway'
            ? await issueCustomerToken(platform.authTokenPrivateKey, { customerId: identity.customerId!, roles: identity.roles }, 3600)
            : await platform.signer.sign(identity, 'orders', 'subscription');
        tokens.set(key, token);
      }
      if (path === 'gateway') return { connectionParams: { Authorization: `Bearer ${token}` } };
      // The socket as the gateway opens it (signed, as nobody in particular); each subscription with its caller's identity.
      return { connectionParams: { [gatewayIdentityHeader]: await platform.signer.sign(anonymous, 'orders') }, extensions: { [gatewayIdentityHeader]: token } };
    },
  };
}

async function waitUntilCounted(clients: ClientWorkers, what: string, done: (count: CountResult) => boolean, timeoutMs: number): Promise<CountResult> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const count = await clients.count();
    if (done(count)) return count;
    if (count.problems > 0) throw new Error(`${count.problems} subscribers had a problem while waiting for ${what}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(count)}`);
    await sleep(100);
  }
}

/** Advances every order's shipment to `to`, `rate` orders per second. */
async function advanceAll(platform: Platform, orders: BenchOrder[], to: string, rate: number): Promise<void> {
  const started = performance.now();
  await Promise.all(
    orders.map(async (order, k) => {
      await sleep(started + (k * 1000) / rate - performance.now());
      await advance(platform, order.id, to);
    }),
  );
}

async function measureRun(platform: Platform, run: Run, orders: BenchOrder[], warmUpOrder: BenchOrder, options: Options, listener: IpcWorker<ListenerCommand>): Promise<RunResult> {
  // Fresh processes for each run: their memory and CPU are this run's alone.
  await platform.restartOrders();
  const clients = new ClientWorkers(options.workers);
  let gateway: Awaited<ReturnType<typeof startBenchGateway>> | undefined;
  try {
    const identities = identitiesFor(platform, run.sharing);
    const url = run.path === 'gateway' ? (gateway = await startBenchGateway(platform, options, Math.max(20, run.subscribers + 10))).wsUrl : platform.subgraphUrls.orders.replace(/^http/, 'ws');
    const serving = gateway?.gateway ?? platform.orders;
    const cpu = async () => ({ gateway: (await gateway?.gateway.cpuMs()) ?? 0, orders: (await platform.orders.cpuMs())! });

    // Warm-up, on an order of its own: a few subscribers (connections, the plan), the order taken
    // through every step (the saga, the projector, each process's event path), then gone.
    const warmUp = await Promise.all(
      Array.from({ length: options.workers * 2 }, async (_, i) => ({ order: -1, orderId: warmUpOrder.id, ...(await identities.of(run.subscribers + i, warmUpOrder, run.path)) })),
    );
    const warm = await clients.open(url, warmUp, 10);
    if (warm.failed > 0) throw new Error(`warm-up subscribers failed: ${warm.failures.join('; ')}`);
    for (const step of steps) await advance(platform, warmUpOrder.id, step.to);
    await waitUntilCounted(clients, 'the warm-up events', (count) => (count.byStatus.DELIVERED ?? 0) >= warmUp.length, 60_000);
    await clients.close();
    await clients.reset();
    await sleep(1_000);

    const specs: SubscriberSpec[] = [];
    for (let i = 0; i < run.subscribers; i++) {
      const order = orders[i % orders.length]!;
      specs.push({ order: i % orders.length, orderId: order.id, ...(await identities.of(i, order, run.path)) });
    }

    // Subscribing: memory before and after, CPU while the subscribers connect.
    const servingBefore = await serving.jsMemory();
    const servingRssBefore = (await serving.residentMemory()).rss;
    const ordersBefore = run.path === 'gateway' ? await platform.orders.jsMemory() : servingBefore;
    const cpu0 = await cpu();
    const opened = await clients.open(url, specs, options.concurrency);
    if (opened.failed > 0) throw new Error(`${opened.failed} of ${run.subscribers} subscribers could not subscribe, e.g. ${opened.failures.join('; ')}`);
    const cpu1 = await cpu();
    await sleep(1_000);
    const servingAfter = await serving.jsMemory();
    const servingRssAfter = (await serving.residentMemory()).rss;
    const ordersAfter = run.path === 'gateway' ? await platform.orders.jsMemory() : servingAfter;
    const clientSockets = await clients.socketsTo(gateway?.port ?? platform.ordersPort);
    const upstreamSockets = gateway ? ((await establishedConnectionsOf(gateway.gateway.pid)).toRemotePort.get(platform.ordersPort) ?? 0) : clientSockets;

    // Idle with every subscription open, for one keep-alive interval (pings to every socket).
    const cpu2 = await cpu();
    await sleep(options.idleSeconds * 1000);
    const cpu3 = await cpu();

    // Events: every order's shipment, step by step, `rate` orders per second.
    const clientsCpu0 = (await clients.collect()).cpuMs;
    const backends0 = await backendCpuMs(platform);
    const machine0 = machineCpuTimes();
    const cpu4 = await cpu();
    const eventsStarted = performance.now();
    for (const step of steps) {
      await advanceAll(platform, orders, step.to, options.rate);
      if (step.orderStatus) {
        const status = step.orderStatus;
        await waitUntilCounted(clients, `every subscriber's ${status}`, (count) => (count.byStatus[status] ?? 0) >= run.subscribers, 60_000);
      } else {
        await sleep(500);
      }
    }
    const eventsSeconds = (performance.now() - eventsStarted) / 1000;
    const cpu5 = await cpu();
    const machine1 = machineCpuTimes();
    const backends1 = await backendCpuMs(platform);
    // Late duplicates, if any, show in the sequences.
    await sleep(500);
    const collected = await clients.collect();
    const servingEnd = await serving.jsMemory();
    const servingRssEnd = (await serving.residentMemory()).rss;

    const heard = await listener.request<Record<string, number[]>>({ type: 'collect' });
    const latencies: number[] = [];
    const fromProjection: number[] = [];
    for (let e = 0; e < collected.order.length; e++) {
      const receivedAt = collected.receivedAt[e]!;
      const updatedAt = collected.updatedAt[e]!;
      latencies.push(receivedAt - updatedAt);
      // The first projection NOTIFY naming the order after its status change was stamped.
      const projectedAt = heard[orders[collected.order[e]!]!.id.toLowerCase()]?.find((at) => at >= updatedAt);
      if (projectedAt !== undefined) fromProjection.push(receivedAt - projectedAt);
    }
    let postgresCpu = 0;
    for (const [pid, ms] of backends1) postgresCpu += ms - (backends0.get(pid) ?? 0);

    return {
      ...run,
      orders: orders.length,
      upstreamSubscriptions: run.path === 'direct' || run.sharing === 'unshared' ? run.subscribers : orders.length,
      upstreamSockets,
      clientSockets,
      subscribeSeconds: opened.ms / 1000,
      latency: summarize(latencies),
      fromProjection: summarize(fromProjection),
      minLatency: Math.min(...latencies),
      delivered: collected.order.length,
      expected: run.subscribers * measuredPerSubscriber,
      sequences: collected.sequences,
      problems: collected.problems,
      rssPerSubscription: (servingRssAfter - servingRssBefore) / run.subscribers,
      heapPerSubscription: (servingAfter.heapUsed - servingBefore.heapUsed) / run.subscribers,
      rssAfter: servingRssEnd,
      heapAfter: servingEnd.heapUsed,
      ordersHeapPerSubscription: (ordersAfter.heapUsed - ordersBefore.heapUsed) / run.subscribers,
      gatewayCpu: { subscribe: cpu1.gateway - cpu0.gateway, idlePerSecond: (cpu3.gateway - cpu2.gateway) / options.idleSeconds, events: cpu5.gateway - cpu4.gateway },
      ordersCpu: { subscribe: cpu1.orders - cpu0.orders, idlePerSecond: (cpu3.orders - cpu2.orders) / options.idleSeconds, events: cpu5.orders - cpu4.orders },
      postgresEventsCpuMs: postgresCpu,
      clientsEventsCpuMs: collected.cpuMs - clientsCpu0,
      eventsSeconds,
      machineBusy: (machine1.busy - machine0.busy) / (machine1.total - machine0.total),
    };
  } finally {
    await clients.close().catch(() => {});
    await clients.stop();
    await gateway?.gateway.stop();
  }
}

// ── the command ────────────────────────────────────────────────────────────────────────────

function numbers(value: string, name: string): number[] {
  if (value.trim() === '' || value === 'none') return [];
  return value.split(',').map((part) => {
    const n = Number(part.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name}: "${part}" is not a whole number ≥ 1`);
    return n;
  });
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;
const msOf = (value: number) => (Number.isNaN(value) ? 'n/a' : `${value.toFixed(1)} ms`);
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
const label = (r: Run) => `${r.sharing} ${r.subscribers.toLocaleString('en-US')}`;

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      subscribers: { type: 'string' },
      unshared: { type: 'string' },
      orders: { type: 'string' },
      rate: { type: 'string' },
      workers: { type: 'string', default: '2' },
      bus: { type: 'string', default: 'nats' },
      concurrency: { type: 'string', default: '50' },
      'idle-seconds': { type: 'string' },
      profile: { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const options: Options = {
    subscribers: numbers(values.subscribers ?? (quick ? '200' : '1000,10000'), 'subscribers'),
    unshared: numbers(values.unshared ?? (quick ? '200' : '1000,10000'), 'unshared'),
    orders: Number(values.orders ?? (quick ? '10' : '100')),
    rate: Number(values.rate ?? (quick ? '20' : '10')),
    workers: Number(values.workers),
    bus: values.bus as Options['bus'],
    concurrency: Number(values.concurrency),
    idleSeconds: Number(values['idle-seconds'] ?? (quick ? '3' : '12')),
    ...(values.profile ? { profileDir: resolve(values.profile) } : {}),
  };
  for (const [name, value] of Object.entries({ orders: options.orders, rate: options.rate, workers: options.workers, concurrency: options.concurrency, 'idle-seconds': options.idleSeconds })) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a whole number ≥ 1`);
  }
  if (options.bus !== 'nats' && options.bus !== 'postgres') throw new Error('--bus: nats or postgres');
  process.env.LOG_LEVEL ??= 'warn';

  const runs: Run[] = [
    ...options.subscribers.map((subscribers) => ({ sharing: 'shared' as const, subscribers })),
    ...options.unshared.map((subscribers) => ({ sharing: 'unshared' as const, subscribers })),
  ]
    .sort((a, b) => a.subscribers - b.subscribers)
    .flatMap((scenario) => (['direct', 'gateway'] as const).map((path) => ({ ...scenario, path })));
  if (runs.length === 0) throw new Error('nothing to run: give --subscribers or --unshared');

  const began = performance.now();
  const cleanups = new Cleanups();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.error('\ninterrupted: stopping the processes and removing the databases…');
    void cleanups.runAll().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    console.log(`subscriptions benchmark — ${machineLine()}, load average ${loadavg().map((n) => n.toFixed(2)).join(' ')}`);
    console.log(
      `each run: N graphql-ws subscribers (${options.workers} client processes, one socket each) watch ${options.orders} orders (orderStatusChanged { id status updatedAt }), ` +
        `through the gateway (its own process) or directly at the orders subgraph (its own process; both fresh for each run); every order is then advanced ` +
        `DISPATCHED → IN_TRANSIT → DELIVERED at ${options.rate} orders/s, so each subscriber gets SHIPPED and DELIVERED; bus: ${options.bus}\n` +
        `latency = client arrival − Order.updatedAt (stamped in the transaction that commits the status change); "from projection" = from the projector's NOTIFY, heard by a listener process\n`,
    );
    const platform = await startSplitPlatform(options, cleanups);
    const listener = new IpcWorker<ListenerCommand>('listener', clientsModule, ['listener'], tsxLoader);
    cleanups.add('stopping the listener', () => listener.stop());
    await listener.request({ type: 'listen', databaseUrl: platform.databaseUrls.orders, channel: ORDER_PROJECTIONS_CHANNEL });

    const placing = performance.now();
    const all = await placeConfirmedOrders(platform, runs.length * (options.orders + 1));
    console.log(`${all.length} orders placed and CONFIRMED for the runs in ${((performance.now() - placing) / 1000).toFixed(0)} s\n`);

    const results: RunResult[] = [];
    const failures: string[] = [];
    for (const [i, run] of runs.entries()) {
      const slice = all.slice(i * (options.orders + 1), (i + 1) * (options.orders + 1));
      const started = performance.now();
      process.stdout.write(`${label(run)} via ${run.path}… `);
      try {
        const result = await measureRun(platform, run, slice.slice(1), slice[0]!, options, listener);
        results.push(result);
        const complete = result.delivered === result.expected && result.sequences[expectedSequence] === run.subscribers && result.problems.length === 0;
        if (!complete) failures.push(`${label(run)} via ${run.path}: ${result.delivered}/${result.expected} events; sequences ${JSON.stringify(result.sequences)}; ${result.problems.join('; ')}`);
        console.log(
          `${((performance.now() - started) / 1000).toFixed(0)} s: p50 ${msOf(result.latency.p50)}, p99 ${msOf(result.latency.p99)}, ${result.delivered}/${result.expected} events` +
            (complete ? '' : ' INCOMPLETE'),
        );
      } catch (error) {
        console.log('FAILED');
        failures.push(`${label(run)} via ${run.path}: ${(error as Error).message}`);
      }
    }

    const count = (n: number) => n.toLocaleString('en-US');
    console.log('\nlatency, order commit → client (and from the projection NOTIFY → client)');
    printTable(
      ['scenario', 'path', 'orders', 'subscriptions at orders (sockets)', 'p50', 'p99', 'max', 'from projection p50', 'p99', 'events delivered', 'subscribe time'],
      results.map((r) => [
        label(r),
        r.path,
        r.orders,
        `${count(r.upstreamSubscriptions)} (${count(r.upstreamSockets)})`,
        msOf(r.latency.p50),
        msOf(r.latency.p99),
        msOf(r.latency.max),
        msOf(r.fromProjection.p50),
        msOf(r.fromProjection.p99),
        `${count(r.delivered)}/${count(r.expected)}`,
        `${r.subscribeSeconds.toFixed(1)} s`,
      ]),
    );

    const pairs = results.filter((r) => r.path === 'gateway').flatMap((g) => {
      const d = results.find((r) => r.path === 'direct' && r.sharing === g.sharing && r.subscribers === g.subscribers);
      return d ? [{ g, d }] : [];
    });
    if (pairs.length > 0) {
      console.log("\ngateway ÷ direct: the gateway's cost as a ratio (and the milliseconds it adds)");
      printTable(
        ['scenario', 'p50', 'p99', 'max', 'from projection p50', 'p99', 'orders subgraph CPU while events flowed, gateway / direct'],
        pairs.map(({ g, d }) => [
          label(g),
          `${ratio(g.latency.p50, d.latency.p50)} (${(g.latency.p50 - d.latency.p50).toFixed(1)} ms)`,
          `${ratio(g.latency.p99, d.latency.p99)} (${(g.latency.p99 - d.latency.p99).toFixed(1)} ms)`,
          `${ratio(g.latency.max, d.latency.max)} (${(g.latency.max - d.latency.max).toFixed(1)} ms)`,
          `${ratio(g.fromProjection.p50, d.fromProjection.p50)} (${(g.fromProjection.p50 - d.fromProjection.p50).toFixed(1)} ms)`,
          `${ratio(g.fromProjection.p99, d.fromProjection.p99)} (${(g.fromProjection.p99 - d.fromProjection.p99).toFixed(1)} ms)`,
          `${(g.ordersCpu.events / 1000).toFixed(2)} s / ${(d.ordersCpu.events / 1000).toFixed(2)} s = ${ratio(g.ordersCpu.events, d.ordersCpu.events)}`,
        ]),
      );
    }

    const seconds = (msValue: number) => `${(msValue / 1000).toFixed(2)} s`;
    const perEvent = (cpu: RunResult['gatewayCpu'], r: RunResult) => {
      const gross = (cpu.events / Math.max(1, r.delivered)) * 1000;
      const net = ((cpu.events - cpu.idlePerSecond * r.eventsSeconds) / Math.max(1, r.delivered)) * 1000;
      return `${seconds(cpu.events)} (${gross.toFixed(0)} / ${net.toFixed(0)} µs)`;
    };
    console.log(
      '\nmemory of the process serving the subscriptions (the gateway; the orders subgraph when direct), per subscription: RSS and JS heap after a full GC, ' +
        'from before the subscribers connected to after; CPU (user + system, all threads): accepting the subscriptions, idle with them open (share of one core), ' +
        'while the events flowed (per delivered event: all of it, and net of the idle rate)',
    );
    printTable(
      ['scenario', 'path', 'client sockets', 'RSS/sub', 'heap/sub', 'RSS, heap at end', 'gateway CPU subscribing (per sub)', 'idle', 'events (per event: all / net of idle)', 'orders CPU subscribing (per sub)', 'idle', 'events (per event: all / net of idle)', 'orders heap/sub'],
      results.map((r) => [
        label(r),
        r.path,
        count(r.clientSockets),
        kb(r.rssPerSubscription),
        kb(r.heapPerSubscription),
        `${mb(r.rssAfter)}, ${mb(r.heapAfter)}`,
        r.path === 'gateway' ? `${seconds(r.gatewayCpu.subscribe)} (${((r.gatewayCpu.subscribe / r.subscribers) * 1000).toFixed(0)} µs)` : '—',
        r.path === 'gateway' ? `${(r.gatewayCpu.idlePerSecond / 10).toFixed(1)}%` : '—',
        r.path === 'gateway' ? perEvent(r.gatewayCpu, r) : '—',
        `${seconds(r.ordersCpu.subscribe)} (${((r.ordersCpu.subscribe / r.subscribers) * 1000).toFixed(0)} µs)`,
        `${(r.ordersCpu.idlePerSecond / 10).toFixed(1)}%`,
        perEvent(r.ordersCpu, r),
        kb(r.ordersHeapPerSubscription),
      ]),
    );
    console.log('\nwhile the events flowed');
    printTable(
      ['scenario', 'path', 'events phase', 'PostgreSQL CPU (orders database backends)', 'client processes CPU', 'machine busy', 'min latency (clock check)', 'from-projection samples'],
      results.map((r) => [
        label(r),
        r.path,
        `${r.eventsSeconds.toFixed(1)} s`,
        seconds(r.postgresEventsCpuMs),
        seconds(r.clientsEventsCpuMs),
        `${(r.machineBusy * 100).toFixed(0)}%`,
        msOf(r.minLatency),
        `${count(r.fromProjection.n)}/${count(r.delivered)}`,
      ]),
    );
    console.log(
      `\nsubscriptions at orders: through the gateway, the upstream subscriptions it opens (by design one per order and caller: shared, one per order; unshared, one per subscriber) ` +
        `and in brackets its sockets to the orders subgraph counted in /proc (one, multiplexed); direct, the clients' own. ` +
        `idle: share of one core, over ${options.idleSeconds} s with every subscription open (keep-alive pings). ` +
        `Events phase: ${options.orders} orders × 3 shipment steps at ${options.rate}/s, and the waits for every subscriber's event.`,
    );
    console.log(`\n(${((performance.now() - began) / 1000).toFixed(0)} s in all)`);
    if (failures.length > 0) throw new Error(`events were lost or runs failed:\n  ${failures.join('\n  ')}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanups.runAll();
  }
}
