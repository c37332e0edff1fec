/**
 * The orders subgraph as the gateway calls it (a gateway-signed identity on every request), on its
 * own fresh database and a real event bus (NATS); the catalog's prices reach it only as events.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { withDatabase } from '../../platform/config.ts';
import { applyMigrations, migrationsDirOf } from '../../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';
import { createEnvelope } from '../../platform/events/envelope.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader } from '../../platform/identity/gateway-identity.ts';
import type { Identity } from '../../platform/identity/identity.ts';
import { startOrdersSubgraph, type OrdersSubgraphOptions, type RunningOrdersSubgraph } from '../../subgraphs/orders/subgraph.ts';
import { graphql, type GraphQLResponse } from './graphql.ts';
import { generateTestKeys, startTestBus, type TestBus } from './stack.ts';

export interface OrdersSubgraphUnderTest {
  databaseUrl: string;
  testBus: TestBus;
  orders: RunningOrdersSubgraph;
  /** A small pool on the subgraph's database, to look at (or tamper with) what it wrote. */
  sql: pg.Pool;
  /** Calls the subgraph (or `url`) as the gateway would on behalf of `who`. */
  call(who: Identity, query: string, variables?: Record<string, unknown>, url?: string): Promise<GraphQLResponse>;
  /** Stops the subgraph and the bus and drops the database; safe after a partial start. */
  stop(): Promise<void>;
}

/**
 * Starts the orders subgraph on a fresh database named `<runPrefix>_<label>_<random>`, with the
 * migrations applied, on a NATS test bus; `options` are added to the subgraph's (e.g. its saga).
 */
export async function startOrdersSubgraphUnderTest(label: string, options: Partial<OrdersSubgraphOptions> = {}): Promise<OrdersSubgraphUnderTest> {
  const keys = await generateTestKeys();
  const signer = new GatewayIdentitySigner(keys.gatewayIdentity.privateKey);
  const databaseUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_${label}_${randomBytes(4).toString('hex')}`);
  await ensureDatabase(databaseUrl);
  await applyMigrations({ databaseUrl, migrationsDir: migrationsDirOf('orders' as never) });
  const sql = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  let testBus: TestBus | undefined;
  let orders: RunningOrdersSubgraph | undefined;
  const stop = async () => {
    await orders?.stop();
    await testBus?.bus.close();
    await testBus?.dispose();
    await sql.end();
    await dropDatabase(databaseUrl);
  };
  try {
    testBus = await startTestBus('nats');
    orders = await startOrdersSubgraph({
      databaseUrl,
      eventBus: testBus.bus,
      relay: { pollIntervalMs: 200 },
      projector: { pollIntervalMs: 100 },
      port: 0,
      host: '127.0.0.1',
      gatewayPublicKey: keys.gatewayIdentity.publicKey,
      production: false,
      ...options,
    });
  } catch (error) {
    await stop();
    throw error;
  }
  const running = orders;
  return {
    databaseUrl,
    testBus,
    orders: running,
    sql,
    call: async (who, query, variables = {}, url = running.url) =>
      graphql(url, { query, variables, headers: { [gatewayIdentityHeader]: await signer.sign(who, 'orders') } }),
    stop,
  };
}

/** A catalog event of a product, as the catalog's relay publishes it. */
export function productEvent(type: string, productId: string, version: number, payload: Record<string, unknown>) {
  return createEnvelope('catalog', { type, aggregateType: 'Product', aggregateId: productId, aggregateVersion: version, payload: { productId, ...payload } }, {
    correlationId: randomUUID(),
    causationId: randomUUID(),
  });
}
