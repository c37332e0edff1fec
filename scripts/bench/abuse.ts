/**
 * `npm run bench -- abuse [--rate 20] [--attack-rate 50] [--baseline-seconds 10]
 *    [--attack-seconds 5] [--settle-seconds 2] [--only name,name] [--quick]`
 *
 * Attacks on the gateway, one after another, while an ordinary client keeps using it (issue 9,
 * item 7). The gateway (gateway/main.ts, production mode) and the catalog subgraph
 * (subgraphs/catalog/main.ts), which most attacks aim at, each run as a process of their own, so
 * their resident memory is theirs alone (VmRSS from /proc); the other five subgraphs and the
 * event bus (a JetStream stream of its own) run in this process. The canary — a product page,
 * `--rate` requests per second, open loop, as a signed-in customer — runs in a child process
 * (abuse-canary.ts), so that building and sending the attacks cannot delay it.
 *
 * First the canary alone for `--baseline-seconds`: its p50/p99 are the baseline. Then each attack
 * (bounded in count and time, only ever sent to 127.0.0.1), followed by `--settle-seconds` of
 * canary alone. An attack is first sent alone, 5 times one after the other: the median is its
 * time to refusal. Then it floods for up to `--attack-seconds`: HTTP attacks at `--attack-rate`
 * per second, open loop; WebSocket attacks on several sockets at once; connection floods all at
 * once. Per attack it prints:
 * - how many of its requests / messages / connections were refused, the HTTP status or WebSocket
 *   close code and `extensions.code` of the refusals, the time to refusal, and the refusals'
 *   p50/p99 during the flood. What an attack may legitimately get (the connections within the
 *   per-caller limit, the first 100 subscriptions of a socket) counts as admitted;
 * - the canary's p50/p99 for the requests sent during the attack, their ratio to the baseline,
 *   and any canary request that failed;
 * - the gateway's and the catalog's RSS growth after the attack (and its peak during it,
 *   sampled every 100 ms).
 * Goals (issue 9): every request of an attack refused with a code, in < 50 ms alone; canary p99
 * during the attack ≤ 2× baseline, none failed; RSS growth < 50 MB per attack. PASS/FAIL per goal
 * and a summary; the whole output is also written to docs/bench/abuse-<date>.txt (not with --only).
 *
 * An attack whose first request is not refused is not repeated: what the gateway does not refuse
 * may cost the machine gigabytes (issue 9's cost bomb did).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect as connectTcp } from 'node:net';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { exportPKCS8, exportSPKI, generateKeyPair, type CryptoKey } from 'jose';
import WebSocket from 'ws';
import { withDatabase } from '../../platform/config.ts';
import { contextNames, type ContextName } from '../../platform/contexts.ts';
import { applyMigrations, migrationsDirOf } from '../../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';
import { createJetStreamBus } from '../../platform/events/bus/nats-jetstream.ts';
import { issueCustomerToken } from '../../platform/identity/customer-token.ts';
import { signingAlgorithm } from '../../platform/identity/keys.ts';
import type { RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import { startAccountsSubgraph } from '../../subgraphs/accounts/subgraph.ts';
import { startInventorySubgraph } from '../../subgraphs/inventory/subgraph.ts';
import { orderSaga } from '../../subgraphs/orders/saga/wiring.ts';
import { startOrdersSubgraph } from '../../subgraphs/orders/subgraph.ts';
import { startPaymentsSubgraph } from '../../subgraphs/payments/subgraph.ts';
import { startShippingSubgraph } from '../../subgraphs/shipping/subgraph.ts';
import { demoProducts } from '../demo/data.ts';
import { seedDemoData } from '../demo/seed.ts';
import * as payload from './abuse-payloads.ts';
import type { CanaryCommand, CanaryWindow } from './abuse-canary.ts';
import { deleteStreams } from './platform.ts';
import { freePort, IpcWorker, repoRoot, residentMemoryOf, ServiceProcess, startGatewayProcess } from './processes.ts';
import { benchNatsUrl, benchServerUrl, machineLine, sleep, summarize, Cleanups } from './support.ts';

/** The issue's goals. */
const goals = { refusalMs: 50, canaryP99Ratio: 2, rssGrowthMb: 50 };
const MB = 1024 * 1024;
const tsxLoader = ['--import', 'tsx'];

interface Options {
  rate: number;
  /** Requests per second of an HTTP attack's flood phase. */
  attackRate: number;
  baselineSeconds: number;
  attackSeconds: number;
  settleSeconds: number;
  only?: string[];
}

// ── the platform: gateway and catalog as processes, the rest and the bus in this one ─────────

interface Platform {
  gateway: ServiceProcess;
  catalog: ServiceProcess;
  httpUrl: string;
  wsUrl: string;
  tokenFor(customerId: string): Promise<string>;
}


