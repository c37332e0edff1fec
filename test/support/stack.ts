/**
 * The whole platform in the test process: every context's subgraph on its own database (a
 * clone of the run's migrated template) and port, and the gateway in front, all over real HTTP.
 */
import { readFileSync } from 'node:fs';
import { generateKeyPair, type CryptoKey } from 'jose';
import { inject } from 'vitest';
import { withDatabase } from '../../platform/config.ts';
import { contextNames, type ContextName } from '../../platform/contexts.ts';
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';
import type { EventBus } from '../../platform/events/bus.ts';
import { createJetStreamBus } from '../../platform/events/bus/nats-jetstream.ts';
import { createPostgresQueueBus } from '../../platform/events/bus/postgres-queue.ts';
import { issueCustomerToken } from '../../platform/identity/customer-token.ts';
import { GatewayIdentitySigner } from '../../platform/identity/gateway-identity.ts';
import type { Role } from '../../platform/identity/identity.ts';
import { signingAlgorithm } from '../../platform/identity/keys.ts';
import type { RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import { startGateway, type GatewayOptions, type RunningGateway } from '../../gateway/server.ts';
import { startAccountsSubgraph, type AccountsSubgraphOptions } from '../../subgraphs/accounts/subgraph.ts';
import { startCatalogSubgraph } from '../../subgraphs/catalog/subgraph.ts';
import { startInventorySubgraph } from '../../subgraphs/inventory/subgraph.ts';
import { orderSaga } from '../../subgraphs/orders/saga/wiring.ts';
import { startOrdersSubgraph } from '../../subgraphs/orders/subgraph.ts';
import { startPaymentsSubgraph } from '../../subgraphs/payments/subgraph.ts';
import { startShippingSubgraph } from '../../subgraphs/shipping/subgraph.ts';
import { testNatsUrl } from './nats.ts';
import { cloneDatabase } from './postgres.ts';
import { freshDatabaseName, templateDatabaseName } from './run.ts';

export interface TestKeys {
  authToken: { privateKey: CryptoKey; publicKey: CryptoKey };
  gatewayIdentity: { privateKey: CryptoKey; publicKey: CryptoKey };
}

export type TestBusKind = 'postgres' | 'nats';

export interface Stack {
  /** The event bus every context publishes to and consumes from, when one was asked for. */
  eventBus?: EventBus;
  /** The environment that reaches that bus (for the platform's command-line tools). */
  eventBusEnv?: Record<string, string>;
  gateway: RunningGateway;
  gatewayUrl: string;
  subgraphs: Record<ContextName, RunningContextSubgraph>;
  databaseUrls: Record<ContextName, string>;
  keys: TestKeys;
  /** Signs identities as the gateway would, for requests straight to a subgraph. */
  signer: GatewayIdentitySigner;
  /** A bearer token as accounts would issue it. */
  tokenFor(subject: { customerId: string; roles?: Role[] }, ttlSeconds?: number): Promise<string>;
  stop(): Promise<void>;
}

export async function generateTestKeys(): Promise<TestKeys> {
  return {
    authToken: await generateKeyPair(signingAlgorithm, { extractable: true }),
    gatewayIdentity: await generateKeyPair(signingAlgorithm, { extractable: true }),
  };
}

/** A fresh database per context, cloned from the run's migrated templates. */
export async function freshDatabases(): Promise<Record<ContextName, string>> {
  const serverUrl = inject('testServerUrl');
  const runPrefix = inject('runPrefix');
  const urls = {} as Record<ContextName, string>;
  for (const context of contextNames) {
    urls[context] = await cloneDatabase(serverUrl, templateDatabaseName(runPrefix, context), freshDatabaseName(runPrefix, context));
  }
  return urls;
}

/**
 * A real bus for one stack: a pg-boss queue in a database of its own, or a JetStream stream of
 * its own on the machine's NATS; `dispose` removes it.
 */
export interface TestBus {
  bus: EventBus;
  /** The environment with which `createEventBus` (e.g. in `npm run events`) reaches the same bus. */
  env: Record<string, string>;
  dispose(): Promise<void>;
}

export async function startTestBus(kind: TestBusKind, natsUrl = testNatsUrl): Promise<TestBus> {
  if (kind === 'postgres') {
    const databaseUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_bus_${randomBytes(4).toString('hex')}`);
    await ensureDatabase(databaseUrl);
    const bus = await createPostgresQueueBus({ databaseUrl, pollingIntervalMs: 100, poolSize: 2 });
    return { bus, env: { EVENT_BUS_DATABASE_URL: databaseUrl }, dispose: async () => dropDatabase(databaseUrl) };
  }
  const stream = `TEST_${randomBytes(4).toString('hex').toUpperCase()}`;
  const subjectPrefix = `t${randomBytes(4).toString('hex')}`;
  const bus = await createJetStreamBus({ servers: natsUrl, stream, subjectPrefix });
  return {
    bus,
    env: { NATS_URL: natsUrl, NATS_STREAM: stream, NATS_SUBJECT_PREFIX: subjectPrefix },
    dispose: () => deleteStreams(natsUrl, stream, `${stream}_DEAD_LETTERS`),
  };
}

async function deleteStreams(natsUrl: string, ...names: string[]): Promise<void> {
  const nc = await connectNats({ servers: natsUrl });
  try {
    const jsm = await jetstreamManager(nc);
    for (const name of names) await jsm.streams.delete(name).catch(() => {});
  } finally {
    await nc.close();
  }
}

export interface StackOptions {
  production?: boolean;
  eventBus?: TestBusKind;
  /** The NATS server of a `nats` bus (e.g. a private one the test stops and wipes). @default testNatsUrl */
  natsUrl?: string;
  /** Deadline of each waiting saga step. @default 30_000 */
  sagaStepTimeoutMs?: number;
  /** How long the simulated provider takes for `tok_slow`. @default the provider's (45 s, past the saga's deadline) */
  slowPaymentDelayMs?: number;
  /** Accounts' own options, e.g. `throttling` for a test that signs up more often than a person would. */
  accounts?: Pick<AccountsSubgraphOptions, 'throttling' | 'sessionLifetimes' | 'retiredTokenPublicKeys'>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const production = options.production ?? false;
  const keys = await generateTestKeys();
  const databaseUrls = await freshDatabases();
  const testBus = options.eventBus ? await startTestBus(options.eventBus, options.natsUrl) : undefined;
  const base = {
    port: 0,
    host: '127.0.0.1',
    gatewayPublicKey: keys.gatewayIdentity.publicKey,
    production,
    ...(testBus ? { eventBus: testBus.bus, relay: { pollIntervalMs: 200 } } : {}),
  };
  const subgraphs: Record<ContextName, RunningContextSubgraph> = {
    accounts: await startAccountsSubgraph({ ...base, databaseUrl: databaseUrls.accounts, authTokenPrivateKey: keys.authToken.privateKey, ...options.accounts }),
    catalog: await startCatalogSubgraph({ ...base, databaseUrl: databaseUrls.catalog }),
    inventory: await startInventorySubgraph({ ...base, databaseUrl: databaseUrls.inventory }),
    orders: await startOrdersSubgraph({
      ...base,
      databaseUrl: databaseUrls.orders,
      saga: orderSaga({ sweepIntervalMs: 100, ...(options.sagaStepTimeoutMs ? { stepTimeoutMs: options.sagaStepTimeoutMs } : {}) }),
      projector: { pollIntervalMs: 200 },
    }),
    payments: await startPaymentsSubgraph({
      ...base,
      databaseUrl: databaseUrls.payments,
      ...(options.slowPaymentDelayMs ? { simulatedProvider: { slowTokenDelayMs: options.slowPaymentDelayMs } } : {}),
    }),
    shipping: await startShippingSubgraph({ ...base, databaseUrl: databaseUrls.shipping }),
  };
  const gateway = await startGateway({
    supergraphSdl: readFileSync(new URL('../../schema/supergraph.graphql', import.meta.url), 'utf8'),
    port: 0,
    host: '127.0.0.1',
    subgraphUrls: Object.fromEntries(contextNames.map((name) => [name, subgraphs[name].url])),
    customerTokenPublicKey: keys.authToken.publicKey,
    identitySigner: new GatewayIdentitySigner(keys.gatewayIdentity.privateKey),
    production,
  });
  return {
    ...(testBus ? { eventBus: testBus.bus, eventBusEnv: testBus.env } : {}),
    gateway,
    gatewayUrl: gateway.url,
    subgraphs,
    databaseUrls,
    keys,
    signer: new GatewayIdentitySigner(keys.gatewayIdentity.privateKey),
    tokenFor: (subject, ttlSeconds = 600) =>
      issueCustomerToken(keys.authToken.privateKey, { customerId: subject.customerId, roles: subject.roles ?? ['customer'] }, ttlSeconds),
    async stop() {
      await gateway.stop();
      for (const subgraph of Object.values(subgraphs)) await subgraph.stop();
      await testBus?.bus.close();
      await testBus?.dispose();
      for (const url of Object.values(databaseUrls)) await dropDatabase(url);
    },
  };
}

/** Options of another gateway in front of the stack's subgraphs, as the stack's own is configured. */
export function gatewayOptionsFor(stack: Stack, overrides: Partial<GatewayOptions> = {}): GatewayOptions {
  return {
    supergraphSdl: readFileSync(new URL('../../schema/supergraph.graphql', import.meta.url), 'utf8'),
    port: 0,
    host: '127.0.0.1',
    subgraphUrls: Object.fromEntries(Object.entries(stack.subgraphs).map(([name, subgraph]) => [name, subgraph.url])),
    customerTokenPublicKey: stack.keys.authToken.publicKey,
    identitySigner: stack.signer,
    production: false,
    ...overrides,
  };
}

export { withDatabase };

/**
 * A gateway over five subgraphs running in the test's process and an orders subgraph running as
 * a child process on `ordersPort` (the tests that kill and restart orders). `subgraphs` in the
 * order accounts, catalog, inventory, payments, shipping.
 */
export function startGatewayWithOrdersChild(
  subgraphs: readonly RunningContextSubgraph[],
  ordersPort: number,
  keys: { authToken: { publicKey: CryptoKey }; gatewayIdentity: { privateKey: CryptoKey } },
): Promise<RunningGateway> {
  const [accounts, catalog, inventory, payments, shipping] = subgraphs as [RunningContextSubgraph, RunningContextSubgraph, RunningContextSubgraph, RunningContextSubgraph, RunningContextSubgraph];
  return startGateway({
    supergraphSdl: readFileSync(new URL('../../schema/supergraph.graphql', import.meta.url), 'utf8'),
    port: 0,
    host: '127.0.0.1',
    subgraphUrls: { accounts: accounts.url, catalog: catalog.url, inventory: inventory.url, orders: `http://127.0.0.1:${ordersPort}/graphql`, payments: payments.url, shipping: shipping.url },
    customerTokenPublicKey: keys.authToken.publicKey,
    identitySigner: new GatewayIdentitySigner(keys.gatewayIdentity.privateKey),
    production: false,
  });
}
