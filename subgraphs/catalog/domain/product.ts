/** The catalog's rules for products and price filters. Pure: no storage, no transport. */
import { invalidInput } from '../../../platform/errors/domain-error.ts';

export const supportedCurrencies = ['EUR', 'USD', 'GBP', 'CHF', 'SEK', 'NOK', 'DKK', 'PLN'] as const;
/** 999,999.99 in any supported currency: beyond it a price is a typo. */
export const maxPrice = 99_999_999;
const maxImages = 10;

export interface NewProduct {
  sku: string;
  name: string;
  description: string;
  price: number;
  currency: string;
  categoryId: string;
  images: string[];
}

/** As a client may send it: optional fields may be left out or sent as null. */
export type NewProductInput = Omit<NewProduct, 'description' | 'images'> & { description?: string | null; images?: string[] | null };

export function checkPrice(price: number, field = 'price'): number {
  if (!Number.isInteger(price)) throw invalidInput('Price must be a whole number of minor units (e.g. 1999 for 19.99)', field);
  if (price < 0) throw invalidInput('Price cannot be negative', field);
  if (price > maxPrice) throw invalidInput(`Price must be at most ${maxPrice} minor units`, field);
  return price;
}

export function checkNewProduct(input: NewProductInput): NewProduct {
  const images = input.images ?? [];
  const sku = input.sku.trim().toUpperCase();
  if (!/^[A-Z0-9][A-Z0-9-]{2,31}$/.test(sku)) throw invalidInput('SKU must be 3–32 letters, digits or dashes', 'input.sku');
  const name = input.name.trim();
  if (name.length === 0 || name.length > 200) throw invalidInput('Name must be 1–200 characters', 'input.name');
  const description = (input.description ?? '').trim();
  if (description.length > 5000) throw invalidInput('Description must be at most 5000 characters', 'input.description');
  const currency = input.currency.trim().toUpperCase();
  if (!(supportedCurrencies as readonly string[]).includes(currency)) {
    throw invalidInput(`Currency must be one of ${supportedCurrencies.join(', ')}`, 'input.currency');
  }
  if (images.length > maxImages) throw invalidInput(`At most ${maxImages} images`, 'input.images');
  for (const image of images) {
    if (!isHttpsUrl(image)) throw invalidInput('Images must be https URLs of at most 500 characters', 'input.images');
  }
  return { sku, name, description, price: checkPrice(input.price, 'input.price'), currency, categoryId: input.categoryId, images };
}

function isHttpsUrl(value: string): boolean {
  if (value.length > 500) return false;
  try {
    return new URL(value).protocol === 'https:';
  } catch {
    return false;
  }
}

export interface PriceRange {
  min?: number;
  max?: number;
}

export function checkPriceRange(min: number | null | undefined, max: number | null | undefined): PriceRange {
  const range: PriceRange = {};
  if (min !== null && min !== undefined) range.min = checkPrice(min, 'filter.minPrice');
  if (max !== null && max !== undefined) range.max = checkPrice(max, 'filter.maxPrice');
  if (range.min !== undefined && range.max !== undefined && range.min > range.max) {
    throw invalidInput('minPrice must not be greater than maxPrice', 'filter.minPrice');
  }
  return range;
}

export function checkSearchText(search: string | null | undefined): string | undefined {
  if (search === null || search === undefined) return undefined;
  const text = search.trim();
  if (text.length === 0) return undefined;
  if (text.length > 100) throw invalidInput('Search text must be at most 100 characters', 'filter.search');
  return text;
}