async function startAbusePlatform(cleanups: Cleanups): Promise<Platform> {
  const prefix = `bench_${randomBytes(4).toString('hex')}`;
  const databases: string[] = [];
  cleanups.add(`dropping the ${prefix}_* databases`, () => Promise.all(databases.map((url) => dropDatabase(url))));
  const databaseUrls = {} as Record<ContextName, string>;
  for (const context of contextNames) {
    databaseUrls[context] = withDatabase(benchServerUrl, `${prefix}_${context}`);
    databases.push(databaseUrls[context]);
    await ensureDatabase(databaseUrls[context]);
    await applyMigrations({ databaseUrl: databaseUrls[context], migrationsDir: migrationsDirOf(context) });
  }
  await seedDemoData(databaseUrls);

  const authToken = await generateKeyPair(signingAlgorithm, { extractable: true });
  const gatewayIdentity = await generateKeyPair(signingAlgorithm, { extractable: true });

  const stream = `BENCH_${randomBytes(4).toString('hex').toUpperCase()}`;
  const subjectPrefix = `b${randomBytes(4).toString('hex')}`;
  cleanups.add(`deleting stream ${stream}`, () => deleteStreams(benchNatsUrl, stream, `${stream}_DEAD_LETTERS`));
  const eventBus = await createJetStreamBus({ servers: benchNatsUrl, stream, subjectPrefix });
  cleanups.add('closing the event bus', () => eventBus.close());

  const base = { port: 0, host: '127.0.0.1', gatewayPublicKey: gatewayIdentity.publicKey as CryptoKey, production: true, eventBus };
  const urls = {} as Record<ContextName, string>;
  const started = async (name: ContextName, start: () => Promise<RunningContextSubgraph>) => {
    const subgraph = await start();
    urls[name] = subgraph.url;
    cleanups.add(`stopping ${name}`, () => subgraph.stop());
  };
  await started('accounts', () => startAccountsSubgraph({ ...base, databaseUrl: databaseUrls.accounts, authTokenPrivateKey: authToken.privateKey }));
  await started('inventory', () => startInventorySubgraph({ ...base, databaseUrl: databaseUrls.inventory }));
  await started('orders', () => startOrdersSubgraph({ ...base, databaseUrl: databaseUrls.orders, saga: orderSaga({}), projector: {} }));
  await started('payments', () => startPaymentsSubgraph({ ...base, databaseUrl: databaseUrls.payments }));
  await started('shipping', () => startShippingSubgraph({ ...base, databaseUrl: databaseUrls.shipping }));

  const childEnv: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'production', LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' };
  for (const name of ['NATS_URL', 'NATS_STREAM', 'NATS_SUBJECT_PREFIX', 'EVENT_BUS_DATABASE_URL', 'DATABASE_URL']) delete childEnv[name];
  const catalogPort = await freePort();
  const catalog = await ServiceProcess.start({
    name: 'catalog',
    module: `${repoRoot}subgraphs/catalog/main.ts`,
    execArgv: tsxLoader,
    env: {
      ...childEnv,
      NATS_URL: benchNatsUrl,
      NATS_STREAM: stream,
      NATS_SUBJECT_PREFIX: subjectPrefix,
      CATALOG_DATABASE_URL: databaseUrls.catalog,
      MIGRATE_ON_START: 'false',
      PORT: String(catalogPort),
      HOST: '127.0.0.1',
      GATEWAY_IDENTITY_PUBLIC_KEY: await exportSPKI(gatewayIdentity.publicKey),
    },
    healthUrl: `http://127.0.0.1:${catalogPort}/health`,
  });
  cleanups.add('stopping the catalog subgraph', () => catalog.stop());
  urls.catalog = `http://127.0.0.1:${catalogPort}/graphql`;

  const { gateway, httpUrl, wsUrl } = await startGatewayProcess({
    subgraphUrls: urls,
    execArgv: tsxLoader,
    env: {
      ...childEnv,
      AUTH_TOKEN_PUBLIC_KEY: await exportSPKI(authToken.publicKey),
      GATEWAY_IDENTITY_PRIVATE_KEY: await exportPKCS8(gatewayIdentity.privateKey),
    },
  });
  cleanups.add('stopping the gateway', () => gateway.stop());
  return {
    gateway,
    catalog,
    httpUrl,
    wsUrl,
    tokenFor: (customerId) => issueCustomerToken(authToken.privateKey, { customerId, roles: ['customer'] }, 3600),
  };
}

// ── what an attack observes ──────────────────────────────────────────────────────────────────

interface Outcome {
  /** refused: the gateway said no with a code; admitted: within a limit, as designed; open: neither. */
  kind: 'refused' | 'admitted' | 'open';
  /** `HTTP 400`, `close 1009`, `error` (a graphql-ws error message), `held 8 s`… */
  status: string;
  code?: string;
  /** Time to refusal, from sending (or connecting) to the refusal arriving. */
  ms: number;
  /** Sent on its own, nothing else of the attack in flight: its time is the time to refusal. */
  alone?: boolean;
}

interface AttackContext {
  platform: Platform;
  /** Wall-clock ms by which the attack must have stopped sending. */
  deadline: number;
  /** Requests per second of an HTTP flood (open loop). */
  rate: number;
}

/** How many times an attack is first sent alone, one after the other, to time its refusal. */
const aloneSends = 5;

interface Attack {
  name: string;
  /**
   * Its own refusal goal, where 50 ms cannot apply: a slowloris is only recognisable by time, and
   * is cut by the gateway's request timeout (10 s, swept every second). @default goals.refusalMs
   */
  refusalGoalMs?: number;
  what: string;
  run(context: AttackContext): Promise<Outcome[]>;
}

const codeOf = (body: unknown): string | undefined => {
  const errors = (body as { errors?: { extensions?: { code?: string } }[] } | undefined)?.errors;
  return Array.isArray(errors) ? errors[0]?.extensions?.code : undefined;
};

