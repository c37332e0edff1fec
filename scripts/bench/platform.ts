/**
 * The whole platform inside the benchmark's process, as `npm start` runs it but without child
 * processes: every context's subgraph (with its outbox relay, its consumers, and for orders the
 * saga and the projector) on a throwaway database of its own and a free port, one real event bus
 * (a pg-boss queue in a throwaway database, or a JetStream stream + subject prefix of its own on
 * the machine's NATS), and the gateway in front. What test/support/stack.ts does for the tests,
 * without vitest's `inject`.
 *
 * Every database is named `<prefix>_<name>` (`prefix` is `bench_<8 hex>`, one per platform), so
 * `pg_stat_database` can be summed over exactly this platform's databases. `stop()` removes
 * everything it created (servers, bus, stream, databases), also when `startPlatform` fails
 * half-way; it is idempotent.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import { generateKeyPair, type CryptoKey } from 'jose';
import pg from 'pg';
import { startGateway, type RunningGateway } from '../../gateway/server.ts';
import { withDatabase } from '../../platform/config.ts';
import { contextNames, type ContextName } from '../../platform/contexts.ts';
import { applyMigrations, migrationsDirOf } from '../../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';
import type { EventBus } from '../../platform/events/bus.ts';
import { createJetStreamBus, type JetStreamBusOptions } from '../../platform/events/bus/nats-jetstream.ts';
import { createPostgresQueueBus, type PostgresQueueBusOptions } from '../../platform/events/bus/postgres-queue.ts';
import type { OutboxRelayOptions } from '../../platform/events/relay.ts';
import { issueCustomerToken } from '../../platform/identity/customer-token.ts';
import { GatewayIdentitySigner } from '../../platform/identity/gateway-identity.ts';
import type { Role } from '../../platform/identity/identity.ts';
import { signingAlgorithm } from '../../platform/identity/keys.ts';
import type { RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import { startAccountsSubgraph } from '../../subgraphs/accounts/subgraph.ts';
import { startCatalogSubgraph } from '../../subgraphs/catalog/subgraph.ts';
import { startInventorySubgraph } from '../../subgraphs/inventory/subgraph.ts';
import type { OrderProjectorOptions } from '../../subgraphs/orders/projections/projector.ts';
import { orderSaga } from '../../subgraphs/orders/saga/wiring.ts';
import type { SagaRunnerOptions } from '../../subgraphs/orders/saga/saga-runner.ts';
import { startOrdersSubgraph } from '../../subgraphs/orders/subgraph.ts';
import { startPaymentsSubgraph } from '../../subgraphs/payments/subgraph.ts';
import { startShippingSubgraph } from '../../subgraphs/shipping/subgraph.ts';
import { seedDemoData } from '../demo/seed.ts';
import { benchNatsUrl, benchServerUrl } from './support.ts';

export type BusKind = 'postgres' | 'nats';

export interface PlatformOptions {
  bus: BusKind;
  /** The PostgreSQL server the databases are created on. @default benchServerUrl */
  serverUrl?: string;
  /** @default benchNatsUrl */
  natsUrl?: string;
  /** Seeds the demo data (scripts/demo/seed.ts) before the services start. @default true */
  seed?: boolean;
  /** Production mode (no introspection, masked errors), as deployed. @default true */
  production?: boolean;
  /** Options of the PostgreSQL queue bus besides its database. @default its own defaults */
  postgresBus?: Omit<PostgresQueueBusOptions, 'databaseUrl'>;
  /** Options of the JetStream bus besides servers, stream and prefix. @default its own defaults */
  natsBus?: Omit<JetStreamBusOptions, 'servers' | 'stream' | 'subjectPrefix'>;
  /** Every context's outbox relay. @default its own defaults */
  relay?: Partial<Omit<OutboxRelayOptions, 'databaseUrl' | 'publish'>>;
  /** The order saga. @default its own defaults, as `subgraphs/orders/main.ts` */
  saga?: SagaRunnerOptions;
  /** The order projector. @default its own defaults */
  projector?: Partial<Omit<OrderProjectorOptions, 'databaseUrl'>>;
  /**
   * What-if: handle this many events at once in the named consumers (e.g. `{ orders: 4 }`)
   * instead of what the contexts subscribe with (1). For finding bottlenecks, not a setting the
   * platform offers. @default none
   */
  consumerConcurrency?: Record<string, number>;
}

/** Time spent in the bus by each consumer's handler and each context's publishes (its relay). */
export interface BusMeterReading {
  /** Per consumer: events handled and milliseconds spent in its handler. */
  handled: Map<string, { events: number; busyMs: number }>;
  /** Per publishing context: events published and milliseconds spent publishing. */
  published: Map<string, { events: number; busyMs: number }>;
}

/**
 * The bus as the subgraphs see it, timing what they do with it: wall-clock time in each
 * consumer's handler (its transaction, and waiting for this process's event loop), and in each
 * publish. A consumer that handles one event at a time and is busy ~100% of a run is saturated.
 */
