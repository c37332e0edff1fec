/**
 * `npm run bench -- chaos [--quick] [--recovery-seconds 30] [--orders-per-second 3]
 *    [--queries-per-second 4] [--customers 4] [--subscribers-per-customer 2]
 *    [--nats-outage-seconds 40] [--step-timeout-ms <ms>] [--only kill,postgres,nats]
 *    [--keep-log <file>]` (a copy of the platform's own log, which goes with the temp folder)
 *
 * Issue 10's fault campaign as a benchmark. The platform runs as `npm start` runs it (the
 * supervisor and one process per service, production mode) against a PostgreSQL and a NATS of
 * its own (chaos-servers.ts), so they can be restarted, stopped and wiped. Under a steady load —
 * placeOrder from several customers (tok_visa), catalog browsing and "my orders" queries, and
 * `myOrderUpdates` subscribers over graphql-ws recording every event — it injects one fault at a
 * time, each followed by a recovery window:
 *   SIGKILL of each subgraph and of the gateway, in turn; `pg_ctl restart -m fast`; NATS stopped
 *   for longer than a saga step's deadline, then started; NATS stopped, its store deleted, started.
 * Per fault it prints the client errors by code, the time from the fault's end to the first
 * fully successful placeOrder + queries round, to the gateway's /ready saying `ready` for good
 * (when it has /ready), and to the first new order confirmed; and the orders placed during it, with
 * their TIMEOUTs, violations and missed events (chaos-report.ts). After the load stops and the
 * platform quiesces, it checks every order's invariants (chaos-invariants.ts) and what the
 * subscribers heard, and judges the goals: 0 violations, 0 orders cancelled as TIMEOUT, recovery
 * within 10 s of each fault's end. Decision record: docs/decisions/0021-chaos-benchmark.md.
 *
 * A full run (all faults, not --quick) writes its report to docs/bench/chaos-<date>.txt. Every
 * process, port and temp folder is removed on exit, Ctrl-C included.
 */