/** One HTTP request; the refusal is a JSON error answer with a code (any 4xx/5xx, or 200 with no data). */
async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Outcome> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 15_000);
  const since = performance.now();
  try {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body, signal: controller.signal });
    const type = response.headers.get('content-type') ?? '';
    if (!type.includes('application/json')) {
      controller.abort(); // a stream that started: not refused
      return { kind: 'open', status: `HTTP ${response.status} ${type.split(';')[0]}`, ms: performance.now() - since };
    }
    const json = (await response.json()) as { data?: unknown };
    const ms = performance.now() - since;
    const code = codeOf(json);
    const refused = code !== undefined && (response.status >= 400 || json.data == null);
    return { kind: refused ? 'refused' : 'open', status: `HTTP ${response.status}`, ...(code ? { code } : {}), ms };
  } catch (error) {
    return { kind: 'open', status: controller.signal.aborted ? 'timeout 15 s' : `failed: ${(error as Error).message}`, ms: performance.now() - since };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Sends `once` alone `aloneSends` times, one after the other (its time to refusal), then as a
 * flood: `context.rate` per second, open loop, at most 32 in flight, until `max` were sent or the
 * deadline passed. Stops after the first one if it was not refused.
 */
async function repeat(context: AttackContext, once: () => Promise<Outcome>, max: number): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (let n = 0; n < aloneSends; n++) {
    const outcome = { ...(await once()), alone: true };
    outcomes.push(outcome);
    if (outcome.kind !== 'refused') return outcomes;
  }
  const inFlight = new Set<Promise<void>>();
  const began = performance.now();
  for (let sent = 0; sent < max - aloneSends && Date.now() < context.deadline; sent++) {
    const due = began + (sent * 1000) / context.rate;
    if (due > performance.now()) await sleep(due - performance.now());
    if (inFlight.size >= 32) await Promise.race(inFlight);
    const request: Promise<void> = once().then((outcome) => {
      outcomes.push(outcome);
      inFlight.delete(request);
    });
    inFlight.add(request);
  }
  await Promise.all(inFlight);
  return outcomes;
}

const httpAttack = (name: string, what: string, body: () => string, max: number, headers: Record<string, string> = {}): Attack => ({
  name,
  what,
  run: (context) => {
    const text = body();
    return repeat(context, () => post(context.platform.httpUrl, text, headers), max);
  },
});

const query = (text: string, extra: Record<string, unknown> = {}) => JSON.stringify({ query: text, ...extra });

// ── graphql-ws, spoken by hand so every close code and message is seen ──────────────────────

class Socket {
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Set once the socket closed. */
  closeInfo: { code: number; reason: string } | undefined;
  readonly #waiters = new Map<string, (message: { type: string; payload?: unknown }) => void>();
  readonly errors: { id: string; code?: string; at: number }[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url, 'graphql-transport-ws');
    this.ws.on('error', () => {}); // a refused socket errors on the client side too; its close says why
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('close', () => reject(new Error('closed before opening')));
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
      }),
    );
    this.ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { id?: string; type: string; payload?: unknown };
      if (message.type === 'error' && message.id) {
        const code = codeOf({ errors: message.payload });
        this.errors.push({ id: message.id, ...(code ? { code } : {}), at: performance.now() });
      }
      if (message.type === 'ping') this.ws.send(JSON.stringify({ type: 'pong' }));
      this.#waiters.get(message.id ?? message.type)?.(message);
    });
  }

  /** Resolves with the message of that id (or type), or undefined once the socket closed or `timeoutMs` passed. */
  waitFor(key: string, timeoutMs: number): Promise<{ type: string; payload?: unknown } | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), timeoutMs);
      const done = (message: { type: string; payload?: unknown } | undefined) => {
        clearTimeout(timer);
        this.#waiters.delete(key);
        resolve(message);
      };
      this.#waiters.set(key, done);
      void this.closed.then(() => done(undefined));
    });
  }

  /** connection_init; true once acknowledged, false when closed instead. */
  async initialize(payload: Record<string, unknown> = {}, timeoutMs = 5_000): Promise<boolean> {
    await this.opened;
    const ack = this.waitFor('connection_ack', timeoutMs);
    this.ws.send(JSON.stringify({ type: 'connection_init', payload }));
    return (await ack) !== undefined;
  }

  subscribe(id: string, queryText: string): void {
    this.ws.send(JSON.stringify({ id, type: 'subscribe', payload: { query: queryText } }));
  }

  close(): void {
    this.ws.terminate();
  }
}