export class BusMeter {
  readonly #handled = new Map<string, { events: number; busyMs: number }>();
  readonly #published = new Map<string, { events: number; busyMs: number }>();

  wrap(bus: EventBus, concurrency: Record<string, number> = {}): EventBus {
    const add = (into: Map<string, { events: number; busyMs: number }>, key: string, since: number) => {
      const entry = into.get(key) ?? { events: 0, busyMs: 0 };
      entry.events += 1;
      entry.busyMs += performance.now() - since;
      into.set(key, entry);
    };
    return {
      kind: bus.kind,
      health: () => bus.health(),
      storedSince: () => bus.storedSince(),
      backlog: (consumer) => bus.backlog(consumer),
      publish: async (event) => {
        const since = performance.now();
        await bus.publish(event);
        add(this.#published, event.source, since);
      },
      declareConsumer: (consumer, options) => bus.declareConsumer(consumer, options),
      subscribe: (consumer, options, handler) =>
        bus.subscribe(consumer, { ...options, ...(concurrency[consumer] ? { concurrency: concurrency[consumer] } : {}) }, async (event, delivery) => {
          const since = performance.now();
          try {
            await handler(event, delivery);
          } finally {
            add(this.#handled, consumer, since);
          }
        }),
      deadLetters: (consumer) => bus.deadLetters(consumer),
      replayDeadLetters: (selection) => bus.replayDeadLetters(selection),
      status: () => bus.status(),
      close: () => bus.close(),
    };
  }

  read(): BusMeterReading {
    const copy = (from: Map<string, { events: number; busyMs: number }>) => new Map([...from].map(([key, value]) => [key, { ...value }]));
    return { handled: copy(this.#handled), published: copy(this.#published) };
  }
}

export interface Platform {
  /** `bench_<8 hex>`: every database of this platform is `<prefix>_<name>`. */
  prefix: string;
  bus: BusKind;
  eventBus: EventBus;
  /** What the contexts spend in the bus (handlers, publishes). */
  meter: BusMeter;
  gatewayUrl: string;
  gateway: RunningGateway;
  subgraphs: Record<ContextName, RunningContextSubgraph>;
  databaseUrls: Record<ContextName, string>;
  /** The pg-boss database (PostgreSQL bus only). */
  busDatabaseUrl?: string;
  /** A bearer token as accounts would issue it. */
  tokenFor(subject: { customerId: string; roles?: Role[] }, ttlSeconds?: number): Promise<string>;
  /**
   * Stops the gateway, the subgraphs (consumers, relays, saga, projector) and the bus, keeping
   * the databases and the stream, e.g. to read their statistics once every session has ended.
   */
  stopServices(): Promise<void>;
  /** Stops and removes everything; idempotent. */
  stop(): Promise<void>;
}

/** Cleanups run last-in first-out; each one runs even when an earlier one failed. */
class Cleanups {
  readonly #steps: { what: string; run: () => Promise<unknown> }[] = [];
  #done: Promise<void> | undefined;

  add(what: string, run: () => Promise<unknown>): void {
    this.#steps.push({ what, run });
  }

  runAll(): Promise<void> {
    this.#done ??= (async () => {
      for (const step of this.#steps.reverse()) {
        try {
          await step.run();
        } catch (error) {
          console.error(`cleanup: ${step.what} failed: ${(error as Error).message}`);
        }
      }
    })();
    return this.#done;
  }
}

/** The cleanups of the platforms started (or starting) and not yet stopped, so that a Ctrl-C can still remove them. */
const live = new Set<() => Promise<void>>();

/** Stops and removes every platform still running or starting (for a SIGINT handler). */
export async function stopAllPlatforms(): Promise<void> {
  for (const cleanUp of [...live]) await cleanUp();
}

export async function deleteStreams(natsUrl: string, ...names: string[]): Promise<void> {
  const nc = await connectNats({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    for (const name of names) await jsm.streams.delete(name).catch(() => {});
  } finally {
    await nc.close();
  }
}

export async function startPlatform(options: PlatformOptions): Promise<Platform> {
  const serverUrl = options.serverUrl ?? benchServerUrl;
  const natsUrl = options.natsUrl ?? benchNatsUrl;
  const production = options.production ?? true;
  const prefix = `bench_${randomBytes(4).toString('hex')}`;
  // Services stop first (last started, first stopped), then what they ran on is removed.
  const services = new Cleanups();
  const resources = new Cleanups();
  const cleanUp = async () => {
    live.delete(cleanUp);
    await services.runAll();
    await resources.runAll();
  };
  live.add(cleanUp);
  const databases: string[] = [];
  // All at once: each DROP DATABASE waits for a checkpoint, and concurrent ones share it.
  resources.add(`dropping the ${prefix}_* databases`, async () => {
    const failed = (await Promise.allSettled(databases.map((url) => dropDatabase(url)))).find((result) => result.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  });
  const database = async (name: string) => {
    const url = withDatabase(serverUrl, `${prefix}_${name}`);
    databases.push(url);
    await ensureDatabase(url);
    return url;
  };

  try {
    const authToken = await generateKeyPair(signingAlgorithm, { extractable: true });
    const gatewayIdentity = await generateKeyPair(signingAlgorithm, { extractable: true });

    const databaseUrls = {} as Record<ContextName, string>;
    // Settled, not Promise.all: on a failure none may still be creating a database after the cleanup.
    const created = await Promise.allSettled(
      contextNames.map(async (context) => {
        databaseUrls[context] = await database(context);
        await applyMigrations({ databaseUrl: databaseUrls[context], migrationsDir: migrationsDirOf(context) });
      }),
    );
    const failed = created.find((result) => result.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    if (options.seed ?? true) await seedDemoData(databaseUrls);

    let eventBus: EventBus;
    let busDatabaseUrl: string | undefined;
    if (options.bus === 'postgres') {
      busDatabaseUrl = await database('bus');
      eventBus = await createPostgresQueueBus({ ...options.postgresBus, databaseUrl: busDatabaseUrl });
    } else {
      const stream = `BENCH_${randomBytes(4).toString('hex').toUpperCase()}`;
      resources.add(`deleting stream ${stream}`, () => deleteStreams(natsUrl, stream, `${stream}_DEAD_LETTERS`));
      eventBus = await createJetStreamBus({ ...options.natsBus, servers: natsUrl, stream, subjectPrefix: `b${randomBytes(4).toString('hex')}` });
    }
    services.add('closing the event bus', () => eventBus.close());

    const meter = new BusMeter();
    const base = {
      port: 0,
      host: '127.0.0.1',
      gatewayPublicKey: gatewayIdentity.publicKey as CryptoKey,
      production,
      eventBus: meter.wrap(eventBus, options.consumerConcurrency),
      ...(options.relay ? { relay: options.relay } : {}),
    };
    const subgraphs = {} as Record<ContextName, RunningContextSubgraph>;
    const started = async (name: ContextName, start: () => Promise<RunningContextSubgraph>) => {
      subgraphs[name] = await start();
      services.add(`stopping ${name}`, () => subgraphs[name].stop());
    };
    await started('accounts', () => startAccountsSubgraph({ ...base, databaseUrl: databaseUrls.accounts, authTokenPrivateKey: authToken.privateKey }));
    await started('catalog', () => startCatalogSubgraph({ ...base, databaseUrl: databaseUrls.catalog }));
    await started('inventory', () => startInventorySubgraph({ ...base, databaseUrl: databaseUrls.inventory }));
    await started('orders', () =>
      startOrdersSubgraph({ ...base, databaseUrl: databaseUrls.orders, saga: orderSaga(options.saga ?? {}), projector: options.projector ?? {} }),
    );
    await started('payments', () => startPaymentsSubgraph({ ...base, databaseUrl: databaseUrls.payments }));
    await started('shipping', () => startShippingSubgraph({ ...base, databaseUrl: databaseUrls.shipping }));

    const gateway = await startGateway({
      supergraphSdl: readFileSync(new URL('../../schema/supergraph.graphql', import.meta.url), 'utf8'),
      port: 0,
      host: '127.0.0.1',
      subgraphUrls: Object.fromEntries(contextNames.map((name) => [name, subgraphs[name].url])),
      customerTokenPublicKey: authToken.publicKey,
      identitySigner: new GatewayIdentitySigner(gatewayIdentity.privateKey),
      production,
    });
    services.add('stopping the gateway', () => gateway.stop());

    const platform: Platform = {
      prefix,
      bus: options.bus,
      eventBus,
      meter,
      gatewayUrl: gateway.url,
      gateway,
      subgraphs,
      databaseUrls,
      ...(busDatabaseUrl ? { busDatabaseUrl } : {}),
      tokenFor: (subject, ttlSeconds = 3600) =>
        issueCustomerToken(authToken.privateKey, { customerId: subject.customerId, roles: subject.roles ?? ['customer'] }, ttlSeconds),
      stopServices: () => services.runAll(),
      stop: cleanUp,
    };
    return platform;
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

/** Per database of the platform (`<prefix>_<name>` → name), transactions committed so far. */
export async function committedTransactions(serverUrl: string, prefix: string): Promise<Map<string, number>> {
  const client = new pg.Client({ connectionString: withDatabase(serverUrl, 'postgres') });
  await client.connect();
  try {
    // A fresh snapshot of the cumulative statistics, not the one cached in this transaction.
    await client.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await client.query<{ datname: string; commits: string }>(
      'SELECT datname, xact_commit::text AS commits FROM pg_stat_database WHERE starts_with(datname, $1)',
      [`${prefix}_`],
    );
    return new Map(rows.map((row) => [row.datname.slice(prefix.length + 1), Number(row.commits)]));
  } finally {
    await client.end();
  }
}
