/**
 * The events the catalog publishes about products: past tense, carrying the state other
 * contexts need (orders keeps its own copy of prices from them), versioned per product.
 */
import type { ProductCreated, ProductDiscontinued, ProductPriceChanged } from '../../../platform/events/contracts/catalog.ts';
import { createEnvelope, type Causation, type EventEnvelope } from '../../../platform/events/envelope.ts';

export const productAggregate = 'Product';

export type ProductEvent =
  | { type: 'ProductCreated'; payload: ProductCreated }
  | { type: 'ProductPriceChanged'; payload: ProductPriceChanged }
  | { type: 'ProductDiscontinued'; payload: ProductDiscontinued };

export function productEvent(event: ProductEvent, productId: string, version: number, causation: Causation): EventEnvelope<ProductEvent['payload']> {
  return createEnvelope('catalog', { type: event.type, aggregateType: productAggregate, aggregateId: productId, aggregateVersion: version, payload: event.payload }, causation);
}
