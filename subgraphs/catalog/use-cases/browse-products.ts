/** Browsing the catalog: filters and pages checked before any query runs. */
import { invalidInput } from '../../../platform/errors/domain-error.ts';
import { decodeCursor, encodeCursor, forwardPageInfo, pageSize, type PageInfo } from '../../../platform/graphql/pagination.ts';
import { isUuid } from '../../../platform/ids.ts';
import { checkPriceRange, checkSearchText } from '../domain/product.ts';
import type { ProductPosition, ProductQuery, ProductRecord, ProductRepository } from '../infrastructure/product-repository.ts';

export interface ProductFilterInput {
  categoryId?: string | null;
  categorySlug?: string | null;
  minPrice?: number | null;
  maxPrice?: number | null;
  search?: string | null;
}

export interface ProductConnection {
  edges: { cursor: string; node: ProductRecord }[];
  pageInfo: PageInfo;
  totalCount: () => Promise<number>;
}

/** A cursor holds the (name, id) position of the last product of a page. */
function decodePosition(cursor: string | null | undefined): ProductPosition | undefined {
  const key = decodeCursor(cursor, (text) => parsePosition(text) !== undefined);
  return key === undefined ? undefined : parsePosition(key);
}

function parsePosition(text: string): ProductPosition | undefined {
  try {
    const value: unknown = JSON.parse(text);
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && isUuid(value[1])) return { name: value[0], id: value[1] };
  } catch {
    // not JSON: not one of our cursors
  }
  return undefined;
}

async function categoryOf(products: ProductRepository, filter: ProductFilterInput): Promise<string | undefined> {
  if (filter.categoryId && filter.categorySlug) throw invalidInput('Give categoryId or categorySlug, not both', 'filter.categorySlug');
  if (filter.categoryId) {
    const known = isUuid(filter.categoryId) && (await products.createCategoryLoader().load(filter.categoryId));
    if (!known) throw invalidInput('No such category: pick one of `categories`', 'filter.categoryId');
    return filter.categoryId;
  }
  if (filter.categorySlug) {
    const category = await products.findCategoryBySlug(filter.categorySlug);
    if (!category) throw invalidInput('No such category: pick one of `categories`', 'filter.categorySlug');
    return category.id;
  }
  return undefined;
}

export async function browseProducts(
  products: ProductRepository,
  args: { filter?: ProductFilterInput | null; first?: number | null; after?: string | null },
): Promise<ProductConnection> {
  const first = pageSize(args.first);
  const after = decodePosition(args.after);
  const filter = args.filter ?? {};
  const query: ProductQuery = { price: checkPriceRange(filter.minPrice, filter.maxPrice) };
  const search = checkSearchText(filter.search);
  if (search) query.search = search;
  const categoryId = await categoryOf(products, filter);
  if (categoryId) query.categoryId = categoryId;
  const page = await products.listActive(query, first, after);
  const edges = page.products.map((node) => ({ cursor: encodeCursor(JSON.stringify([node.name, node.id])), node }));
  return {
    edges,
    pageInfo: forwardPageInfo(edges, page.hasNextPage, after),
    totalCount: page.totalCount,
  };
}