/** Subscribes `count` times on each of `sockets` sockets; each subscription should get an `error` with a code. */
function refusedSubscriptions(name: string, what: string, sockets: number, count: number, document: (n: number) => string, token?: boolean): Attack {
  return {
    name,
    what,
    async run(context) {
      const outcomes: Outcome[] = [];
      const authorization = token ? { Authorization: `Bearer ${await context.platform.tokenFor(randomUUID())}` } : {};
      let next = 0;
      /** Sends `sends` subscriptions on one socket, each after the previous one's answer. */
      const subscribeOn = async (sends: number, alone: boolean) => {
        const socket = new Socket(context.platform.wsUrl);
        try {
          if (!(await socket.initialize(authorization))) {
            const closed = await socket.closed;
            outcomes.push({ kind: 'open', status: `not acknowledged (close ${closed.code})`, ms: 0 });
            return;
          }
          for (let n = 0; n < sends && (alone || Date.now() < context.deadline); n++) {
            const id = String(next++);
            const answer = socket.waitFor(id, 5_000);
            const since = performance.now();
            socket.subscribe(id, document(Number(id)));
            const message = await answer;
            const ms = performance.now() - since;
            if (!message) {
              const closed = socket.closeInfo;
              outcomes.push(closed ? { kind: 'refused', status: `close ${closed.code}`, code: `close ${closed.code}`, ms, alone } : { kind: 'open', status: 'no answer in 5 s', ms, alone });
              return;
            }
            if (message.type === 'error') {
              const code = codeOf({ errors: message.payload });
              outcomes.push({ kind: code ? 'refused' : 'open', status: 'error', ...(code ? { code } : {}), ms, alone });
            } else {
              outcomes.push({ kind: 'open', status: message.type, ms, alone });
              socket.ws.send(JSON.stringify({ id, type: 'complete' }));
              return; // not refused: not repeated
            }
          }
        } finally {
          socket.close();
        }
      };
      await subscribeOn(aloneSends, true);
      if (outcomes.some((outcome) => outcome.kind !== 'refused')) return outcomes;
      await Promise.all(Array.from({ length: sockets }, () => subscribeOn(count, false)));
      return outcomes;
    },
  };
}

// ── the attacks ──────────────────────────────────────────────────────────────────────────────

const ordinaryProduct = demoProducts[0]!.id;

