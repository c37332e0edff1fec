/**
 * ONE context's subgraph on a fresh database migrated from its own `prisma/<context>/migrations`,
 * with a real test bus and an observer on it: how a context is tested on its own, talking to it
 * as the others would (commands and events on the bus, `_entities` as the gateway). It needs
 * nothing of the platform's context list, so a context can be tested before it is wired in.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { inject } from 'vitest';
import { withDatabase } from '../../platform/config.ts';
import { applyMigrations } from '../../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';
import type { EventBus, Subscription } from '../../platform/events/bus.ts';
import { commandId, type SagaCommandType } from '../../platform/events/contracts/order-saga.ts';
import { createEnvelope, type EventEnvelope } from '../../platform/events/envelope.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader } from '../../platform/identity/gateway-identity.ts';
import type { Identity } from '../../platform/identity/identity.ts';
import type { ContextSubgraphOptions, RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import { graphql, type GraphQLResponse } from './graphql.ts';
import { freshDatabaseName } from './run.ts';
import { generateTestKeys, startTestBus, type TestBusKind } from './stack.ts';

export interface ContextHarnessOptions {
  /** The context's name: its migrations are `prisma/<context>/migrations`. */
  context: string;
  bus: TestBusKind;
  /** The context's `start…Subgraph`, given the harness's database, bus and keys. */
  start: (options: ContextSubgraphOptions) => Promise<RunningContextSubgraph>;
  /** Event types the observer records, from before the subgraph starts. */
  observe: readonly string[];
  /** @default false */
  production?: boolean;
}

export interface ContextHarness {
  subgraph: RunningContextSubgraph;
  databaseUrl: string;
  bus: EventBus;
  /** Every event of the observed types, in the order the observer received them. */
  observed: EventEnvelope[];
  /** Publishes as another context would. */
  publish(event: EventEnvelope): Promise<void>;
  /** The first observed event that matches, waiting up to `timeoutMs` for it. */
  waitForEvent(what: string, match: (event: EventEnvelope) => boolean, timeoutMs?: number): Promise<EventEnvelope>;
  /** GraphQL straight to the subgraph, as the gateway sends it: with `identity` signed. */
  query(request: { query: string; variables?: Record<string, unknown>; identity?: Identity | null }): Promise<GraphQLResponse>;
  /** SQL on the context's database. */
  sql<T extends Record<string, unknown> = Record<string, unknown>>(text: string, values?: unknown[]): Promise<T[]>;
  stop(): Promise<void>;
}

export async function startContextHarness(options: ContextHarnessOptions): Promise<ContextHarness> {
  const databaseUrl = withDatabase(inject('testServerUrl'), freshDatabaseName(inject('runPrefix'), options.context));
  await ensureDatabase(databaseUrl);
  await applyMigrations({ databaseUrl, migrationsDir: fileURLToPath(new URL(`../../prisma/${options.context}/migrations`, import.meta.url)) });
  const keys = await generateTestKeys();
  const signer = new GatewayIdentitySigner(keys.gatewayIdentity.privateKey);
  const testBus = await startTestBus(options.bus);
  const observed: EventEnvelope[] = [];
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  let observer: Subscription | undefined;
  let subgraph: RunningContextSubgraph | undefined;
  const stop = async () => {
    await observer?.stop();
    await subgraph?.stop();
    await pool.end();
    await testBus.bus.close();
    await testBus.dispose();
    await dropDatabase(databaseUrl);
  };
  try {
    // Declared before the context can publish: a consumer gets only events published after.
    observer = await testBus.bus.subscribe(`observer${randomBytes(4).toString('hex')}`, { types: options.observe }, async (event) => void observed.push(event));
    subgraph = await options.start({
      databaseUrl,
      eventBus: testBus.bus,
      relay: { pollIntervalMs: 200 },
      port: 0,
      host: '127.0.0.1',
      gatewayPublicKey: keys.gatewayIdentity.publicKey,
      production: options.production ?? false,
    });
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  const running = subgraph;
  return {
    subgraph: running,
    databaseUrl,
    bus: testBus.bus,
    observed,
    publish: (event) => testBus.bus.publish(event),
    async waitForEvent(what, match, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = observed.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; observed: ${observed.map((e) => `${e.type}(${e.aggregateId})`).join(', ') || 'nothing'}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async query({ query, variables, identity }) {
      const headers: Record<string, string> = identity === null ? {} : { [gatewayIdentityHeader]: await signer.sign(identity ?? { customerId: null, roles: [] }, options.context) };
      return graphql(running.url, { query, ...(variables ? { variables } : {}), headers });
    },
    sql: async (text, values) => (await pool.query(text, values)).rows,
    stop,
  };
}

/**
 * A saga command as the orders context sends it: `source: 'orders'`, the order as aggregate and
 * the deterministic `commandId` as event id (override `eventId` to send "another" command).
 */
export function sagaCommand<TPayload extends { orderId: string }>(
  type: SagaCommandType,
  payload: TPayload,
  aggregateVersion: number,
  overrides: Partial<Pick<EventEnvelope, 'eventId' | 'correlationId'>> = {},
): EventEnvelope {
  const envelope = createEnvelope(
    'orders',
    { type, aggregateType: 'Order', aggregateId: payload.orderId, aggregateVersion, payload: payload as unknown as Record<string, unknown> },
    { correlationId: overrides.correlationId ?? randomUUID(), causationId: randomUUID() },
  );
  return { ...envelope, eventId: overrides.eventId ?? commandId(payload.orderId, type) };
}