import { chmodSync, copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { contextNames } from '../../platform/contexts.ts';
import { ErrorTally, Load, probeRound, signIn, signUp, topUpStock, type Customer } from './chaos-clients.ts';
import { checkInvariants, checkSubscriptions } from './chaos-invariants.ts';
import { ChaosPlatform, serviceNames } from './chaos-platform.ts';
import { formatReport, seconds, type PhaseResult } from './chaos-report.ts';
import { PrivateNats, PrivatePostgres } from './chaos-servers.ts';
import { readFacts, quiesce } from './chaos-snapshot.ts';
import { OrderUpdatesSubscriber } from './chaos-subscribers.ts';
import { repoRoot } from './processes.ts';
import { Cleanups, sleep } from './support.ts';

interface Options {
  quick: boolean;
  /** Load after each fault's end before the next fault. */
  recoverySeconds: number;
  ordersPerSecond: number;
  queriesPerSecond: number;
  customers: number;
  subscribersPerCustomer: number;
  natsOutageSeconds: number;
  /** SAGA_STEP_TIMEOUT_MS for the run; undefined keeps the platform's default (30 s). */
  stepTimeoutMs: number | undefined;
  only: string[] | undefined;
}

const defaultStepTimeoutMs = 30_000;

interface Fault {
  name: string;
  /** Injects the fault; resolves when the fault has ENDED (the process killed, the server back). */
  inject(): Promise<string>;
  /** After the recovery window: what became of it (e.g. the killed process's successor). */
  after?(): Promise<string>;
}

function faultsOf(platform: ChaosPlatform, postgres: PrivatePostgres, nats: PrivateNats, options: Options): Fault[] {
  const kills = serviceNames.map((service): Fault => {
    let killed: number | undefined;
    return {
      name: `kill ${service}`,
      inject: async () => {
        killed = await platform.kill(service);
        return killed === undefined ? `${service} was not running` : `SIGKILL pid ${killed}`;
      },
      after: async () => {
        const now = (await platform.servicePids())[service];
        if (now === undefined) return `${service} NOT running`;
        if (now === killed) return `${service} still pid ${now}?`;
        // The supervisor's own account of the restart, when its log says it (platform/process/supervisor.ts).
        const back = [...platform.logTail(400).matchAll(new RegExp(`^${service} is back \\((.*)\\)$`, 'gm'))].at(-1)?.[1];
        return `back as pid ${now}${back ? ` (${back})` : ''}`;
      },
    };
  });
  const faults: Fault[] = [
    ...kills,
    { name: 'restart PostgreSQL', inject: async () => (await postgres.restart(), 'pg_ctl restart -m fast') },
    {
      name: `stop NATS ${options.natsOutageSeconds} s`,
      inject: async () => {
        await nats.stop();
        await sleep(options.natsOutageSeconds * 1000);
        await nats.start();
        return `stopped ${options.natsOutageSeconds} s (saga step deadline ${(options.stepTimeoutMs ?? defaultStepTimeoutMs) / 1000} s)`;
      },
    },
    {
      name: 'wipe NATS data',
      inject: async () => {
        await nats.stop();
        nats.wipe();
        await nats.start();
        return 'stopped, store deleted, started';
      },
    },
  ];
  return options.only ? faults.filter((fault) => options.only!.some((word) => fault.name.toLowerCase().includes(word))) : faults;
}

/**
 * The gateway's /ready, polled every 250 ms from a fault's start until stopped: when its answer
 * last became `ready` (every subgraph up), counted from the fault's end, and whether it said
 * anything else meanwhile — a readiness that never left `ready` did not notice the fault.
 */
class ReadinessWatch {
  #readySince: number | undefined;
  #sawNotReady = false;
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(platform: ChaosPlatform) {
    this.#loop = (async () => {
      while (!this.#stopped) {
        const at = Date.now();
        if ((await platform.readiness()) === 'ready') this.#readySince ??= at;
        else {
          this.#sawNotReady = true;
          this.#readySince = undefined;
        }
        await sleep(250);
      }
    })();
  }

  /** Stops polling; `ended` is when the fault ended. */
  async stop(ended: number): Promise<number | undefined | 'ready throughout'> {
    this.#stopped = true;
    await this.#loop;
    if (!this.#sawNotReady) return 'ready throughout';
    return this.#readySince === undefined ? undefined : Math.max(0, this.#readySince - ended);
  }
}

/**
 * After a fault's end: probe rounds (chaos-clients.ts) until one fully succeeds, bounded. A
 * platform whose `npm start` exited is started again by the benchmark (and the fault says so):
 * the remaining faults still get measured.
 */
