/**
 * The demo data `npm start` seeds: 6 categories × 10 products with stock, one admin and one
 * customer, each with an address book (so `me { addresses }` and placing an order to a saved
 * address can be tried at once). Ids are derived from names, so every context can seed its own database with the same
 * ids without reading another context's database.
 */
import { deterministicUuid } from '../../platform/ids.ts';
import type { AddressInput } from '../../subgraphs/accounts/domain/address.ts';
import type { NewProduct } from '../../subgraphs/catalog/domain/product.ts';

export interface DemoUser {
  email: string;
  password: string;
  name: string;
  roles: readonly ('customer' | 'admin')[];
  /** The address book the account is created with; the first default one is its default. */
  addresses: readonly AddressInput[];
}

/** The development accounts, with the passwords the README publishes (never seeded in production: settings.ts). */
export const demoUsers = {
  admin: {
    email: 'admin@example.com',
    password: 'admin-demo-password',
    name: 'Ada Admin',
    roles: ['customer', 'admin'] as const,
    addresses: [{ label: 'Office', line1: '12 Harbour Road', city: 'Hamburg', postalCode: '20457', country: 'DE', isDefault: true }],
  },
  customer: {
    email: 'customer@example.com',
    password: 'customer-demo-password',
    name: 'Carl Customer',
    roles: ['customer'] as const,
    addresses: [
      { label: 'Home', line1: '1 Main Street', city: 'Berlin', postalCode: '10115', country: 'DE', isDefault: true },
      { label: 'Work', line1: '5 Market Square', line2: '3rd floor', city: 'Munich', postalCode: '80331', country: 'DE', isDefault: false },
    ],
  },
} satisfies Record<string, DemoUser>;

const catalog: Record<string, { name: string; items: string[]; basePrice: number }> = {
  audio: { name: 'Audio', basePrice: 2_999, items: ['Wireless Earbuds', 'Studio Headphones', 'Bluetooth Speaker', 'Soundbar', 'Turntable', 'Podcast Microphone', 'Noise-Cancelling Headset', 'Portable Radio', 'Smart Speaker', 'Audio Interface'] },
  computing: { name: 'Computing', basePrice: 4_999, items: ['Mechanical Keyboard', 'Wireless Mouse', '27" Monitor', 'USB-C Dock', 'Laptop Stand', 'External SSD 1 TB', 'Webcam 4K', 'Ergonomic Chair Cushion', 'Graphics Tablet', 'Wi-Fi 6 Router'] },
  kitchen: { name: 'Kitchen', basePrice: 1_999, items: ['Chef Knife', 'Cast Iron Skillet', 'Espresso Machine', 'Burr Grinder', 'Stand Mixer', 'Cutting Board', 'Pour-Over Kettle', 'Dutch Oven', 'Spice Rack', 'Digital Scale'] },
  outdoor: { name: 'Outdoor', basePrice: 3_499, items: ['Trail Backpack', 'Two-Person Tent', 'Sleeping Bag', 'Camping Stove', 'Headlamp', 'Trekking Poles', 'Water Filter', 'Hammock', 'Insulated Bottle', 'Rain Jacket'] },
  books: { name: 'Books', basePrice: 1_299, items: ['Domain-Driven Design', 'Designing Data-Intensive Applications', 'Release It!', 'Building Microservices', 'Enterprise Integration Patterns', 'Learning GraphQL', 'Database Internals', 'The Pragmatic Programmer', 'Refactoring', 'Site Reliability Engineering'] },
  toys: { name: 'Toys', basePrice: 999, items: ['Building Blocks Set', 'Wooden Train', 'Puzzle 1000 Pieces', 'Remote Control Car', 'Plush Bear', 'Kite', 'Board Game Classic', 'Science Kit', 'Yo-Yo', 'Marble Run'] },
};

export interface DemoCategory {
  id: string;
  slug: string;
  name: string;
}

/** A product as the catalog creates it, plus its id and its stock in inventory. */
export interface DemoProduct extends NewProduct {
  id: string;
  stock: number;
}

export const demoCategories: DemoCategory[] = Object.entries(catalog).map(([slug, { name }]) => ({
  id: deterministicUuid('category', slug),
  slug,
  name,
}));

export const demoProducts: DemoProduct[] = Object.entries(catalog).flatMap(([slug, { name: categoryName, items, basePrice }], c) =>
  items.map((name, i) => {
    const sku = `${slug.slice(0, 3).toUpperCase()}-${String(i + 1).padStart(3, '0')}`;
    return {
      id: deterministicUuid('product', sku),
      sku,
      name,
      description: `${name} from our ${categoryName.toLowerCase()} range.`,
      // Spread prices out and end them in 99 cents, as shops do.
      price: Math.round((basePrice * (1 + ((i * 37 + c * 11) % 23) / 4)) / 100) * 100 - 1,
      currency: 'EUR',
      categoryId: deterministicUuid('category', slug),
      images: [`https://images.example.com/products/${sku.toLowerCase()}.jpg`],
      // A few are sold out, so `inStock: false` shows up in the demo.
      stock: i === 9 ? 0 : 5 + ((i * 13 + c * 7) % 120),
    };
  }),
);
