/**
 * The cart, and the checkout that turns it into one order. The idempotency key is chosen when a
 * checkout starts and kept across its retries (a lost answer, SERVICE_OVERLOADED): sending the
 * same order twice with it places it once.
 */
import type { Product } from './catalog.ts';

export interface CartLine {
  product: Product;
  quantity: number;
}

/** The orders context takes 1 to 99 units per line and 1 to 50 lines. */
export const maxQuantity = 99;
export const maxLines = 50;

export class Cart {
  readonly #lines = new Map<string, CartLine>();

  get lines(): CartLine[] {
    return [...this.#lines.values()];
  }

  get isEmpty(): boolean {
    return this.#lines.size === 0;
  }

  /** Adds one unit; false when the line or the cart is full. */
  add(product: Product): boolean {
    const line = this.#lines.get(product.id);
    if (line) {
      if (line.quantity >= maxQuantity) return false;
      line.quantity += 1;
      return true;
    }
    if (this.#lines.size >= maxLines) return false;
    this.#lines.set(product.id, { product, quantity: 1 });
    return true;
  }

  remove(productId: string): void {
    this.#lines.delete(productId);
  }

  clear(): void {
    this.#lines.clear();
  }

  /** The total in minor units, when every line has the same currency (the catalog's case). */
  total(): { amount: number; currency: string } | null {
    const lines = this.lines;
    const currency = lines[0]?.product.currency;
    if (!currency || lines.some((line) => line.product.currency !== currency)) return null;
    return { amount: lines.reduce((sum, line) => sum + line.product.price * line.quantity, 0), currency };
  }
}

/** One attempt to place the cart's order: the key stays the same until it succeeds. */
export class Checkout {
  readonly idempotencyKey = crypto.randomUUID();
}
