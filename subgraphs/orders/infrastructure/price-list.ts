/** The orders context's copy of catalog prices (`product_prices`), fed by catalog events. */
import type { OrdersDatabase } from './database.ts';

export interface ProductPriceRecord {
  productId: string;
  /** Null until a ProductCreated or ProductPriceChanged was applied. */
  price: number | null;
  currency: string | null;
  name: string | null;
  discontinued: boolean;
}

export class PriceList {
  constructor(private readonly db: OrdersDatabase) {}

  /** The known products among `productIds`, in one statement. */
  async find(productIds: readonly string[]): Promise<Map<string, ProductPriceRecord>> {
    const rows = await this.db.productPrice.findMany({
      where: { productId: { in: [...productIds] } },
      select: { productId: true, price: true, currency: true, name: true, discontinued: true },
    });
    return new Map(rows.map((row) => [row.productId, row]));
  }
}
