/**
 * `npm run bench -- orders [--orders 300] [--concurrency 8] [--adapters postgres,nats] [--pgbench-seconds 15]
 *    [--consumer-concurrency orders=4]` (a what-if: consumers handling several events at once)
 *
 * Orders end to end, on each bus adapter: the whole platform in this process (scripts/bench/
 * platform.ts: six subgraphs with their relays, consumers, the saga and the projector, and the
 * gateway), the demo data with plenty of stock, then `--orders` orders placed through the
 * gateway over HTTP by `--concurrency` concurrent clients (placeOrder, tok_visa, 1–3 lines),
 * each waiting for its order to be CONFIRMED before placing the next (a closed loop: latency is
 * the platform's, not a backlog growing with `--orders`). Measured per order: from sending
 * placeOrder to the order being CONFIRMED in the orders read model (heard through the
 * projector's NOTIFY on `order_projections`, not by polling the gateway); and orders CONFIRMED
 * per second from the first placeOrder to the last confirmation.
 *
 * Baseline: what PostgreSQL alone sustains here (pgbench's TPC-B-like script, 8 clients), and
 * what one order costs it: the transactions committed in all of the platform's databases (six
 * contexts + the pg-boss queue) during the run, from pg_stat_database, divided by the orders.
 *
 * Also printed, to find the bottleneck: CPU per order of this process and of the platform's
 * PostgreSQL backends, how busy each consumer was, how often a transaction outside the platform
 * held back the server-wide xmin every relay waits for, and per saga message how long it sat in
 * its outbox and between publish and its consumer's transaction.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { withDatabase } from '../../platform/config.ts';
import { contextNames } from '../../platform/contexts.ts';
import { ORDER_PROJECTIONS_CHANNEL } from '../../subgraphs/orders/projections/projector.ts';
import { demoProducts } from '../demo/data.ts';
import { committedTransactions, startPlatform, stopAllPlatforms, type BusKind, type BusMeterReading, type Platform } from './platform.ts';
import { cpuMsOf, machineCpuTimes } from './processes.ts';
import { benchServerUrl, machineLine, ms, printTable, sleep, summarize, ThrowawayDatabases } from './support.ts';

const execFileAsync = promisify(execFile);
const plentyOfStock = 1_000_000;
const address = { name: 'Bench Customer', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE' };
const placeOrderMutation = `mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }`;

// ── the client side ────────────────────────────────────────────────────────────────────────

/** One to three distinct demo products, one to three of each: what the order benchmarks place. */
export function randomLines(): { productId: string; quantity: number }[] {
  const count = 1 + Math.floor(Math.random() * 3);
  const picked = new Set<string>();
  while (picked.size < count) picked.add(demoProducts[Math.floor(Math.random() * demoProducts.length)]!.id);
  return [...picked].map((productId) => ({ productId, quantity: 1 + Math.floor(Math.random() * 3) }));
}

/** Places one order through the gateway as a client would; resolves with its id. */
async function placeOrder(gatewayUrl: string, token: string): Promise<string> {
  const response = await fetch(gatewayUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({
      query: placeOrderMutation,
      variables: { input: { lines: randomLines(), shippingAddress: address, paymentToken: 'tok_visa', idempotencyKey: randomUUID() } },
    }),
  });
  const body = (await response.json()) as { data?: { placeOrder?: { id: string; status: string } } | null; errors?: { message: string; extensions?: { code?: string } }[] };
  const placed = body.data?.placeOrder;
  if (!placed || body.errors?.length) {
    const error = body.errors?.[0];
    throw new Error(`placeOrder failed (HTTP ${response.status}): ${error ? `${error.extensions?.code ?? ''} ${error.message}` : 'no data'}`);
  }
  if (placed.status !== 'PENDING') throw new Error(`placeOrder answered ${placed.status}, expected PENDING`);
  return placed.id;
}

// ── seeing orders leave PENDING ─────────────────────────────────────────────────────────────

interface Outcome {
  status: string;
  /** performance.now() when the projector's notification naming the order arrived. */
  at: number;
}

