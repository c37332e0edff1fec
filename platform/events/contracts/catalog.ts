/**
 * The catalog's published events: the contract other contexts code against. Changing a shape
 * means a new `schemaVersion`, never an edit in place.
 */
export interface ProductCreated {
  productId: string;
  sku: string;
  name: string;
  /** Minor units of `currency`. */
  price: number;
  currency: string;
  categoryId: string;
}

export interface ProductPriceChanged {
  productId: string;
  price: number;
  previousPrice: number;
  currency: string;
}

export interface ProductDiscontinued {
  productId: string;
}
