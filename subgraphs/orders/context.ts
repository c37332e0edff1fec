/** What a request of the orders subgraph works with. */
import type DataLoader from 'dataloader';
import type { RequestScope } from '../../platform/subgraph/server.ts';
import type { CustomerOrdersKey, OrderPage, OrderReadModel, OrderView } from './infrastructure/order-read-model.ts';
import type { OrderSummary, TimelineEntry } from './projections/order-summary.ts';
import type { OrderProjectionFeed } from './subscriptions/projection-feed.ts';
import type { OrdersUseCases } from './use-cases/index.ts';

export interface OrdersContext extends RequestScope {
  orders: OrdersUseCases;
  readModel: OrderReadModel;
  orderLoader: DataLoader<string, OrderView | null>;
  /** Pages of customers' orders: every Customer of one entity fetch in one statement. */
  customerOrdersLoader: DataLoader<CustomerOrdersKey, OrderPage, string>;
  timelineLoader: DataLoader<string, TimelineEntry[]>;
  streamLoader: DataLoader<string, { summary: OrderSummary | null; timeline: TimelineEntry[] }>;
  /** The process's LISTEN on `order_projections`, shared by every subscription. */
  projectionFeed: OrderProjectionFeed;
}
