/**
 * Seeds the demo data into each context's own database, through that context's own Prisma
 * client. Idempotent: rows are keyed by derived ids and existing ones are left alone, so a
 * second start changes nothing (and keeps whatever an admin changed). A demo account's address
 * book is created with the account, in the same statement, and never again: an address its
 * owner removed stays removed, and an account seeded before demo accounts had addresses keeps
 * an empty book. The one exception: seeding
 * with configured passwords (production, settings.ts) replaces a published demo password an
 * account still has from an earlier development start on the same database.
 */
import type { ContextName } from '../../platform/contexts.ts';
import { deterministicUuid } from '../../platform/ids.ts';
import { checkAddress } from '../../subgraphs/accounts/domain/address.ts';
import { connectAccountsDatabase } from '../../subgraphs/accounts/infrastructure/database.ts';
import { hashPassword, verifyPassword } from '../../subgraphs/accounts/infrastructure/password-hasher.ts';
import { connectCatalogDatabase } from '../../subgraphs/catalog/infrastructure/database.ts';
import { connectInventoryDatabase } from '../../subgraphs/inventory/infrastructure/database.ts';
import { connectOrdersDatabase } from '../../subgraphs/orders/infrastructure/database.ts';
import { ordersConsumerName } from '../../subgraphs/orders/consumers/catalog-prices.ts';
import { productAggregate } from '../../subgraphs/catalog/domain/product-events.ts';
import { demoCategories, demoProducts, demoUsers, type DemoUser } from './data.ts';

export interface SeedResult {
  customers: number;
  /** Addresses of the accounts created by this seeding. */
  addresses: number;
  /** Existing accounts whose published demo password was replaced by the configured one. */
  passwordsReplaced: number;
  categories: number;
  products: number;
  stockItems: number;
}

const publishedPasswordOf = (email: string) => Object.values(demoUsers).find((user) => user.email === email)?.password;

/** The account's address book as accounts' own rules accept it, one default at most, with ids derived from the owner. */
function demoAddressBook(user: DemoUser) {
  let hasDefault = false;
  return user.addresses.map((input, i) => {
    const draft = checkAddress(input);
    const isDefault = draft.isDefault && !hasDefault;
    hasDefault ||= isDefault;
    return { ...draft, isDefault, id: deterministicUuid('address', `${user.email}#${i}`) };
  });
}

async function seedAccounts(databaseUrl: string, users: readonly DemoUser[]): Promise<{ created: number; addresses: number; passwordsReplaced: number }> {
  const { db } = connectAccountsDatabase(databaseUrl);
  try {
    let created = 0;
    let addresses = 0;
    let passwordsReplaced = 0;
    for (const user of users) {
      const exists = await db.customer.findUnique({ where: { email: user.email } });
      if (exists) {
        const published = publishedPasswordOf(user.email);
        if (published && published !== user.password && (await verifyPassword(published, exists.passwordHash))) {
          await db.customer.update({ where: { id: exists.id }, data: { passwordHash: await hashPassword(user.password) } });
          passwordsReplaced += 1;
        }
        continue;
      }
      const addressBook = demoAddressBook(user);
      await db.customer.create({
        data: {
          id: deterministicUuid('customer', user.email),
          email: user.email,
          name: user.name,
          roles: [...user.roles],
          passwordHash: await hashPassword(user.password),
          addresses: { create: addressBook },
        },
      });
      created += 1;
      addresses += addressBook.length;
    }
    return { created, addresses, passwordsReplaced };
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
 * Orders applies Product events in strict order, so its consumer position says version 1 was
 * applied too: else the first price change (version 2) would wait for a version 1 that never comes.
 */
async function seedOrderPrices(databaseUrl: string): Promise<number> {
  const { db } = connectOrdersDatabase(databaseUrl);
  try {
    const { count } = await db.productPrice.createMany({
      data: demoProducts.map((product) => ({ productId: product.id, price: product.price, currency: product.currency, name: product.name, discontinued: false, version: 1 })),
      skipDuplicates: true,
    });
    await db.consumerPosition.createMany({
      data: demoProducts.map((product) => ({ consumer: ordersConsumerName, aggregateType: productAggregate, aggregateId: product.id, lastAppliedVersion: 1 })),
      skipDuplicates: true,
    });
    return count;
  } finally {
    await db.$disconnect();
  }
}

/**
 * Seeds the catalog, stock and prices, and the given accounts (`npm start` asks settings.ts
 * which). @default users: the development admin and customer, with their published passwords
 */
export async function seedDemoData(databaseUrls: Record<ContextName, string>, users: readonly DemoUser[] = [demoUsers.admin, demoUsers.customer]): Promise<SeedResult> {
  const [accounts, catalog, stockItems] = await Promise.all([
    seedAccounts(databaseUrls.accounts, users),
    seedCatalog(databaseUrls.catalog),
    seedInventory(databaseUrls.inventory),
    seedOrderPrices(databaseUrls.orders),
  ]);
  return { customers: accounts.created, addresses: accounts.addresses, passwordsReplaced: accounts.passwordsReplaced, ...catalog, stockItems };
}
