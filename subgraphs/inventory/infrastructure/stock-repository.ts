/** Stock levels and their adjustment trail in the inventory database. */
import DataLoader from 'dataloader';
import { invalidInput, notFoundError } from '../../../platform/errors/domain-error.ts';
import { isUuid, newId } from '../../../platform/ids.ts';
import { maxStockLevel, type StockAdjustment, type StockLevel } from '../domain/stock.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import { appendToOutbox } from '../../../platform/events/outbox.ts';
import { stockAdjusted } from '../domain/stock-events.ts';
import type { InventoryDatabase } from './database.ts';

export class StockRepository {
  constructor(private readonly db: InventoryDatabase) {}

  /** One statement for any number of products; null for a product inventory has not heard of. */
  createLoader(): DataLoader<string, StockLevel | null> {
    return new DataLoader(async (productIds) => {
      const wanted = productIds.filter(isUuid);
      const rows = wanted.length === 0 ? [] : await this.db.stockItem.findMany({ where: { productId: { in: wanted } } });
      const byId = new Map(rows.map((row) => [row.productId, row]));
      return productIds.map((id) => {
        const row = byId.get(id);
        return row ? { available: row.available, reserved: row.reserved } : null;
      });
    });
  }

  /**
   * Applies an adjustment and records it, in one transaction. The guard is in the UPDATE itself
   * (`available + delta >= 0`), so concurrent adjustments can never take stock below zero.
   */
  adjust(productId: string, adjustment: StockAdjustment, actorId: string, causation: Causation): Promise<StockLevel> {
    return this.db.$transaction(async (tx) => {
      // The conditional UPDATE takes the row lock first, so versions and events follow commit order.
      const { count } = await tx.stockItem.updateMany({
        where: { productId, available: { gte: -adjustment.delta, lte: maxStockLevel - adjustment.delta } },
        data: { available: { increment: adjustment.delta }, version: { increment: 1 } },
      });
      if (count === 0) {
        const current = await tx.stockItem.findUnique({ where: { productId } });
        if (!current) throw notFoundError('Inventory has no stock record for this product');
        if (current.available + adjustment.delta > maxStockLevel) {
          throw invalidInput(`Stock of a product cannot exceed ${maxStockLevel} units`, 'delta');
        }
        throw invalidInput(`Only ${current.available} units are available: cannot remove ${-adjustment.delta}`, 'delta');
      }
      await tx.stockAdjustment.create({ data: { id: newId(), productId, delta: adjustment.delta, reason: adjustment.reason, actorId } });
      const updated = await tx.stockItem.findUniqueOrThrow({ where: { productId } });
      const level = { available: updated.available, reserved: updated.reserved };
      await appendToOutbox(tx, [stockAdjusted({ productId, delta: adjustment.delta, reason: adjustment.reason, ...level }, updated.version, causation)]);
      return level;
    });
  }
}
