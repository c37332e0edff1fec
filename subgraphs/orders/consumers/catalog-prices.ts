/**
 * Orders keeps its own copy of catalog prices, from the catalog's events, so placing an order
 * never calls the catalog. Each event carries what it changes. Orders consumes every event type
 * of a Product, so it uses 'strict' ordering: an event that arrives before an earlier version of
 * its product is redelivered until that version has been applied (and parked if it never is),
 * never applied out of order, so a late ProductCreated cannot be skipped for good.
 */
import type { ProductCreated, ProductDiscontinued, ProductPriceChanged } from '../../../platform/events/contracts/catalog.ts';
import type { EventEnvelope } from '../../../platform/events/envelope.ts';
import { handleOnce } from '../../../platform/events/inbox.ts';
import type { OrdersDatabase, OrdersTransaction } from '../infrastructure/database.ts';

/** The durable consumer of the orders context on the bus (the price copy and the saga share it). */
export const ordersConsumerName = 'orders';

export type OrdersEventHandler = (event: EventEnvelope) => Promise<void>;

export function priceCopyHandlers(db: OrdersDatabase): Record<string, OrdersEventHandler> {
  const applyOnce = <P>(effect: (tx: OrdersTransaction, payload: P, version: number) => Promise<unknown>): OrdersEventHandler =>
    async (event) => {
      await handleOnce(db, ordersConsumerName, event, async (tx) => void (await effect(tx, event.payload as P, event.aggregateVersion)), {
        ordering: 'strict',
      });
    };

  return {
    ProductCreated: applyOnce<ProductCreated>((tx, p, version) =>
      tx.productPrice.upsert({
        where: { productId: p.productId },
        create: { productId: p.productId, price: p.price, currency: p.currency, name: p.name, version },
        update: { price: p.price, currency: p.currency, name: p.name, version },
      }),
    ),
    ProductPriceChanged: applyOnce<ProductPriceChanged>((tx, p, version) =>
      tx.productPrice.upsert({
        where: { productId: p.productId },
        // Its ProductCreated may predate this consumer: the price is known, the name not yet.
        create: { productId: p.productId, price: p.price, currency: p.currency, version },
        update: { price: p.price, currency: p.currency, version },
      }),
    ),
    ProductDiscontinued: applyOnce<ProductDiscontinued>((tx, p, version) =>
      tx.productPrice.upsert({
        where: { productId: p.productId },
        create: { productId: p.productId, discontinued: true, version },
        update: { discontinued: true, version },
      }),
    ),
  };
}
