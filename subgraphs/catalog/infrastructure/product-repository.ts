/** Products and categories in the catalog database. */
import DataLoader from 'dataloader';
import type { Prisma } from '../../../prisma/catalog/client/client.ts';
import { conflictError, invalidInput, notFoundError } from '../../../platform/errors/domain-error.ts';
import { isUniqueViolation } from '../../../platform/errors/index.ts';
import { isUuid, newId } from '../../../platform/ids.ts';
import { appendToOutbox } from '../../../platform/events/outbox.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import type { NewProduct, PriceRange } from '../domain/product.ts';
import { productEvent, type ProductEvent } from '../domain/product-events.ts';
import type { CatalogDatabase } from './database.ts';

export interface ProductRecord {
  id: string;
  sku: string;
  name: string;
  description: string;
  priceAmount: number;
  currency: string;
  categoryId: string;
  images: string[];
  status: 'ACTIVE' | 'DISCONTINUED';
  /** The Product aggregate's version; its events carry it. */
  version: number;
}

export interface CategoryRecord {
  id: string;
  slug: string;
  name: string;
}

export interface ProductQuery {
  categoryId?: string;
  price?: PriceRange;
  search?: string;
}

/** Where a page starts: after this product in (name, id) order, whether or not it still matches. */
export interface ProductPosition {
  name: string;
  id: string;
}

/** LIKE treats `%`, `_` and `\` as patterns; a shopper's search text means them literally. */
function escapeLikePattern(text: string): string {
  return text.replace(/[\\%_]/g, (character) => `\\${character}`);
}

export interface ProductPage {
  products: ProductRecord[];
  hasNextPage: boolean;
  /** Counted only when asked for: a second statement. */
  totalCount: () => Promise<number>;
}

/** One statement for any number of ids; unknown or malformed ids resolve to null. */
function loaderByIds<T extends { id: string }>(find: (ids: string[]) => Promise<T[]>): DataLoader<string, T | null> {
  return new DataLoader(async (ids) => {
    const wanted = ids.filter(isUuid);
    const rows = wanted.length === 0 ? [] : await find(wanted);
    const byId = new Map(rows.map((row) => [row.id, row]));
    return ids.map((id) => byId.get(id) ?? null);
  });
}

export class ProductRepository {
  constructor(private readonly db: CatalogDatabase) {}

  createProductLoader(): DataLoader<string, ProductRecord | null> {
    return loaderByIds((ids) => this.db.product.findMany({ where: { id: { in: ids } } }));
  }

  createCategoryLoader(): DataLoader<string, CategoryRecord | null> {
    return loaderByIds((ids) => this.db.category.findMany({ where: { id: { in: ids } } }));
  }

  listCategories(): Promise<CategoryRecord[]> {
    return this.db.category.findMany({ orderBy: { name: 'asc' } });
  }

  findCategoryBySlug(slug: string): Promise<CategoryRecord | null> {
    return this.db.category.findUnique({ where: { slug } });
  }

  /**
   * Active products by (name, id), a keyset page after `after`. The position is compared by
   * value, so a page still starts at the right place when the product of the cursor was
   * discontinued or repriced out of the filter since.
   */
  async listActive(query: ProductQuery, first: number, after?: ProductPosition): Promise<ProductPage> {
    const where: Prisma.ProductWhereInput = { status: 'ACTIVE' };
    if (query.categoryId) where.categoryId = query.categoryId;
    if (query.price) where.priceAmount = { gte: query.price.min, lte: query.price.max };
    if (query.search) {
      where.OR = [
        { name: { contains: escapeLikePattern(query.search), mode: 'insensitive' } },
        { description: { contains: escapeLikePattern(query.search), mode: 'insensitive' } },
        { sku: { contains: escapeLikePattern(query.search), mode: 'insensitive' } },
      ];
    }
    const page: Prisma.ProductWhereInput = after
      ? { AND: [where, { OR: [{ name: { gt: after.name } }, { name: after.name, id: { gt: after.id } }] }] }
      : where;
    // One row more than asked tells whether another page follows (also for `first: 0`).
    const rows = await this.db.product.findMany({ where: page, orderBy: [{ name: 'asc' }, { id: 'asc' }], take: first + 1 });
    return {
      products: rows.slice(0, first),
      hasNextPage: rows.length > first,
      totalCount: () => this.db.product.count({ where }),
    };
  }

  /** Creates the product and its ProductCreated event in one transaction. */
  async create(product: NewProduct, causation: Causation): Promise<ProductRecord> {
    const category = await this.db.category.findUnique({ where: { id: product.categoryId } });
    if (!category) throw invalidInput('No such category: pick one of `categories`', 'input.categoryId');
    try {
      return await this.db.$transaction(async (tx) => {
        const created = await tx.product.create({
          data: {
            id: newId(),
            sku: product.sku,
            name: product.name,
            description: product.description,
            priceAmount: product.price,
            currency: product.currency,
            categoryId: product.categoryId,
            images: product.images,
          },
        });
        const payload = { productId: created.id, sku: created.sku, name: created.name, price: created.priceAmount, currency: created.currency, categoryId: created.categoryId };
        await appendToOutbox(tx, [productEvent({ type: 'ProductCreated', payload }, created.id, created.version, causation)]);
        return created;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw conflictError(`A product with SKU ${product.sku} already exists`, 'input.sku');
      throw error;
    }
  }

  /**
   * Changes a product under its row lock, bumps its version and records `event` with the new
   * version, all in one transaction; `change` may refuse (throw) or decline (return null: no
   * change, no event) after seeing the locked current state.
   */
  private changeProduct(
    id: string,
    change: (current: ProductRecord) => { data: Prisma.ProductUpdateInput; event: (updated: ProductRecord) => ProductEvent } | null,
    causation: Causation,
  ): Promise<ProductRecord> {
    return this.db.$transaction(async (tx) => {
      // The row lock orders concurrent changes of one product, so versions and events follow commit order.
      const locked = await tx.$queryRaw<{ id: string }[]>`SELECT id FROM products WHERE id = ${id}::uuid FOR UPDATE`;
      if (locked.length === 0) throw notFoundError('No such product');
      const current = await tx.product.findUniqueOrThrow({ where: { id } });
      const planned = change(current);
      if (!planned) return current;
      const updated = await tx.product.update({ where: { id }, data: { ...planned.data, version: { increment: 1 } } });
      await appendToOutbox(tx, [productEvent(planned.event(updated), id, updated.version, causation)]);
      return updated;
    });
  }

  /** Reprices a product and records ProductPriceChanged; the same price again changes nothing. */
  updatePrice(id: string, price: number, causation: Causation): Promise<ProductRecord> {
    return this.changeProduct(
      id,
      (current) =>
        current.priceAmount === price
          ? null
          : {
              data: { priceAmount: price },
              event: (updated) => ({ type: 'ProductPriceChanged', payload: { productId: id, price, previousPrice: current.priceAmount, currency: updated.currency } }),
            },
      causation,
    );
  }

  /** Takes a product off sale and records ProductDiscontinued; CONFLICT when it already is. */
  discontinue(id: string, causation: Causation): Promise<ProductRecord> {
    return this.changeProduct(
      id,
      (current) => {
        if (current.status === 'DISCONTINUED') throw conflictError('The product is already discontinued');
        return { data: { status: 'DISCONTINUED' }, event: () => ({ type: 'ProductDiscontinued', payload: { productId: id } }) };
      },
      causation,
    );
  }
}