/**
 * Hears the projector's NOTIFY on `order_projections` (the ids of the orders whose read model a
 * committed batch changed) and reads just those orders' status: one query per burst of
 * notifications, none while nothing happens. A slow poll of the orders still awaited covers a
 * lost connection. Its queries are transactions on the orders database: it counts them so that
 * the cost per order can leave them out.
 */
class OutcomeWatcher {
  readonly outcomes = new Map<string, Outcome>();
  /** Orders placed whose outcome is still awaited. */
  readonly awaited = new Set<string>();
  /** Transactions this watcher committed on the orders database. */
  transactions = 0;
  readonly #client: pg.Client;
  readonly #queued = new Map<string, number>();
  readonly #waiters = new Map<string, { resolve: (outcome: Outcome | undefined) => void; reject: (error: Error) => void }>();
  #checking: Promise<void> | undefined;
  #poll: NodeJS.Timeout | undefined;
  #failure: Error | undefined;

  constructor(ordersDatabaseUrl: string) {
    this.#client = new pg.Client({ connectionString: ordersDatabaseUrl });
    this.#client.on('error', (error) => this.#fail(error));
    this.#client.on('notification', (message) => {
      const at = performance.now();
      for (const id of JSON.parse(message.payload ?? '[]') as string[]) if (!this.outcomes.has(id) && !this.#queued.has(id)) this.#queued.set(id, at);
      this.#check();
    });
  }

  async start(): Promise<void> {
    await this.#client.connect();
    await this.#client.query(`LISTEN ${ORDER_PROJECTIONS_CHANNEL}`);
    this.transactions += 1;
    this.#poll = setInterval(() => {
      const at = performance.now();
      for (const id of this.awaited) if (!this.#queued.has(id)) this.#queued.set(id, at);
      this.#check();
    }, 1_000);
  }

  #check(): void {
    this.#checking ??= (async () => {
      while (this.#queued.size > 0 && !this.#failure) {
        const batch = new Map(this.#queued);
        this.#queued.clear();
        try {
          const { rows } = await this.#client.query<{ order_id: string; status: string }>(
            `SELECT order_id::text, status FROM order_summaries WHERE order_id = ANY($1::uuid[]) AND status <> 'PENDING'`,
            [[...batch.keys()]],
          );
          this.transactions += 1;
          for (const row of rows) {
            if (this.outcomes.has(row.order_id)) continue;
            const outcome = { status: row.status, at: batch.get(row.order_id)! };
            this.outcomes.set(row.order_id, outcome);
            this.awaited.delete(row.order_id);
            this.#waiters.get(row.order_id)?.resolve(outcome);
            this.#waiters.delete(row.order_id);
          }
        } catch (error) {
          this.#fail(error as Error);
        }
      }
    })().finally(() => (this.#checking = undefined));
  }

  /** The order's outcome once it leaves PENDING; undefined if it has not within `timeoutMs`. */
  outcomeOf(orderId: string, timeoutMs: number): Promise<Outcome | undefined> {
    const known = this.outcomes.get(orderId);
    if (known) return Promise.resolve(known);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(orderId);
        this.awaited.delete(orderId);
        resolve(undefined);
      }, timeoutMs);
      this.awaited.add(orderId);
      this.#waiters.set(orderId, {
        resolve: (outcome) => (clearTimeout(timer), resolve(outcome)),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
    });
  }

  #fail(error: Error): void {
    this.#failure ??= new Error(`watching the orders database failed: ${error.message}`);
    for (const waiter of this.#waiters.values()) waiter.reject(this.#failure);
    this.#waiters.clear();
  }

  async stop(): Promise<void> {
    clearInterval(this.#poll);
    await this.#checking;
    await this.#client.end().catch(() => {});
  }
}

// ── what else was going on ──────────────────────────────────────────────────────────────────


/**
 * Samples, on the maintenance database (outside the platform's, so not counted in its cost):
 * - every 100 ms, the oldest transaction on the server holding a transaction id: the relays and
 *   the projector publish only below the server-wide xmin, so a writer in ANY database holds
 *   every event of this platform back while it runs;
 * - every second, the CPU time of this platform's PostgreSQL backends (from /proc, when the
 *   server runs on this machine; the last reading of a backend that exits is kept).
 */
