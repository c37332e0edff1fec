/** The events inventory publishes about stock, versioned per product's stock item. */
import type { StockAdjusted } from '../../../platform/events/contracts/inventory.ts';
import { createEnvelope, type Causation, type EventEnvelope } from '../../../platform/events/envelope.ts';

export function stockAdjusted(payload: StockAdjusted, version: number, causation: Causation): EventEnvelope<StockAdjusted> {
  return createEnvelope('inventory', { type: 'StockAdjusted', aggregateType: 'StockItem', aggregateId: payload.productId, aggregateVersion: version, payload }, causation);
}