function attacks(): Attack[] {
  return [
    httpAttack('cost bomb, 5 levels', 'products(first:100) → category → products(first:100) … nested 5 levels (issue 9, 312 bytes)', () => query(payload.nestedProducts(5)), 100),
    httpAttack('cost bomb, 2 levels', 'the same, 2 levels: within the depth limit, 10,000 products asked', () => query(payload.nestedProducts(2)), 100),
    httpAttack('depth 300', 'a valid query nested 300 fields deep', () => query(payload.deepQuery(300)), 100),
    httpAttack('1,000 aliases', '1,000 aliases of products(first:100) at the root', () => query(payload.rootAliases(1000)), 100),
    httpAttack('fragment bomb', '2.3 KiB: 10 fragments, each spreading the previous one 30 times', () => query(payload.fragmentBomb(10, 30)), 100),
    httpAttack('fragment cycle', 'two fragments spreading each other', () => query(payload.fragmentCycle), 100),
    httpAttack('500 root fields', 'categories { id } 500 times, no aliases', () => query(payload.manyRootFields(500)), 100),
    httpAttack('2,000 directives', '@include(if: true) 2,000 times on one field', () => query(payload.manyDirectives(2000)), 100),
    httpAttack('token flood', '30,000 tokens in 30 KB (a list of empty lists)', () => query(payload.tokenFlood(30_000)), 100),
    httpAttack('huge document', 'a 120,000-byte document, just under the 128 KiB body limit', () => query(payload.hugeDocument(120_000)), 40),
    httpAttack('body over the limit', 'a 2 MiB body (limit 128 KiB)', () => query(payload.hugeDocument(2 * MB)), 40),
    httpAttack('unknown operationName', 'operationName naming no operation of the document', () => query(payload.productListQuery, { operationName: 'Nope' }), 100),
    httpAttack('NUL byte', 'a NUL byte in a text argument (a variable)', () => JSON.stringify(payload.nulInVariable), 100),
    httpAttack('batch of 1,000', 'a JSON array of 1,000 operations', () => payload.batchBody(1000), 40),
    httpAttack('nested JSON variables', 'a variable nested 10,000 objects deep (100 KB)', () => payload.deeplyNestedVariables(10_000), 40),
    {
      name: 'slowloris',
      what: '200 connections sending a body one byte a second, for 15 s (goal: cut by the 10 s request timeout, + 2 s)',
      refusalGoalMs: 12_000,
      async run(context) {
        // Longer than the other attacks: a server's request timeout is seconds, not milliseconds.
        const window = { ...context, deadline: Math.max(context.deadline, Date.now() + 15_000) };
        return Promise.all(Array.from({ length: 200 }, () => slowBody(window)));
      },
    },
    {
      name: 'WebSocket 40 MiB',
      what: '12 messages of 40 MiB, each on a socket of its own, one after the other (issue 9: +630 MB)',
      async run(context) {
        const outcomes: Outcome[] = [];
        for (let n = 0; n < 12 && Date.now() < context.deadline; n++) {
          const outcome = await oversizedFrame(context.platform.wsUrl, 40 * MB);
          outcomes.push({ ...outcome, alone: true });
          if (outcome.kind !== 'refused') break;
        }
        return outcomes;
      },
    },
    refusedSubscriptions('WebSocket 120 KiB documents', '100 subscribe messages of 120 KiB, each a distinct invalid document, on 5 sockets', 5, 20, (n) => payload.invalidSubscription(n, 120 * 1024)),
    refusedSubscriptions('WebSocket invalid documents', '2,000 distinct invalid 30 KiB subscriptions (within the size limit), on 10 sockets: the document cache', 10, 200, (n) => payload.invalidSubscription(n, 30 * 1024)),
    refusedSubscriptions('WebSocket depth 300', 'subscriptions nested 300 deep over graphql-ws', 4, 100, () => payload.deepSubscription(300)),
    refusedSubscriptions('WebSocket cost bomb', 'the 2-level cost bomb as a subscription over graphql-ws', 4, 100, () => payload.nestedProductsSubscription(2), true),
    {
      name: 'WebSocket connection flood',
      what: '100 sockets from one address at once (the limit is 20 per caller)',
      async run(context) {
        const sockets = Array.from({ length: 100 }, () => new Socket(context.platform.wsUrl));
        const outcomes = await Promise.all(
          sockets.map(async (socket): Promise<Outcome> => {
            const since = performance.now();
            const acknowledged = await socket.initialize({}, 10_000).catch(() => false);
            if (acknowledged) return { kind: 'admitted', status: 'acknowledged', ms: performance.now() - since };
            const closed = await socket.closed;
            const ms = performance.now() - since;
            return closed.code >= 4000 || closed.code === 1009 ? { kind: 'refused', status: `close ${closed.code}`, code: `close ${closed.code}`, ms } : { kind: 'open', status: `close ${closed.code}`, ms };
          }),
        );
        // One more at a time while the flood holds its 20: the time to refusal.
        for (let n = 0; n < aloneSends; n++) {
          const socket = new Socket(context.platform.wsUrl);
          sockets.push(socket);
          await socket.opened.catch(() => {});
          const since = performance.now();
          const acknowledged = await socket.initialize({}, 10_000).catch(() => false);
          const closed = acknowledged ? undefined : await socket.closed;
          const ms = performance.now() - since;
          outcomes.push(closed && closed.code >= 4000 ? { kind: 'refused', status: `close ${closed.code}`, code: `close ${closed.code}`, ms, alone: true } : { kind: 'open', status: acknowledged ? 'acknowledged' : `close ${closed?.code}`, ms, alone: true });
        }
        // The admitted ones stay open for the rest of the attack, as a flood would keep them.
        await sleep(Math.max(0, context.deadline - Date.now()));
        for (const socket of sockets) socket.close();
        return outcomes;
      },
    },
    {
      name: 'WebSocket 300 subscriptions',
      what: '300 subscriptions on one socket (the limit is 100)',
      async run(context) {
        const socket = new Socket(context.platform.wsUrl);
        try {
          await socket.initialize({ Authorization: `Bearer ${await context.platform.tokenFor(randomUUID())}` });
          const sentAt = new Map<string, number>();
          for (let n = 0; n < 300; n++) {
            sentAt.set(String(n), performance.now());
            socket.subscribe(String(n), 'subscription { myOrderUpdates { id status } }');
          }
          await sleep(Math.max(2_000, context.deadline - Date.now()));
          const refused = new Map(socket.errors.map((error) => [error.id, error]));
          const outcomes = [...sentAt].map(([id, at]): Outcome => {
            const error = refused.get(id);
            if (!error) return { kind: 'admitted', status: 'subscribed', ms: 0 };
            return { kind: error.code ? 'refused' : 'open', status: 'error', ...(error.code ? { code: error.code } : {}), ms: error.at - at };
          });
          // One more at a time on the full socket: the time to refusal.
          for (let n = 300; n < 300 + aloneSends; n++) {
            const answer = socket.waitFor(String(n), 5_000);
            const since = performance.now();
            socket.subscribe(String(n), 'subscription { myOrderUpdates { id status } }');
            const message = await answer;
            const code = message?.type === 'error' ? codeOf({ errors: message.payload }) : undefined;
            outcomes.push({ kind: code ? 'refused' : 'open', status: message?.type ?? 'no answer in 5 s', ...(code ? { code } : {}), ms: performance.now() - since, alone: true });
          }
          return outcomes;
        } finally {
          socket.close();
        }
      },
    },
    streamAttack('multipart cost bomb', 'the 2-level cost bomb as a multipart HTTP subscription', 'multipart/mixed;subscriptionSpec="1.0"'),
    streamAttack('SSE cost bomb', 'the 2-level cost bomb as a Server-Sent Events subscription', 'text/event-stream'),
    {
      name: 'multipart stream flood',
      what: '60 multipart subscriptions of one customer at once (the limit is 20 per caller)',
      async run(context) {
        const headers = { accept: 'multipart/mixed;subscriptionSpec="1.0"', authorization: `Bearer ${await context.platform.tokenFor(randomUUID())}` };
        const controllers: AbortController[] = [];
        const openStream = async (alone: boolean): Promise<Outcome> => {
            const controller = new AbortController();
            controllers.push(controller);
            const since = performance.now();
            try {
              const response = await fetch(context.platform.httpUrl, {
                method: 'POST',
                headers: { 'content-type': 'application/json', ...headers },
                body: query('subscription { myOrderUpdates { id status } }'),
                signal: controller.signal,
              });
              const ms = performance.now() - since;
              if (response.status === 200) return { kind: alone ? 'open' : 'admitted', status: 'HTTP 200 stream', ms, alone };
              const code = codeOf(await response.json());
              return { kind: code ? 'refused' : 'open', status: `HTTP ${response.status}`, ...(code ? { code } : {}), ms, alone };
            } catch (error) {
              return { kind: 'open', status: `failed: ${(error as Error).message}`, ms: performance.now() - since, alone };
            }
        };
        const outcomes = await Promise.all(Array.from({ length: 60 }, () => openStream(false)));
        // One more at a time while the flood holds its 20: the time to refusal.
        for (let n = 0; n < aloneSends; n++) outcomes.push(await openStream(true));
        await sleep(Math.max(0, context.deadline - Date.now()));
        for (const controller of controllers) controller.abort();
        return outcomes;
      },
    },
  ];
}