class ServerSampler {
  readonly #client: pg.Client;
  readonly #prefix: string;
  readonly backendCpuMs = new Map<number, number>();
  readonly oldestWriter: { ours: boolean; ageMs: number; what: string }[] = [];
  #running: Promise<void> | undefined;
  #stopping = false;

  /** Whether the server's processes are this machine's (else their CPU is not read). */
  readonly local: boolean;

  constructor(serverUrl: string, prefix: string) {
    this.#client = new pg.Client({ connectionString: withDatabase(serverUrl, 'postgres') });
    this.#prefix = `${prefix}_`;
    this.local = ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(serverUrl).hostname);
  }

  async start(): Promise<void> {
    await this.#client.connect();
    await this.#sampleBackends();
    this.#running = (async () => {
      for (let tick = 1; !this.#stopping; tick++) {
        await sleep(100);
        const { rows } = await this.#client.query<{ datname: string | null; age_ms: number; query: string }>(
          `SELECT datname, extract(epoch FROM clock_timestamp() - xact_start) * 1000 AS age_ms, left(query, 60) AS query
           FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY xact_start LIMIT 1`,
        );
        const oldest = rows[0];
        if (oldest) this.oldestWriter.push({ ours: oldest.datname?.startsWith(this.#prefix) ?? false, ageMs: Number(oldest.age_ms), what: `${oldest.datname}: ${oldest.query.replace(/\s+/g, ' ')}` });
        if (tick % 10 === 0) await this.#sampleBackends();
      }
    })();
  }

  async #sampleBackends(): Promise<void> {
    if (!this.local) return;
    const { rows } = await this.#client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE starts_with(datname, $1)', [this.#prefix]);
    for (const { pid } of rows) {
      const cpu = await cpuMsOf(pid);
      if (cpu !== undefined) this.backendCpuMs.set(pid, cpu);
    }
  }

  /** CPU milliseconds of the platform's backends so far (read now); NaN when the server is not on this machine. */
  async backendCpu(): Promise<number> {
    await this.#sampleBackends();
    return this.local ? sum(this.backendCpuMs.values()) : Number.NaN;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running?.catch(() => {});
    await this.#client.end().catch(() => {});
  }
}

// ── one adapter ────────────────────────────────────────────────────────────────────────────

interface Options {
  orders: number;
  concurrency: number;
  /** What-if: consumers handling several events at once (see PlatformOptions.consumerConcurrency). */
  consumerConcurrency?: Record<string, number>;
}

interface AdapterResult {
  adapter: string;
  placed: number;
  confirmed: number;
  failed: { status: string; count: number }[];
  placeErrors: string[];
  latency: ReturnType<typeof summarize>;
  placeOrderLatency: ReturnType<typeof summarize>;
  ordersPerSecond: number;
  transactionsPerOrder: number;
  transactionsByDatabase: [string, number][];
  /** SQL statements per order sent by each context's Prisma client (not the relays', projector's or bus's own pools). */
  prismaStatementsByContext: [string, number][];
  eventsPerOrder: number;
  hops: { event: string; route: string; relayP50: number; relayP99: number; deliveryP50: number; deliveryP99: number }[];
  nodeCpu: number;
  machineCpu: number;
  eventLoopDelayP99: number;
  /** CPU milliseconds per order: this process, the platform's PostgreSQL backends. */
  cpuPerOrder: { node: number; postgres: number };
  /** Share of the machine's CPU: this process, the platform's backends, everything else. */
  cpuShare: { node: number; postgres: number; rest: number };
  /** Per consumer: share of the run its handler was busy, and ms per event. */
  consumers: { consumer: string; events: number; busy: number; msPerEvent: number }[];
  /** Share of the samples in which a transaction outside the platform held the xmin back > 100 ms. */
  foreignXmin: { share: number; longestMs: number; what: string };
}