async function measureRecovery(platform: ChaosPlatform, probe: Customer, tally: ErrorTally, load: Load, ended: number, boundMs: number, notes: string[]) {
  let recoveredMs: number | undefined;
  // A round starts every 500 ms, up to 4 at once: a round stuck in a timeout does not hide that
  // the platform answers again, and the first round to succeed dates the recovery.
  const inFlight = new Set<Promise<void>>();
  while (recoveredMs === undefined && Date.now() - ended < boundMs) {
    if (!platform.running) {
      notes.push('npm start EXITED; the benchmark started it again');
      await platform.startAgain().catch((error: Error) => notes.push(`starting again failed: ${error.message.split('\n')[0]}`));
    }
    if (inFlight.size < 4) {
      const round: Promise<void> = probeRound(platform.gatewayUrl, probe, tally, load.placed, 5_000).then((ok) => {
        if (ok) recoveredMs ??= Date.now() - ended;
        inFlight.delete(round);
      });
      inFlight.add(round);
    }
    await sleep(500);
  }
  await Promise.all(inFlight);
  return recoveredMs;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      'recovery-seconds': { type: 'string' },
      'orders-per-second': { type: 'string', default: '3' },
      'queries-per-second': { type: 'string', default: '4' },
      customers: { type: 'string', default: '4' },
      'subscribers-per-customer': { type: 'string', default: '2' },
      'nats-outage-seconds': { type: 'string' },
      'step-timeout-ms': { type: 'string' },
      only: { type: 'string' },
      'keep-log': { type: 'string' },
    },
  });
  const quick = values.quick || process.env.CHAOS_QUICK === 'true';
  const options: Options = {
    quick,
    recoverySeconds: Number(values['recovery-seconds'] ?? (quick ? 12 : 30)),
    ordersPerSecond: Number(values['orders-per-second']),
    queriesPerSecond: Number(values['queries-per-second']),
    customers: Number(values.customers),
    subscribersPerCustomer: Number(values['subscribers-per-customer']),
    // Quick: a 10 s step deadline and a 15 s outage keep the outage longer than a step, in less time.
    natsOutageSeconds: Number(values['nats-outage-seconds'] ?? (quick ? 15 : 40)),
    stepTimeoutMs: values['step-timeout-ms'] ? Number(values['step-timeout-ms']) : quick ? 10_000 : undefined,
    only: values.only?.split(',').map((word) => word.trim().toLowerCase()),
  };
  for (const [name, value] of Object.entries(options)) {
    if (typeof value === 'number' && !(value > 0)) throw new Error(`${name} must be a positive number, got ${value}`);
  }

  const cleanups = new Cleanups();
  const interrupted = () => void cleanups.runAll().finally(() => process.exit(130));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const say = (line: string) => console.error(`[chaos ${new Date().toISOString().slice(11, 19)}] ${line}`);
  try {
    const dir = mkdtempSync(join(tmpdir(), 'chaos-'));
    // PostgreSQL runs as its own user when we are root: it must be able to enter the folder.
    chmodSync(dir, 0o711);
    cleanups.add('removing the temp folder', async () => rmSync(dir, { recursive: true, force: true }));
    say(`temp folder ${dir}`);
    const postgres = await PrivatePostgres.start({ dir: join(dir, 'postgres') });
    cleanups.add('stopping PostgreSQL', () => postgres.stop());
    const nats = await PrivateNats.start({ dir: join(dir, 'nats') });
    cleanups.add('stopping NATS', () => nats.stop());
    say(`PostgreSQL on port ${postgres.port}, NATS on port ${nats.port}; starting the platform (npm start)…`);
    const env = {
      ...(options.stepTimeoutMs ? { SAGA_STEP_TIMEOUT_MS: String(options.stepTimeoutMs) } : {}),
      // The load's clients hold one access token for the whole run and do not refresh it (what is
      // measured is recovery from faults): tokens outlive the run, as they did before sessions.
      AUTH_ACCESS_TOKEN_TTL_SECONDS: String(6 * 3600),
    };
    const platform = await ChaosPlatform.start({ dir, serverUrl: postgres.url, natsUrl: nats.url, env });
    cleanups.add('stopping the platform', () => platform.stop());
    say(`platform up: gateway ${platform.gatewayUrl}, log ${platform.logFile}`);

    const tally = new ErrorTally();
    const admin = await signIn(platform.gatewayUrl, 'admin@example.com', platform.adminPassword);
    await topUpStock(platform.gatewayUrl, admin, 100_000);
    const runId = Date.now().toString(36);
    const customers: Customer[] = [];
    for (let i = 0; i <= options.customers; i++) customers.push(await signUp(platform.gatewayUrl, `chaos-${runId}-${i}@example.com`, `chaos-password-${runId}-${i}`, `Chaos Customer ${i}`));
    const probe = customers.pop()!;

    const subscribers: OrderUpdatesSubscriber[] = [];
    cleanups.add('closing the subscribers', () => Promise.all(subscribers.map((s) => s.stop())));
    for (const customer of customers) for (let i = 0; i < options.subscribersPerCustomer; i++) subscribers.push(new OrderUpdatesSubscriber(platform.gatewayWsUrl, customer));
    await Promise.all(subscribers.map((s) => s.start()));
    say(`${customers.length} customers, ${subscribers.length} subscribers; load ${options.ordersPerSecond} orders/s + ${options.queriesPerSecond} queries/s`);

    const load = new Load({ url: platform.gatewayUrl, customers, tally, ordersPerSecond: options.ordersPerSecond, queriesPerSecond: options.queriesPerSecond });
    cleanups.add('stopping the load', () => load.stop(false));
    tally.phase = 'no fault (warm-up)';
    const warmUpFrom = Date.now();
    load.start();
    await sleep(options.recoverySeconds * 1000);
    const hasReady = await platform.hasReadyEndpoint();

    const phases: PhaseResult[] = [{ name: tally.phase, from: warmUpFrom, endedAt: warmUpFrom, calls: 0, errors: new Map(), recoveredMs: undefined, readyMs: hasReady ? undefined : 'no /ready', notes: [], isFault: false }];
    for (const fault of faultsOf(platform, postgres, nats, options)) {
      tally.phase = fault.name;
      const from = Date.now();
      say(`fault: ${fault.name}`);
      const readiness = hasReady ? new ReadinessWatch(platform) : undefined;
      const notes = [await fault.inject()];
      const boundMs = Math.max(options.recoverySeconds * 1000, 120_000);
      const ended = Date.now();
      const recoveredMs = await measureRecovery(platform, probe, tally, load, ended, boundMs, notes);
      await sleep(Math.max(0, options.recoverySeconds * 1000 - (Date.now() - ended)));
      const readyMs = readiness ? await readiness.stop(ended) : 'no /ready';
      if (fault.after) notes.push(await fault.after());
      phases.push({ name: fault.name, from, endedAt: ended, calls: 0, errors: new Map(), recoveredMs, readyMs, notes, isFault: true });
      say(`  recovered after ${seconds(recoveredMs)}; ${notes.join('; ')}`);
    }
    tally.phase = 'draining';
    await load.stop();
    for (const phase of phases) {
      phase.calls = tally.callsOf(phase.name);
      phase.errors = tally.errorsOf(phase.name);
    }

    const stepMs = options.stepTimeoutMs ?? defaultStepTimeoutMs;
    say('load stopped; waiting for the platform to quiesce…');
    const quiet = await quiesce((context) => platform.databaseUrl(context), contextNames, { timeoutMs: 2 * stepMs + 120_000 });
    // Subscribers get a few seconds more for the last notifications.
    await sleep(3_000);
    const facts = await readFacts((context) => platform.databaseUrl(context), [...load.placed.keys()]);
    const invariants = checkInvariants(facts);
    const customerOf = new Map(facts.orders.filter((o) => o.events[0]?.type === 'OrderPlaced').map((o) => [o.orderId, (o.events[0]!.data as { customerId: string }).customerId]));
    const heard = checkSubscriptions(
      facts.orders,
      customerOf,
      subscribers.map((s, i) => ({ name: `subscriber ${i}`, customerId: s.customer.id, subscribedAt: s.subscribedAt!, received: s.received, gaps: s.gaps })),
    );
    const subscriberErrors = new Map<string, number>();
    for (const s of subscribers) for (const [code, n] of s.errors) subscriberErrors.set(code, (subscriberErrors.get(code) ?? 0) + n);

    const lines = formatReport({
      settings:
        `load: ${options.customers} customers, ${options.ordersPerSecond} placeOrder/s + ${options.queriesPerSecond} queries/s, ${subscribers.length} myOrderUpdates subscribers; ` +
        `recovery window ${options.recoverySeconds} s; saga step deadline ${stepMs / 1000} s${options.stepTimeoutMs ? ' (SAGA_STEP_TIMEOUT_MS set for this run)' : ' (default)'}; NATS outage ${options.natsOutageSeconds} s`,
      phases,
      facts,
      invariants,
      subscriptions: heard,
      subscriberErrors,
      quiesce: quiet,
      acknowledged: load.placed.size,
      abandoned: load.abandoned.length,
      restartsByBenchmark: platform.restartsByBenchmark,
    });
    console.log(lines.join('\n'));
    if (!options.quick && !options.only && values['recovery-seconds'] === undefined) {
      const file = `${repoRoot}docs/bench/chaos-${new Date().toISOString().slice(0, 10)}.txt`;
      writeFileSync(file, `${lines.join('\n')}\n`);
      say(`written to ${file}`);
    }
    if (values['keep-log']) {
      copyFileSync(platform.logFile, values['keep-log']);
      say(`the platform's log copied to ${values['keep-log']}`);
    }
  } finally {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
    await cleanups.runAll();
  }
}