function streamAttack(name: string, what: string, accept: string): Attack {
  return {
    name,
    what,
    async run(context) {
      const headers = { accept, authorization: `Bearer ${await context.platform.tokenFor(randomUUID())}` };
      return repeat(context, () => post(context.platform.httpUrl, query(payload.nestedProductsSubscription(2)), headers), 100);
    },
  };
}

/**
 * A WebSocket frame announcing `bytes` of payload, written by hand after the upgrade: the time to
 * refusal runs from the frame's header to the server's close frame, without the client's own
 * cost of building and masking a 40 MiB message. The payload follows in 1 MiB chunks (with
 * backpressure) until the server refuses or all of it was sent.
 */
function oversizedFrame(wsUrl: string, bytes: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const url = new URL(wsUrl);
    const socket = connectTcp(Number(url.port), url.hostname);
    let upgraded = false;
    let received = Buffer.alloc(0);
    let since = 0;
    const finish = (outcome: Outcome) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish({ kind: 'open', status: 'no refusal in 10 s', ms: performance.now() - since }), 10_000);
    socket.on('error', () => {});
    socket.on('connect', () =>
      socket.write(
        `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n`,
      ),
    );
    const pump = async () => {
      const header = Buffer.alloc(14);
      header[0] = 0x81; // FIN, text
      header[1] = 0x80 | 127; // masked, 64-bit length
      header.writeBigUInt64BE(BigInt(bytes), 2);
      randomBytes(4).copy(header, 10);
      since = performance.now();
      socket.write(header);
      const chunk = Buffer.alloc(MB);
      for (let sent = 0; sent < bytes && !socket.destroyed; sent += chunk.length) {
        if (!socket.write(chunk)) await new Promise((drained) => socket.once('drain', drained).once('close', drained));
      }
    };
    socket.on('data', (data) => {
      received = Buffer.concat([received, data]);
      if (!upgraded) {
        const end = received.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = /^HTTP\/1\.1 (\d+)/.exec(received.toString('latin1'))?.[1];
        if (status !== '101') return finish({ kind: 'open', status: `upgrade answered ${status}`, ms: 0 });
        upgraded = true;
        received = received.subarray(end + 4);
        void pump();
      }
      // A close frame from the server: 0x88, its length, then the 2-byte close code.
      if (received.length >= 4 && received[0] === 0x88) {
        const code = received.readUInt16BE(2);
        finish({ kind: 'refused', status: `close ${code}`, code: `close ${code}`, ms: performance.now() - since });
      }
    });
    socket.on('close', () => finish(upgraded ? { kind: 'refused', status: 'closed without a close frame', code: 'closed', ms: performance.now() - since } : { kind: 'open', status: 'closed before upgrading', ms: 0 }));
  });
}

/** A request whose body arrives one byte a second: refused if the gateway answers or hangs up before the deadline. */
function slowBody(context: AttackContext): Promise<Outcome> {
  return new Promise((resolve) => {
    const url = new URL(context.platform.httpUrl);
    const socket = connectTcp(Number(url.port), url.hostname);
    const since = performance.now();
    let answer = '';
    let drip: NodeJS.Timeout | undefined;
    const finish = (outcome: Outcome) => {
      clearInterval(drip);
      clearTimeout(deadline);
      socket.destroy();
      resolve(outcome);
    };
    socket.on('error', () => {});
    socket.on('connect', () => {
      socket.write(`POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"query":"`);
      drip = setInterval(() => socket.write('x'), 1_000);
    });
    socket.on('data', (chunk) => (answer += chunk.toString()));
    socket.on('close', () => {
      const status = /^HTTP\/1\.1 (\d+)/.exec(answer)?.[1];
      const code = /"code":"([A-Z_]+)"/.exec(answer)?.[1];
      // Hanging up on a client that never finishes its body is the refusal (Node answers 408 first when it times a request out).
      finish({ kind: 'refused', status: status ? `HTTP ${status}` : 'closed', code: code ?? (status ? `HTTP ${status}` : 'closed'), ms: performance.now() - since });
    });
    const deadline = setTimeout(() => finish({ kind: 'open', status: `held open ${((performance.now() - since) / 1000).toFixed(0)} s`, ms: performance.now() - since }), Math.max(1_000, context.deadline - Date.now()));
  });
}

// ── running them ─────────────────────────────────────────────────────────────────────────────

interface Result {
  attack: Attack;
  outcomes: Outcome[];
  canary: CanaryWindow;
  rss: Record<'gateway' | 'catalog', { growth: number; peak: number }>;
}

function mostCommon(values: (string | undefined)[]): string {
  const counts = new Map<string, number>();
  for (const value of values) if (value) counts.set(value, (counts.get(value) ?? 0) + 1);
  const sorted = [...counts].sort((a, b) => b[1] - a[1]);
  return sorted.length === 0 ? '–' : sorted.map(([value]) => value).slice(0, 2).join(', ');
}

