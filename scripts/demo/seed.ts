/**
 * Seeds the demo data into each context's own database, through that context's own Prisma
 * client. Idempotent: rows are keyed by derived ids and existing ones are left alone, so a
 * second start changes nothing (and keeps whatever an admin changed).
 */
import type { ContextName } from '../../platform/contexts.ts';
import { deterministicUuid } from '../../platform/ids.ts';
import { connectAccountsDatabase } from '../../subgraphs/accounts/infrastructure/database.ts';
import { hashPassword } from '../../subgraphs/accounts/infrastructure/password-hasher.ts';
import { connectCatalogDatabase } from '../../subgraphs/catalog/infrastructure/database.ts';
import { connectInventoryDatabase } from '../../subgraphs/inventory/infrastructure/database.ts';
import { connectOrdersDatabase } from '../../subgraphs/orders/infrastructure/database.ts';
import { demoCategories, demoProducts, demoUsers } from './data.ts';

export interface SeedResult {
  customers: number;
  categories: number;
  products: number;
  stockItems: number;
}

async function seedAccounts(databaseUrl: string): Promise<number> {
  const { db } = connectAccountsDatabase(databaseUrl);
  try {
    let created = 0;
    for (const user of Object.values(demoUsers)) {
      const exists = await db.customer.findUnique({ where: { email: user.email } });
      if (exists) continue;
      await db.customer.create({
        data: { id: deterministicUuid('customer', user.email), email: user.email, name: user.name, roles: [...user.roles], passwordHash: await hashPassword(user.password) },
      });
      created += 1;
    }
    return created;
  } finally {
    await db.$disconnect();
  }
}

async function seedCatalog(databaseUrl: string): Promise<{ categories: number; products: number }> {
  const { db } = connectCatalogDatabase(databaseUrl);
  try {
    const categories = await db.category.createMany({ data: demoCategories, skipDuplicates: true });
    const products = await db.product.createMany({
      data: demoProducts.map(({ stock: _stock, price, ...product }) => ({ ...product, priceAmount: price })),
      skipDuplicates: true,
    });
    return { categories: categories.count, products: products.count };
  } finally {
    await db.$disconnect();
  }
}

async function seedInventory(databaseUrl: string): Promise<number> {
  const { db } = connectInventoryDatabase(databaseUrl);
  try {
    const { count } = await db.stockItem.createMany({
      data: demoProducts.map((product) => ({ productId: product.id, available: product.stock })),
      skipDuplicates: true,
    });
    return count;
  } finally {
    await db.$disconnect();
  }
}

/**
 * Orders' own copy of catalog prices, as the catalog's ProductCreated events would have left it:
 * the demo products are written straight into the catalog, so no such events exist for them.
 */
async function seedOrderPrices(databaseUrl: string): Promise<number> {
  const { db } = connectOrdersDatabase(databaseUrl);
  try {
    const { count } = await db.productPrice.createMany({
      data: demoProducts.map((product) => ({ productId: product.id, price: product.price, currency: product.currency, name: product.name, discontinued: false, version: 1 })),
      skipDuplicates: true,
    });
    return count;
  } finally {
    await db.$disconnect();
  }
}

export async function seedDemoData(databaseUrls: Record<ContextName, string>): Promise<SeedResult> {
  const [customers, catalog, stockItems] = await Promise.all([
    seedAccounts(databaseUrls.accounts),
    seedCatalog(databaseUrls.catalog),
    seedInventory(databaseUrls.inventory),
    seedOrderPrices(databaseUrls.orders),
  ]);
  return { customers, ...catalog, stockItems };
}