const adapterNames: Record<BusKind, string> = { postgres: 'PostgreSQL queue (pg-boss)', nats: 'NATS JetStream' };


async function setStock(platform: Platform): Promise<void> {
  const client = new pg.Client({ connectionString: platform.databaseUrls.inventory });
  await client.connect();
  try {
    await client.query('UPDATE stock_items SET available = $1, version = version + 1, updated_at = now()', [plentyOfStock]);
  } finally {
    await client.end();
  }
}

interface PlacedOrder {
  /** performance.now() when placeOrder was sent. */
  sentAt: number;
  /** How long placeOrder took to answer. */
  placeOrderMs?: number;
  id?: string;
  /** Undefined: still PENDING after the timeout. */
  outcome?: Outcome;
  error?: string;
}

/**
 * `count` orders by one client per token, each one placing an order and waiting until it has
 * left PENDING before placing the next (a closed loop: at most one order per client in flight,
 * so latency is the platform's, not a backlog that grows with `count`).
 */
async function placeOrders(platform: Platform, tokens: string[], count: number, watcher: OutcomeWatcher, timeoutMs: number): Promise<PlacedOrder[]> {
  const placed: PlacedOrder[] = [];
  let next = 0;
  await Promise.all(
    tokens.map(async (token) => {
      while (next < count) {
        next += 1;
        const order: PlacedOrder = { sentAt: performance.now() };
        placed.push(order);
        try {
          order.id = await placeOrder(platform.gatewayUrl, token);
          order.placeOrderMs = performance.now() - order.sentAt;
        } catch (error) {
          order.error = (error as Error).message;
          continue;
        }
        const outcome = await watcher.outcomeOf(order.id, timeoutMs);
        if (outcome) order.outcome = outcome;
      }
    }),
  );
  return placed;
}

const sum = (values: Iterable<number>) => [...values].reduce((a, b) => a + b, 0);

