/**
 * Who consumes what: one durable consumer per consuming context, with every event type it
 * handles. Pure data, like contexts.ts, because every process declares all of them before it
 * publishes anything — a consumer receives only events published after it was declared, and on
 * a fresh deployment the publisher may well start before the consumer.
 */
import type { EventBus, SubscribeOptions } from './bus.ts';
import { inventorySagaCommands, paymentsSagaCommands, sagaReplyTypes, shippingSagaCommands } from './contracts/order-saga.ts';

export interface ConsumerDeclaration {
  /** Durable consumer name on the bus: the consuming context's name. */
  name: string;
  options: SubscribeOptions;
}

/** The catalog's new products, and the order saga's stock commands (contracts/order-saga.ts `inventorySagaCommands`). */
export const inventoryConsumer: ConsumerDeclaration = { name: 'inventory', options: { types: ['ProductCreated', ...inventorySagaCommands] } };

/**
 * The order saga's payment commands. Four at a time: a provider may take seconds to answer
 * (`tok_slow`), and other orders' payments must not queue behind it. Commands of one order do not
 * race: the saga sends the next one only after the reply to the last, except a compensation
 * (VoidPayment) overtaking a slow authorization, which handle-payment-command.ts resolves.
 */
export const paymentsConsumer: ConsumerDeclaration = { name: 'payments', options: { types: paymentsSagaCommands, concurrency: 4 } };

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
