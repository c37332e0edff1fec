/** GraphQL → use cases for orders. */
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { toGlobalId } from '../../platform/graphql/global-ids.ts';
import { requireSignedIn } from '../../platform/identity/identity.ts';
import type { OrdersContext } from './context.ts';
import { viewOfOrder, type OrderView } from './infrastructure/order-read-model.ts';
import { timelineOf } from './projections/order-summary.ts';
import { myOrderUpdates, orderStatusChanges } from './subscriptions/order-updates.ts';
import type { PlaceOrderInput } from './use-cases/place-order.ts';
import { checkOrderId, findOrder, listCustomerOrders, readableOrder } from './use-cases/read-orders.ts';

export const resolvers: GraphQLResolverMap<OrdersContext> = {
  Query: {
    order: (_root, { id }: { id: string }, ctx) => findOrder(ctx.orderLoader, ctx.identity, id),
  },
  Mutation: {
    placeOrder: async (_root, { input }: { input: PlaceOrderInput }, ctx) =>
      viewOfOrder(await ctx.orders.placeOrder(requireSignedIn(ctx.identity), input, ctx.causation)),
    cancelOrder: async (_root, { id }: { id: string }, ctx) => viewOfOrder(await ctx.orders.cancelOrder(ctx.identity, checkOrderId(id), ctx.causation)),
    requestReturn: async (_root, { id }: { id: string }, ctx) => viewOfOrder(await ctx.orders.requestReturn(ctx.identity, checkOrderId(id), ctx.causation)),
    receiveReturn: async (_root, { id }: { id: string }, ctx) => viewOfOrder(await ctx.orders.receiveReturn(ctx.identity, checkOrderId(id), ctx.causation)),
  },
  Subscription: {
    orderStatusChanged: {
      subscribe: (_root: unknown, { orderId }: { orderId: string }, ctx: OrdersContext) =>
        orderStatusChanges({ feed: ctx.projectionFeed, readModel: ctx.readModel, identity: ctx.identity, ...(ctx.resume ? { resume: ctx.resume } : {}) }, orderId),
    },
    myOrderUpdates: {
      subscribe: (_root: unknown, _args: unknown, ctx: OrdersContext) =>
        myOrderUpdates({ feed: ctx.projectionFeed, readModel: ctx.readModel, identity: ctx.identity, ...(ctx.resume ? { resume: ctx.resume } : {}) }),
    },
  },
  Order: {
    __resolveReference: async (reference: { id: string }, ctx: OrdersContext) => readableOrder(ctx.identity, await ctx.orderLoader.load(reference.id)),
    id: (order: OrderView) => order.orderId,
    nodeId: (order: OrderView) => toGlobalId('Order', order.orderId),
    items: (order: OrderView) => order.items.map((line) => ({ product: { id: line.productId }, quantity: line.quantity, unitPrice: line.unitPrice })),
    rejectedLines: (order: OrderView) => order.rejectedLines.map((line) => ({ product: { id: line.productId }, requested: line.requested, available: line.available })),
    timeline: async (order: OrderView, _args, ctx) =>
      timelineOf(order.timelineAsOf ?? (order.timelineSource === 'stream' ? (await ctx.streamLoader.load(order.orderId)).timeline : await ctx.timelineLoader.load(order.orderId))),
    cancellation: (order: OrderView) =>
      order.cancellation && { requestedAt: order.cancellation.requestedAt, outcome: order.cancellation.outcome, refusalReason: order.cancellation.refusal, resolvedAt: order.cancellation.resolvedAt },
    customer: (order: OrderView) => ({ id: order.customerId }),
  },
  Customer: {
    __resolveReference: (reference: { id: string }) => ({ id: reference.id }),
    orders: (customer: { id: string }, args: { first?: number; after?: string }, ctx) => listCustomerOrders(ctx.customerOrdersLoader, ctx.identity, customer.id, args),
  },
};