async function measureAdapter(adapter: BusKind, options: Options): Promise<AdapterResult> {
  const platform = await startPlatform({ bus: adapter, ...(options.consumerConcurrency ? { consumerConcurrency: options.consumerConcurrency } : {}) });
  let watcher: OutcomeWatcher | undefined;
  let sampler: ServerSampler | undefined;
  try {
    await setStock(platform);
    const tokens = await Promise.all(Array.from({ length: options.concurrency }, () => platform.tokenFor({ customerId: randomUUID() })));
    watcher = new OutcomeWatcher(platform.databaseUrls.orders);
    await watcher.start();

    // Warm-up: connections, prepared statements, query plans, JIT, the gateway's plan cache.
    const warmUp = await placeOrders(platform, tokens, options.concurrency * 2, watcher, 60_000);
    const warmUpFailed = warmUp.filter((order) => order.outcome?.status !== 'CONFIRMED');
    if (warmUpFailed.length > 0) {
      throw new Error(`${warmUpFailed.length} warm-up orders did not reach CONFIRMED: ${warmUpFailed.map((order) => order.error ?? order.outcome?.status ?? 'still PENDING after 60 s').join('; ')}`);
    }
    // Let the warm-up's tail (outbox marks, inbox rows) settle before counting. A backend reports
    // its commits to pg_stat_database at most once a second, one that went idle up to 10 s later
    // (and always when it exits): the count before may miss some of the warm-up's last commits,
    // which then count as the run's (at most a few % with a warm-up of 2 orders per client); the
    // count after is read once every session has ended, so it misses nothing.
    await sleep(1_000);

    sampler = new ServerSampler(benchServerUrl, platform.prefix);
    await sampler.start();
    const before = await committedTransactions(benchServerUrl, platform.prefix);
    const watcherBefore = watcher.transactions;
    const meterBefore = platform.meter.read();
    const statementsBefore = contextNames.map((name) => platform.subgraphs[name].statements.count);
    const backendCpuBefore = await sampler.backendCpu();
    const cpuBefore = process.cpuUsage();
    const machineBefore = machineCpuTimes();
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const started = performance.now();
    const orders = await placeOrders(platform, tokens, options.orders, watcher, 60_000);
    const finished = performance.now();
    loopDelay.disable();
    const cpu = process.cpuUsage(cpuBefore);
    const machineAfter = machineCpuTimes();
    const backendCpu = (await sampler.backendCpu()) - backendCpuBefore;
    const meterAfter = platform.meter.read();
    const statements = contextNames.map((name, i) => platform.subgraphs[name].statements.count - statementsBefore[i]!);
    const xminSamples = sampler.oldestWriter.slice();
    await sampler.stop();
    sampler = undefined;

    const latencies: number[] = [];
    const failures = new Map<string, number>();
    const placeErrors: string[] = [];
    let lastConfirmation = started;
    for (const order of orders) {
      if (order.error) {
        placeErrors.push(order.error);
      } else if (order.outcome?.status === 'CONFIRMED') {
        latencies.push(order.outcome.at - order.sentAt);
        lastConfirmation = Math.max(lastConfirmation, order.outcome.at);
      } else {
        const status = order.outcome?.status ?? 'still PENDING after 60 s';
        failures.set(status, (failures.get(status) ?? 0) + 1);
      }
    }
    const placed = orders.filter((order) => order.id).length;
    if (placed === 0) throw new Error(`no order could be placed: ${placeErrors[0]}`);

    // Everything a confirmed order still sets off (e.g. its OrderConfirmed event relayed and
    // consumed) belongs to its cost: wait for it, then end every session, so that every
    // backend has reported its statistics, before reading them.
    await sleep(1_000);
    const watcherTransactions = watcher.transactions - watcherBefore;
    await watcher.stop();
    watcher = undefined;
    await platform.stopServices();
    await sleep(500);
    const after = await committedTransactions(benchServerUrl, platform.prefix);

    const byDatabase: [string, number][] = [...after].map(([name, commits]) => [name, (commits - (before.get(name) ?? 0) - (name === 'orders' ? watcherTransactions : 0)) / placed]);
    const hops = await hopTimes(platform);
    return {
      adapter: adapterNames[adapter],
      placed,
      confirmed: latencies.length,
      failed: [...failures].map(([status, count]) => ({ status, count })),
      placeErrors,
      latency: summarize(latencies),
      placeOrderLatency: summarize(orders.flatMap((order) => (order.placeOrderMs === undefined ? [] : [order.placeOrderMs]))),
      ordersPerSecond: latencies.length / ((lastConfirmation - started) / 1000),
      transactionsPerOrder: sum(byDatabase.map(([, n]) => n)),
      transactionsByDatabase: byDatabase,
      prismaStatementsByContext: contextNames.map((name, i) => [name, statements[i]! / placed]),
      eventsPerOrder: hops.published / (placed + warmUp.length),
      hops: hops.rows,
      nodeCpu: (cpu.user + cpu.system) / 1000 / (finished - started),
      machineCpu: (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total),
      eventLoopDelayP99: loopDelay.percentile(99) / 1e6,
      cpuPerOrder: { node: (cpu.user + cpu.system) / 1000 / placed, postgres: backendCpu / placed },
      cpuShare: (() => {
        const capacity = (finished - started) * cpus().length;
        const machine = ((machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total)) * capacity;
        const node = (cpu.user + cpu.system) / 1000;
        const postgres = Number.isNaN(backendCpu) ? 0 : backendCpu;
        return { node: node / capacity, postgres: backendCpu / capacity, rest: Math.max(0, machine - node - postgres) / capacity };
      })(),
      consumers: consumerLoad(meterBefore, meterAfter, finished - started),
      foreignXmin: foreignXmin(xminSamples),
    };
  } finally {
    await sampler?.stop();
    await watcher?.stop();
    await platform.stop();
  }
}

function consumerLoad(before: BusMeterReading, after: BusMeterReading, wallMs: number): AdapterResult['consumers'] {
  return [...after.handled].map(([consumer, { events, busyMs }]) => {
    const from = before.handled.get(consumer) ?? { events: 0, busyMs: 0 };
    const n = events - from.events;
    return { consumer, events: n, busy: (busyMs - from.busyMs) / wallMs, msPerEvent: n > 0 ? (busyMs - from.busyMs) / n : 0 };
  });
}

