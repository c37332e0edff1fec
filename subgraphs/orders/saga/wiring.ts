/**
 * Plugs the order saga into the orders subgraph: placing an order starts it (same transaction),
 * a customer's cancellation goes through it (so it compensates), the replies of inventory,
 * payments and shipping move it (through the inbox), and a sweeper enforces step deadlines in
 * the time the platform was working (deadline-sweeper.ts).
 */
import { sagaReplyTypes } from '../../../platform/events/contracts/order-saga.ts';
import type { EventEnvelope } from '../../../platform/events/envelope.ts';
import { handleOnce } from '../../../platform/events/inbox.ts';
import type { EventHandler } from '../../../platform/events/bus.ts';
import { ordersConsumerName } from '../consumers/catalog-prices.ts';
import type { OrdersTransaction } from '../infrastructure/order-store.ts';
import type { OrdersServices, SagaWiring } from '../subgraph.ts';
import { DeadlineSweeper, type DeadlineSweeperOptions } from './deadline-sweeper.ts';
import { OrderSagaRunner, type SagaRunnerOptions } from './saga-runner.ts';

/** The runner's options (step timeout) and the deadline sweeper's (interval, outage threshold). */
export type OrderSagaOptions = SagaRunnerOptions & DeadlineSweeperOptions;

export function orderSaga(options: OrderSagaOptions = {}): (services: OrdersServices) => SagaWiring {
  return ({ db, store, eventBus, metrics }) => {
    const runner = new OrderSagaRunner<OrdersTransaction>(db, store, { ...options, registry: metrics.registry });
    const replies = eventBus ? { bus: eventBus, consumer: ordersConsumerName } : undefined;
    const sweeper = new DeadlineSweeper<OrdersTransaction>(db, runner, replies, options).start();
    const onReply: EventHandler = async (event: EventEnvelope) => {
      // Replies come from several aggregates (StockReservation, Payment, Shipment), each with its
      // own versions, and orders consumes every event type of each: strict per aggregate, so a
      // StockReleased can never overtake the StockReserved it undoes.
      await handleOnce(db, ordersConsumerName, event, (tx) => runner.onReply(tx, event), { ordering: 'strict' });
    };
    return {
      placeOrderHook: (tx, placed, causation) =>
        runner.start(
          tx,
          {
            orderId: placed.order.id,
            customerId: placed.order.customerId,
            lines: placed.order.lines.map(({ productId, quantity }) => ({ productId, quantity })),
            amount: placed.order.total,
            currency: placed.order.currency,
            paymentToken: placed.paymentToken,
            shippingAddress: placed.order.shippingAddress,
          },
          causation,
        ),
      requestCancellation: (orderId, causation) => runner.requestCancellation(orderId, causation),
      receiveReturn: (orderId, causation) => runner.receiveReturn(orderId, causation),
      eventHandlers: Object.fromEntries(sagaReplyTypes.map((type) => [type, onReply])),
      stop: () => sweeper.stop(),
    };
  };
}
