/** What every context's `start…Subgraph` takes and returns. */
import { createEventMetrics } from '../metrics/event-metrics.ts';
import { createServiceMetrics, type ServiceMetrics } from '../metrics/metrics.ts';
import { createPoolMetrics } from '../metrics/pool-metrics.ts';
import { prismaPoolsOf } from '../database/prisma.ts';
import { readFileSync } from 'node:fs';
import { parse, type DocumentNode } from 'graphql';
import type { IncomingMessage } from 'node:http';
import type { ApolloServerPlugin } from '@apollo/server';
import type { CryptoKey } from 'jose';
import type { StatementCounter } from '../database/statements.ts';
import type { EventBus, EventHandler, SubscribeOptions, Subscription } from '../events/bus.ts';
import { natsRelayPacing } from '../events/bus/nats-jetstream.ts';
import { declareConsumers } from '../events/consumers.ts';
import { loggedEventHandler } from '../logging/event-logs.ts';
import { OutboxRelay, type OutboxRelayOptions } from '../events/relay.ts';
import { tracedEventHandler, tracedPublish } from '../tracing/events.ts';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { WriteQueue } from '../database/write-queue.ts';
import type { Route } from '../http/graphql-http.ts';
import { queueMutations } from './mutation-queue.ts';
import { busCheck, databaseCheck } from './readiness.ts';
import { startSubgraph, type RequestScope, type RunningSubgraph } from './server.ts';

export interface ContextSubgraphOptions {
  databaseUrl: string;
  /**
   * The event bus. When given, the context's outbox relay publishes to it and its consumers
   * subscribe to it; without it the context serves GraphQL only (its events wait in the outbox).
   */
  eventBus?: EventBus;
  /** Options of the outbox relay (tests shorten its intervals). */
  relay?: Partial<Omit<OutboxRelayOptions, 'databaseUrl' | 'publish'>>;
  /** 0 picks a free port. */
  port: number;
  host?: string;
  gatewayPublicKey: CryptoKey;
  production: boolean;
}

export interface RunningContextSubgraph extends RunningSubgraph {
  /** SQL statements sent to the context's database so far. */
  statements: StatementCounter;
  /** The outbox relay, when an event bus was given. */
  relay?: OutboxRelay;
}

/** A durable consumer of other contexts' events, run by the context that owns it. */
export interface ContextConsumer {
  /** Durable consumer name on the bus, e.g. `inventory`. */
  name: string;
  options: SubscribeOptions;
  handle: EventHandler;
}

/** The `schema.graphql` that sits beside the calling module. */
export function loadTypeDefs(moduleUrl: string): DocumentNode {
  return parse(readFileSync(new URL('./schema.graphql', moduleUrl), 'utf8'));
}

interface ContextDatabase {
  $queryRaw(query: TemplateStringsArray): Promise<unknown>;
  $disconnect(): Promise<void>;
}

export interface ContextSubgraphSpec<TContext extends RequestScope> {
  /** The process's metrics (the context may register its own in them first). @default createServiceMetrics(name) */
  metrics?: ServiceMetrics;
  name: string;
  /** `import.meta.url` of the context's module; its `schema.graphql` sits beside it. */
  moduleUrl: string;
  db: ContextDatabase;
  statements: StatementCounter;
  resolvers: GraphQLResolverMap<TContext>;
  /** `request` is the HTTP request (absent on a subscription socket). */
  createContext: (scope: RequestScope, request?: IncomingMessage) => TContext;
  /** The context's own HTTP routes beside `/graphql` (server.ts). */
  routes?: Record<string, Route>;
  /** The context's own Apollo Server plugins (server.ts). */
  plugins?: ApolloServerPlugin<TContext>[];
  /** The context's consumers of other contexts' events. */
  consumers?: readonly ContextConsumer[];
  /** Serves the schema's Subscription fields over graphql-ws (see subscriptions.ts). */
  subscriptions?: boolean;
}

/**
 * Starts a context's subgraph over its database, and with an event bus its outbox relay and its
 * consumers. Ready while the database answers and the bus is connected. Stopping stops consumers first (no new
 * effects), then the relay (what is committed stays in the outbox), then HTTP and the database.
 */
export async function startContextSubgraph<TContext extends RequestScope>(
  options: ContextSubgraphOptions,
  spec: ContextSubgraphSpec<TContext>,
): Promise<RunningContextSubgraph> {
  const metrics = spec.metrics ?? createServiceMetrics(spec.name);
  createPoolMetrics(metrics.registry, () => prismaPoolsOf(options.databaseUrl));
  const running = await startSubgraph<TContext>({
    name: spec.name,
    metrics,
    typeDefs: loadTypeDefs(spec.moduleUrl),
    // Mutations wait their turn in the context's write queue; beyond it, SERVICE_OVERLOADED (docs/decisions/0016).
    resolvers: queueMutations(spec.resolvers, new WriteQueue({ name: spec.name })),
    createContext: spec.createContext,
    gatewayPublicKey: options.gatewayPublicKey,
    // Ready while its database answers and its bus is connected (readiness.ts).
    readiness: [databaseCheck(() => spec.db.$queryRaw`SELECT 1`), ...(options.eventBus ? [busCheck(options.eventBus)] : [])],
    production: options.production,
    port: options.port,
    ...(options.host ? { host: options.host } : {}),
    ...(spec.subscriptions ? { subscriptions: true } : {}),
    ...(spec.routes ? { routes: spec.routes } : {}),
    ...(spec.plugins ? { plugins: spec.plugins } : {}),
  });
  const bus = options.eventBus;
  const subscriptions: Subscription[] = [];
  let relay: OutboxRelay | undefined;
  try {
    if (bus) {
      // Every consumer exists before this context publishes anything (see events/consumers.ts).
      await declareConsumers(bus);
      const events = createEventMetrics(metrics.registry, { db: spec.db, bus, consumers: (spec.consumers ?? []).map((consumer) => consumer.name) });
      for (const consumer of spec.consumers ?? []) subscriptions.push(await bus.subscribe(consumer.name, consumer.options, events.consuming(consumer.name, loggedEventHandler(consumer.name, tracedEventHandler(spec.name, consumer.name, consumer.handle)))));
      relay = new OutboxRelay({
        // Pipelined on NATS: republishing an outbox after a broker loss (decision 0018).
        ...(bus.kind === 'nats' ? natsRelayPacing : {}),
        ...options.relay, name: spec.name, databaseUrl: options.databaseUrl, publish: events.publishing(tracedPublish(spec.name, (event) => bus.publish(event))),
        // What the broker lost is published again from the outbox (docs/decisions/0018).
        brokerStoredSince: () => bus.storedSince(),
      }).start();
    }
  } catch (error) {
    await Promise.all(subscriptions.map((subscription) => subscription.stop()));
    await relay?.stop();
    await running.stop();
    await spec.db.$disconnect();
    throw error;
  }
  return {
    ...running,
    statements: spec.statements,
    ...(relay ? { relay } : {}),
    async stop() {
      await Promise.all(subscriptions.map((subscription) => subscription.stop()));
      await relay?.stop();
      await running.stop();
      await spec.db.$disconnect();
    },
  };
}