function foreignXmin(samples: ServerSampler['oldestWriter']): AdapterResult['foreignXmin'] {
  const foreign = samples.filter((sample) => !sample.ours && sample.ageMs > 100);
  const longest = foreign.reduce<(typeof foreign)[number] | undefined>((a, b) => (a && a.ageMs >= b.ageMs ? a : b), undefined);
  return { share: samples.length ? foreign.length / samples.length : 0, longestMs: longest?.ageMs ?? 0, what: longest?.what ?? '' };
}

/**
 * Where an order's time goes, from the databases' own clocks: per command or reply of the saga,
 * from the start of the transaction that wrote it to its outbox (`created_at` is `now()`, the
 * transaction's start: the writer's own duration is included) to its relay marking it
 * published, and from there to the start of the consumer's inbox transaction (`processed_at`).
 * Read after the run, so not counted in its cost.
 */
async function hopTimes(platform: Platform): Promise<{ published: number; rows: AdapterResult['hops'] }> {
  const published = new Map<string, { type: string; source: string; createdAt: number; publishedAt: number }>();
  const handled: { consumer: string; eventId: string; processedAt: number }[] = [];
  for (const context of contextNames) {
    const client = new pg.Client({ connectionString: platform.databaseUrls[context] });
    await client.connect();
    try {
      const outbox = await client.query<{ event_id: string; type: string; created_at: Date; published_at: Date | null }>(
        `SELECT event_id::text, envelope->>'type' AS type, created_at, published_at FROM outbox_events`,
      );
      for (const row of outbox.rows) {
        if (row.published_at) published.set(row.event_id, { type: row.type, source: context, createdAt: row.created_at.getTime(), publishedAt: row.published_at.getTime() });
      }
      const inbox = await client.query<{ consumer: string; event_id: string; processed_at: Date }>('SELECT consumer, event_id::text, processed_at FROM inbox_events');
      handled.push(...inbox.rows.map((row) => ({ consumer: row.consumer, eventId: row.event_id, processedAt: row.processed_at.getTime() })));
    } finally {
      await client.end();
    }
  }
  const byHop = new Map<string, { event: string; route: string; relay: number[]; delivery: number[] }>();
  for (const { consumer, eventId, processedAt } of handled) {
    const event = published.get(eventId);
    if (!event) continue;
    const key = `${event.type} ${consumer}`;
    const hop = byHop.get(key) ?? { event: event.type, route: `${event.source} → ${consumer}`, relay: [], delivery: [] };
    hop.relay.push(event.publishedAt - event.createdAt);
    hop.delivery.push(processedAt - event.publishedAt);
    byHop.set(key, hop);
  }
  const sagaOrder = ['ReserveStock', 'StockReserved', 'AuthorizePayment', 'PaymentAuthorized', 'CreateShipment', 'ShipmentCreated'];
  const rank = (event: string) => (sagaOrder.includes(event) ? sagaOrder.indexOf(event) : sagaOrder.length);
  const rows = [...byHop.values()]
    .sort((a, b) => rank(a.event) - rank(b.event) || a.event.localeCompare(b.event))
    .map((hop) => {
      const relay = summarize(hop.relay);
      const delivery = summarize(hop.delivery);
      return { event: hop.event, route: hop.route, relayP50: relay.p50, relayP99: relay.p99, deliveryP50: delivery.p50, deliveryP99: delivery.p99 };
    });
  return { published: published.size, rows };
}

// ── the baseline ───────────────────────────────────────────────────────────────────────────