async function measure(attack: Attack, platform: Platform, canary: IpcWorker<CanaryCommand>, options: Options): Promise<Result> {
  const processes = { gateway: platform.gateway.pid, catalog: platform.catalog.pid };
  const before = { gateway: (await residentMemoryOf(processes.gateway)).rss, catalog: (await residentMemoryOf(processes.catalog)).rss };
  const peak = { ...before };
  const sampler = setInterval(() => {
    for (const name of ['gateway', 'catalog'] as const) {
      residentMemoryOf(processes[name]).then(
        ({ rss }) => (peak[name] = Math.max(peak[name], rss)),
        () => {},
      );
    }
  }, 100);
  const from = Date.now();
  const context: AttackContext = { platform, deadline: from + options.attackSeconds * 1000, rate: options.attackRate };
  let outcomes: Outcome[];
  try {
    outcomes = await attack.run(context);
  } catch (error) {
    outcomes = [{ kind: 'open', status: `attack failed: ${(error as Error).message}`, ms: 0 }];
  }
  const to = Math.max(Date.now(), from + 1000);
  await sleep(options.settleSeconds * 1000);
  clearInterval(sampler);
  const after = { gateway: (await residentMemoryOf(processes.gateway)).rss, catalog: (await residentMemoryOf(processes.catalog)).rss };
  const window = await canary.request<CanaryWindow>({ type: 'collect', from, to });
  return {
    attack,
    outcomes,
    canary: window,
    rss: {
      gateway: { growth: (after.gateway - before.gateway) / MB, peak: (Math.max(peak.gateway, after.gateway) - before.gateway) / MB },
      catalog: { growth: (after.catalog - before.catalog) / MB, peak: (Math.max(peak.catalog, after.catalog) - before.catalog) / MB },
    },
  };
}

const pass = (ok: boolean) => (ok ? 'PASS' : 'FAIL');
const fmt = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : '–');

function table(headers: string[], rows: string[][]): string[] {
  const cells = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)];
}

function verdicts(result: Result, baselineP99: number) {
  const judged = result.outcomes.filter((outcome) => outcome.kind !== 'admitted');
  const refused = judged.filter((outcome) => outcome.kind === 'refused');
  // Time to refusal: the attack sent alone (the slowloris has no "alone": all of it at once).
  const timed = refused.some((outcome) => outcome.alone) ? refused.filter((outcome) => outcome.alone) : refused;
  const alone = summarize(timed.map((outcome) => outcome.ms));
  const flood = summarize(refused.filter((outcome) => !outcome.alone).map((outcome) => outcome.ms));
  const canary = summarize(result.canary.latencies);
  const worstRss = Math.max(result.rss.gateway.growth, result.rss.catalog.growth);
  return {
    judged,
    refused,
    alone,
    flood,
    canary,
    refusalOk: judged.length > 0 && refused.length === judged.length && alone.p50 < (result.attack.refusalGoalMs ?? goals.refusalMs),
    canaryOk: result.canary.failed === 0 && canary.n > 0 && canary.p99 <= goals.canaryP99Ratio * baselineP99,
    memoryOk: worstRss < goals.rssGrowthMb,
  };
}

