/**
 * Who consumes what: one durable consumer per consuming context, with every event type it
 * handles. Pure data, like contexts.ts, because every process declares all of them before it
 * publishes anything — a consumer receives only events published after it was declared, and on
 * a fresh deployment the publisher may well start before the consumer.
 */
import type { EventBus, SubscribeOptions } from './bus.ts';
import { paymentsSagaCommands, sagaReplyTypes, shippingSagaCommands } from './contracts/order-saga.ts';

export interface ConsumerDeclaration {
  /** Durable consumer name on the bus: the consuming context's name. */
  name: string;
  options: SubscribeOptions;
}

/** The catalog's new products, and the order saga's stock commands (contracts/order-saga.ts `inventorySagaCommands`). */
export const inventoryConsumer: ConsumerDeclaration = { name: 'inventory', options: { types: ['ProductCreated', 'ReserveStock', 'ReleaseStock', 'CommitStock'] } };

/** The order saga's payment commands. */
export const paymentsConsumer: ConsumerDeclaration = { name: 'payments', options: { types: paymentsSagaCommands } };

/** The order saga's shipment commands. */
export const shippingConsumer: ConsumerDeclaration = { name: 'shipping', options: { types: shippingSagaCommands } };

/** Orders keeps its copy of catalog prices and runs the order saga on the replies. */
export const ordersConsumer: ConsumerDeclaration = {
  name: 'orders',
  options: { types: ['ProductCreated', 'ProductPriceChanged', 'ProductDiscontinued', ...sagaReplyTypes] },
};

export const consumerDeclarations: readonly ConsumerDeclaration[] = [inventoryConsumer, ordersConsumer, paymentsConsumer, shippingConsumer];

export async function declareConsumers(bus: EventBus): Promise<void> {
  for (const { name, options } of consumerDeclarations) await bus.declareConsumer(name, options);
}