/** pgbench's TPC-B-like script with 8 clients on a throwaway scale-10 database: PostgreSQL's TPS here. */
async function pgbenchTps(dbs: ThrowawayDatabases, seconds: number): Promise<number> {
  const url = new URL(await dbs.create('pgbench'));
  const database = decodeURIComponent(url.pathname.slice(1));
  const connection = ['-h', url.hostname, '-p', url.port || '5432', ...(url.username ? ['-U', decodeURIComponent(url.username)] : [])];
  const env = { ...process.env, ...(url.password ? { PGPASSWORD: decodeURIComponent(url.password) } : {}) };
  const pgbench = process.env.PGBENCH ?? 'pgbench';
  await execFileAsync(pgbench, ['-i', '-s', '10', '-q', ...connection, database], { env });
  const { stdout } = await execFileAsync(pgbench, ['-c', '8', '-j', '2', '-T', String(seconds), ...connection, database], { env });
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout) ?? /tps = ([\d.]+)/.exec(stdout);
  if (!tps) throw new Error(`no TPS in pgbench's output:\n${stdout}`);
  return Number(tps[1]);
}

// ── the command ────────────────────────────────────────────────────────────────────────────

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      orders: { type: 'string', default: '300' },
      concurrency: { type: 'string', default: '8' },
      adapters: { type: 'string', default: 'postgres,nats' },
      'pgbench-seconds': { type: 'string', default: '15' },
      /** What-if, e.g. `orders=4`: consumers handling several events at once (they subscribe with 1). */
      'consumer-concurrency': { type: 'string' },
    },
  });
  const options: Options = { orders: Number(values.orders), concurrency: Number(values.concurrency) };
  const whatIf = values['consumer-concurrency'];
  const pgbenchSeconds = Number(values['pgbench-seconds']);
  const adapters = values.adapters.split(',').map((name) => name.trim());
  for (const [name, value] of Object.entries({ orders: options.orders, concurrency: options.concurrency, 'pgbench-seconds': pgbenchSeconds })) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a whole number ≥ 1`);
  }
  if (whatIf) {
    options.consumerConcurrency = Object.fromEntries(
      whatIf.split(',').map((pair) => {
        const [consumer, n] = pair.split('=');
        if (!consumer || !Number.isInteger(Number(n)) || Number(n) < 1) throw new Error(`--consumer-concurrency: "${pair}" is not <consumer>=<n ≥ 1>`);
        return [consumer.trim(), Number(n)];
      }),
    );
  }
  for (const adapter of adapters) if (!(adapter in adapterNames)) throw new Error(`--adapters: unknown adapter "${adapter}" (postgres, nats)`);
  // The platform's services log their start and stop at info level; warnings and errors stay.
  process.env.LOG_LEVEL ??= 'warn';

  const began = performance.now();
  const dbs = new ThrowawayDatabases();
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    console.error('\ninterrupted: removing the platforms and databases…');
    void Promise.allSettled([stopAllPlatforms(), dbs.dropAll()]).then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    console.log(`orders benchmark — ${machineLine()}, load average ${loadavg().map((n) => n.toFixed(2)).join(' ')}`);
    console.log(
      `${options.orders} orders (placeOrder, tok_visa, 1–3 lines) through the gateway by ${options.concurrency} concurrent clients; ` +
        `each waits for its order to be CONFIRMED before placing the next; whole platform in this process; ` +
        `latency = placeOrder sent → CONFIRMED in the orders read model` +
        (options.consumerConcurrency ? `; WHAT-IF consumer concurrency ${whatIf}` : '') +
        '\n',
    );
    let tps: number | undefined;
    let pgbenchError: string | undefined;
    try {
      tps = await pgbenchTps(dbs, pgbenchSeconds);
    } catch (error) {
      pgbenchError = (error as Error).message.split('\n')[0];
    } finally {
      await dbs.dropAll();
    }
    const results: AdapterResult[] = [];
    for (const adapter of adapters as BusKind[]) results.push(await measureAdapter(adapter, options));

    printTable(
      ['adapter', 'orders/s', 'p50', 'p99', 'max', 'confirmed', 'placeOrder p50', 'p99', 'tx/order', tps ? `≈ PG capacity/order` : 'PG capacity'],
      results.map((r) => [
        r.adapter,
        r.ordersPerSecond.toFixed(1),
        ms(r.latency.p50),
        ms(r.latency.p99),
        ms(r.latency.max),
        `${r.confirmed}/${r.placed}`,
        ms(r.placeOrderLatency.p50),
        ms(r.placeOrderLatency.p99),
        r.transactionsPerOrder.toFixed(1),
        tps ? `${((r.transactionsPerOrder / tps) * 1000).toFixed(1)} ms (≤ ${(tps / r.transactionsPerOrder).toFixed(0)} orders/s)` : 'n/a',
      ]),
    );
    console.log(
      tps
        ? `\nbaseline: PostgreSQL alone sustains ${tps.toFixed(0)} TPS here (pgbench TPC-B-like, scale 10, -c 8 -j 2 -T ${pgbenchSeconds}).`
        : `\nbaseline: pgbench failed: ${pgbenchError}`,
    );
    for (const r of results) {
      const perOrder = r.transactionsPerOrder;
      console.log(
        `${r.adapter}: one order = ${perOrder.toFixed(1)} transactions` +
          (tps ? ` ≈ ${perOrder.toFixed(1)}/${tps.toFixed(0)} = ${((perOrder / tps) * 1000).toFixed(1)} ms of PostgreSQL's capacity` : '') +
          ` (${r.transactionsByDatabase.filter(([, n]) => n >= 0.05).sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${n.toFixed(1)}`).join(', ')}); ` +
          `${r.eventsPerOrder.toFixed(1)} events published per order; ` +
          `${sum(r.prismaStatementsByContext.map(([, n]) => n)).toFixed(0)} SQL statements per order from the contexts' Prisma clients ` +
          `(${r.prismaStatementsByContext.filter(([, n]) => n >= 0.05).sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${n.toFixed(1)}`).join(', ')})`,
      );
      for (const { status, count } of r.failed) console.log(`  ${count} orders ended ${status}`);
      if (r.placeErrors.length > 0) console.log(`  ${r.placeErrors.length} placeOrder calls failed, e.g. ${r.placeErrors[0]}`);
    }
    const pct = (share: number) => (Number.isNaN(share) ? 'n/a' : `${(share * 100).toFixed(0)}%`);
    console.log(`\nwhile placing (${cpus().length} cores): CPU per order and share of the machine — this process (all contexts + gateway + clients, one event loop), the platform's PostgreSQL backends, everything else (PostgreSQL's own processes, other work on the machine)`);
    printTable(
      ['adapter', 'CPU/order node', 'CPU/order PG', 'machine busy', 'node', 'PG backends', 'rest', 'event-loop delay p99', 'consumer busy (ms/event)'],
      results.map((r) => [
        r.adapter,
        ms(r.cpuPerOrder.node),
        Number.isNaN(r.cpuPerOrder.postgres) ? 'n/a (remote)' : ms(r.cpuPerOrder.postgres),
        pct(r.machineCpu),
        pct(r.cpuShare.node),
        pct(r.cpuShare.postgres),
        pct(r.cpuShare.rest),
        ms(r.eventLoopDelayP99),
        r.consumers.map((c) => `${c.consumer} ${pct(c.busy)} (${c.msPerEvent.toFixed(0)})`).join(', '),
      ]),
    );
    for (const r of results) {
      if (r.foreignXmin.share > 0) {
        console.log(
          `${r.adapter}: a transaction outside this platform held the server-wide xmin (which relays and projector wait for) back > 100 ms ` +
            `in ${pct(r.foreignXmin.share)} of samples; longest ${r.foreignXmin.longestMs.toFixed(0)} ms (${r.foreignXmin.what})`,
        );
      }
    }
    for (const r of results) {
      console.log(`\nwhere the time goes, ${r.adapter} (database clocks; warm-up included): per event and consumer`);
      printTable(
        ['event', 'route', 'writer tx start → published p50', 'p99', 'published → consumer tx p50', 'p99'],
        r.hops.map((hop) => [hop.event, hop.route, ms(hop.relayP50), ms(hop.relayP99), ms(hop.deliveryP50), ms(hop.deliveryP99)]),
      );
    }
    console.log(`\n(${((performance.now() - began) / 1000).toFixed(0)} s in all)`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await stopAllPlatforms();
    await dbs.dropAll();
  }
}
