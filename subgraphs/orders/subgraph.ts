/**
 * Starts the orders subgraph: the Order aggregate (event-sourced), its read models kept by the
 * projector in the background, and the durable `orders` consumer (catalog prices, and the
 * saga's replies once the saga is plugged in through `saga` or the hooks).
 */
import type { EventBus, EventHandler } from '../../platform/events/bus.ts';
import {
  startContextSubgraph,
  type ContextConsumer,
  type ContextSubgraphOptions,
  type RunningContextSubgraph,
} from '../../platform/subgraph/context-subgraph.ts';
import { createServiceMetrics, type ServiceMetrics } from '../../platform/metrics/metrics.ts';
import type { RequestScope } from '../../platform/subgraph/server.ts';
import { ordersConsumerName, priceCopyHandlers } from './consumers/catalog-prices.ts';
import type { OrdersContext } from './context.ts';
import { connectOrdersDatabase, type OrdersDatabase } from './infrastructure/database.ts';
import { OrderReadModel } from './infrastructure/order-read-model.ts';
import { OrderStore } from './infrastructure/order-store.ts';
import { PriceList } from './infrastructure/price-list.ts';
import { OrderProjector, type OrderProjectorOptions } from './projections/projector.ts';
import { resolvers } from './resolvers.ts';
import { OrderProjectionFeed } from './subscriptions/projection-feed.ts';
import { cancelDirectly, type RequestCancellation } from './use-cases/cancel-order.ts';
import { ordersUseCases } from './use-cases/index.ts';
import { defaultReturnWindowDays, receiveDirectly, type ReceiveReturn } from './use-cases/returns.ts';
import type { PlaceOrderHook } from './use-cases/place-order.ts';

/** What the orders context is built on, for the saga to use. */
export interface OrdersServices {
  db: OrdersDatabase;
  store: OrderStore;
  clock: () => Date;
  databaseUrl: string;
  eventBus?: EventBus;
  /** The process's metrics (/metrics), for the saga's own. */
  metrics: ServiceMetrics;
}

/** The saga's hooks into the orders context. */
export interface SagaWiring {
  /** Runs in placeOrder's transaction after OrderPlaced (starts the saga). */
  placeOrderHook?: PlaceOrderHook;
  /** Replaces cancelling at once (the default) when a customer cancels. */
  requestCancellation?: RequestCancellation;
  /** Replaces recording the arrival alone (the default) when an admin receives a returned parcel. */
  receiveReturn?: ReceiveReturn;
  /** Handlers of more event types for the durable `orders` consumer (the saga's replies). */
  eventHandlers?: Record<string, EventHandler>;
  /** Called first when the subgraph stops (e.g. to stop a deadline timer). */
  stop?: () => Promise<void>;
}

export interface OrdersSubgraphOptions extends ContextSubgraphOptions, Omit<SagaWiring, 'stop'> {
  /**
   * Builds the saga's hooks from the context's own database and store, before the subgraph
   * starts. Hooks given directly in these options take precedence over the ones it returns.
   */
  saga?: (services: OrdersServices) => SagaWiring | Promise<SagaWiring>;
  /** @default 20 (see OrderStore) */
  snapshotEvery?: number;
  /** The projector's options, or false to run without one (reads then come from the streams). */
  projector?: false | Partial<Omit<OrderProjectorOptions, 'databaseUrl'>>;
  /** @default () => new Date() */
  clock?: () => Date;
  /** How long after delivery a customer may ask to return an order (ORDER_RETURN_WINDOW_DAYS). @default 30 days */
  returnWindowMs?: number;
}

export interface RunningOrdersSubgraph extends RunningContextSubgraph {
  store: OrderStore;
  /** The LISTEN on `order_projections` that feeds the subscriptions of this process. */
  projectionFeed: OrderProjectionFeed;
  projector?: OrderProjector;
}

export async function startOrdersSubgraph(options: OrdersSubgraphOptions): Promise<RunningOrdersSubgraph> {
  const { db, statements } = connectOrdersDatabase(options.databaseUrl);
  const clock = options.clock ?? (() => new Date());
  const store = new OrderStore(db, options.snapshotEvery === undefined ? {} : { snapshotEvery: options.snapshotEvery });
  const metrics = createServiceMetrics('orders');
  const services: OrdersServices = { db, store, clock, databaseUrl: options.databaseUrl, metrics, ...(options.eventBus ? { eventBus: options.eventBus } : {}) };
  const projectionFeed = new OrderProjectionFeed({ databaseUrl: options.databaseUrl });
  let saga: SagaWiring = {};
  let running: RunningContextSubgraph;
  try {
    saga = (await options.saga?.(services)) ?? {};
    running = await startContextSubgraph<OrdersContext>(options, {
      name: 'orders',
      metrics,
      moduleUrl: import.meta.url,
      db,
      statements,
      resolvers,
      createContext: requestContext(services, options, saga, projectionFeed),
      subscriptions: true,
      consumers: [ordersConsumer({ ...priceCopyHandlers(db), ...saga.eventHandlers, ...options.eventHandlers })],
    });
  } catch (error) {
    // startContextSubgraph cleans up after itself; what was started before it is ours to stop.
    await saga.stop?.();
    await db.$disconnect().catch(() => {});
    throw error;
  }
  const projector = options.projector === false ? undefined : new OrderProjector({ ...options.projector, databaseUrl: options.databaseUrl }).start();
  return {
    ...running,
    store,
    ...(projector ? { projector } : {}),
    projectionFeed,
    async stop() {
      await saga.stop?.();
      await projector?.stop();
      await running.stop();
      await projectionFeed.close();
    },
  };
}

/** The use cases, bound once, and the per-request loaders. */
function requestContext(
  services: OrdersServices,
  options: OrdersSubgraphOptions,
  saga: SagaWiring,
  projectionFeed: OrderProjectionFeed,
): (scope: RequestScope) => OrdersContext {
  const { db, store, clock } = services;
  const onPlaced = options.placeOrderHook ?? saga.placeOrderHook;
  const orders = ordersUseCases({
    db,
    store,
    prices: new PriceList(db),
    clock,
    requestCancellation: options.requestCancellation ?? saga.requestCancellation ?? cancelDirectly(store, clock),
    receiveReturn: options.receiveReturn ?? saga.receiveReturn ?? receiveDirectly(store, clock),
    returnWindowMs: options.returnWindowMs ?? defaultReturnWindowDays * 86_400_000,
    ...(onPlaced ? { onPlaced } : {}),
  });
  const readModel = new OrderReadModel(db, store);
  return (scope) => ({
    ...scope,
    orders,
    readModel,
    orderLoader: readModel.createOrderLoader(),
    customerOrdersLoader: readModel.createCustomerOrdersLoader(),
    timelineLoader: readModel.createTimelineLoader(),
    streamLoader: readModel.createStreamLoader(),
    projectionFeed,
  });
}

/** The one durable consumer of the orders context, dispatching by event type. */
function ordersConsumer(handlers: Record<string, EventHandler>): ContextConsumer {
  return {
    name: ordersConsumerName,
    options: { types: Object.keys(handlers) },
    handle: async (event, delivery) => handlers[event.type]?.(event, delivery),
  };
}
