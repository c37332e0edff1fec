/**
 * Inventory learns of products from the catalog's events: a new product gets a stock record
 * with nothing available, so it shows `stock { available: 0 }` until an admin adds stock.
 */
import type { ProductCreated } from '../../../platform/events/contracts/catalog.ts';
import type { EventEnvelope } from '../../../platform/events/envelope.ts';
import type { InventoryTransaction } from '../infrastructure/database.ts';

export async function createStockItem(tx: InventoryTransaction, event: EventEnvelope): Promise<void> {
  const { productId } = event.payload as unknown as ProductCreated;
  await tx.stockItem.createMany({ data: [{ productId, available: 0, reserved: 0 }], skipDuplicates: true });
}