function report(results: Result[], baseline: { p50: number; p99: number; n: number }, options: Options): string[] {
  const lines: string[] = [];
  lines.push(`abuse benchmark — ${machineLine()}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  lines.push(
    `canary: product page (catalog) as a signed-in customer, ${options.rate} req/s open loop; attacks ${options.attackSeconds} s each (fewer when bounded by count), ${options.settleSeconds} s settle; gateway and catalog as processes, production mode`,
  );
  lines.push(`baseline canary: p50 ${fmt(baseline.p50)} ms, p99 ${fmt(baseline.p99)} ms (${baseline.n} requests)`);
  lines.push(
    `refusal ms: median of the attack sent alone ${aloneSends} times, one after the other; in flood: the rest of it, ${options.attackRate}/s open loop (HTTP) or one socket after another (WebSocket)`,
  );
  lines.push(`goals: every request refused with a code, in < ${goals.refusalMs} ms alone; canary p99 ≤ ${goals.canaryP99Ratio}× baseline and none failed; RSS growth < ${goals.rssGrowthMb} MB (gateway and catalog)`);
  lines.push('');
  const rows = results.map((result) => {
    const v = verdicts(result, baseline.p99);
    const admitted = result.outcomes.length - v.judged.length;
    const notRefused = v.judged.filter((outcome) => outcome.kind !== 'refused');
    return [
      result.attack.name,
      `${v.refused.length}/${v.judged.length}${admitted ? ` (+${admitted} admitted)` : ''}`,
      mostCommon(v.refused.map((outcome) => outcome.status)) + (notRefused.length ? `; not refused: ${mostCommon(notRefused.map((outcome) => outcome.status))}` : ''),
      mostCommon(v.refused.map((outcome) => outcome.code)),
      fmt(v.alone.p50),
      `${fmt(v.flood.p50)} / ${fmt(v.flood.p99)}`,
      `${fmt(v.canary.p50)} / ${fmt(v.canary.p99)} (${fmt(v.canary.p99 / baseline.p99)}×)${result.canary.failed ? `, ${result.canary.failed} failed` : ''}${result.canary.pending ? `, ${result.canary.pending} pending` : ''}`,
      `${fmt(result.rss.gateway.growth)} (${fmt(result.rss.gateway.peak)})`,
      `${fmt(result.rss.catalog.growth)} (${fmt(result.rss.catalog.peak)})`,
      `${pass(v.refusalOk)} ${pass(v.canaryOk)} ${pass(v.memoryOk)}`,
    ];
  });
  lines.push(
    ...table(
      ['attack', 'refused', 'status', 'code', 'refusal ms', 'in flood p50 / p99 ms', 'canary p50 / p99 ms (p99 vs baseline)', 'gateway RSS +MB (peak)', 'catalog RSS +MB (peak)', 'refusal canary memory'],
      rows,
    ),
  );
  lines.push('');
  const all = results.map((result) => verdicts(result, baseline.p99));
  const count = (key: 'refusalOk' | 'canaryOk' | 'memoryOk') => `${all.filter((v) => v[key]).length}/${all.length}`;
  lines.push(`summary: refused with a code in < ${goals.refusalMs} ms: ${count('refusalOk')} attacks; canary within ${goals.canaryP99Ratio}× baseline p99: ${count('canaryOk')}; RSS growth < ${goals.rssGrowthMb} MB: ${count('memoryOk')}`);
  const failures = results.filter((result, i) => !all[i]!.refusalOk || !all[i]!.canaryOk || !all[i]!.memoryOk);
  for (const result of failures) {
    const v = verdicts(result, baseline.p99);
    const why = [
      !v.refusalOk ? `refusal: ${v.refused.length}/${v.judged.length} refused, in ${fmt(v.alone.p50)} ms` : '',
      !v.canaryOk ? `canary: p99 ${fmt(v.canary.p99)} ms${result.canary.failed ? `, ${result.canary.failed} failed (${result.canary.failures.join('; ')})` : ''}` : '',
      !v.memoryOk ? `memory: gateway +${fmt(result.rss.gateway.growth)} MB, catalog +${fmt(result.rss.catalog.growth)} MB` : '',
    ].filter(Boolean);
    lines.push(`  FAIL ${result.attack.name} (${result.attack.what}): ${why.join('; ')}`);
  }
  return lines;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      rate: { type: 'string', default: '20' },
      'attack-rate': { type: 'string', default: '50' },
      'baseline-seconds': { type: 'string', default: '10' },
      'attack-seconds': { type: 'string', default: '5' },
      'settle-seconds': { type: 'string', default: '2' },
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const options: Options = {
    rate: Number(values.rate),
    attackRate: Number(values['attack-rate']),
    baselineSeconds: values.quick ? 4 : Number(values['baseline-seconds']),
    attackSeconds: values.quick ? 2 : Number(values['attack-seconds']),
    settleSeconds: values.quick ? 1 : Number(values['settle-seconds']),
    ...(values.only ? { only: values.only.split(',').map((name) => name.trim().toLowerCase()) } : {}),
  };
  const selected = attacks().filter((attack) => !options.only || options.only.some((name) => attack.name.toLowerCase().includes(name)));
  if (selected.length === 0) throw new Error(`--only matched no attack; the attacks are: ${attacks().map((attack) => attack.name).join(', ')}`);

  const cleanups = new Cleanups();
  const interrupted = () => void cleanups.runAll().finally(() => process.exit(130));
  process.once('SIGINT', interrupted);
  try {
    console.error('starting the platform (gateway and catalog as processes)…');
    const platform = await startAbusePlatform(cleanups);
    const canary = new IpcWorker<CanaryCommand>('canary', new URL('./abuse-canary.ts', import.meta.url).pathname, [], tsxLoader);
    cleanups.add('stopping the canary', () => canary.stop());
    const token = await platform.tokenFor(randomUUID());
    // Warm up: plans cached, pools filled, JIT warm, before the baseline counts.
    for (let i = 0; i < 40; i++) await post(platform.httpUrl, JSON.stringify({ query: payload.productPageQuery, variables: { id: ordinaryProduct } }), { authorization: `Bearer ${token}` });
    await canary.request({
      type: 'start',
      url: platform.httpUrl,
      body: JSON.stringify({ query: payload.productPageQuery, variables: { id: ordinaryProduct } }),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      ratePerSecond: options.rate,
      timeoutMs: 10_000,
    });
    const baselineFrom = Date.now();
    await sleep(options.baselineSeconds * 1000);
    const baselineWindow = await canary.request<CanaryWindow>({ type: 'collect', from: baselineFrom, to: Date.now() - 1000 });
    const baseline = summarize(baselineWindow.latencies);
    if (baselineWindow.failed > 0) throw new Error(`the canary failed ${baselineWindow.failed} times before any attack: ${baselineWindow.failures.join('; ')}`);
    console.error(`baseline: p50 ${fmt(baseline.p50)} ms, p99 ${fmt(baseline.p99)} ms`);
    const results: Result[] = [];
    for (const attack of selected) {
      if (!platform.gateway.running || !platform.catalog.running) throw new Error(`the ${platform.gateway.running ? 'catalog' : 'gateway'} process died`);
      console.error(`attack: ${attack.name} — ${attack.what}`);
      results.push(await measure(attack, platform, canary, options));
    }
    await canary.request({ type: 'stop' });
    const lines = report(results, baseline, options);
    console.log(lines.join('\n'));
    if (!options.only) {
      const file = `${repoRoot}docs/bench/abuse-${new Date().toISOString().slice(0, 10)}.txt`;
      writeFileSync(file, `${lines.join('\n')}\n`);
      console.error(`written to ${file}`);
    }
  } finally {
    process.off('SIGINT', interrupted);
    await cleanups.runAll();
  }
}
