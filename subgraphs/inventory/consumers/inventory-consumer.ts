/**
 * Inventory's single durable consumer, `inventory` (declared in platform/events/consumers.ts):
 * the catalog's ProductCreated and the order saga's stock commands, each applied once through
 * the inbox. Ordering is monotonic per aggregate: a product's other events and an order's other
 * commands (payments, shipping) are not ours, so version gaps are normal; a command older than
 * one already applied to the order is stale and skipped — a ReserveStock that arrives after the
 * order's ReleaseStock reserves nothing, a ReceiveReturnedStock after its RestockReturn holds
 * nothing.
 */
import type { EventEnvelope } from '../../../platform/events/envelope.ts';
import { inventoryConsumer } from '../../../platform/events/consumers.ts';
import { inventorySagaCommands } from '../../../platform/events/contracts/order-saga.ts';
import { handleOnce } from '../../../platform/events/inbox.ts';
import type { ContextConsumer } from '../../../platform/subgraph/context-subgraph.ts';
import type { InventoryDatabase, InventoryTransaction } from '../infrastructure/database.ts';
import { createStockItem } from './catalog-products.ts';
import { stockCommandEffect, type StockCommandType } from './order-saga-commands.ts';

const stockCommands: ReadonlySet<string> = new Set<StockCommandType>(inventorySagaCommands);

/** What handling `event` does inside the inbox's transaction; undefined for a type not ours. */
function effectOf(event: EventEnvelope): ((tx: InventoryTransaction) => Promise<void>) | undefined {
  if (event.type === 'ProductCreated') return (tx) => createStockItem(tx, event);
  if (stockCommands.has(event.type)) return stockCommandEffect(event as EventEnvelope & { type: StockCommandType });
  return undefined;
}

export function inventoryEventConsumer(db: InventoryDatabase): ContextConsumer {
  return {
    ...inventoryConsumer,
    handle: async (event: EventEnvelope) => {
      const effect = effectOf(event);
      if (!effect) return;
      await handleOnce(db, inventoryConsumer.name, event, effect, { ordering: 'monotonic' });
    },
  };
}
