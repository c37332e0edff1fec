/** Inventory's published events: the contract other contexts code against. */
export interface StockAdjusted {
  productId: string;
  delta: number;
  reason: string;
  available: number;
  reserved: number;
}
