/** GraphQL → use cases for the catalog. */
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { invalidInput } from '../../platform/errors/domain-error.ts';
import { requireAdmin } from '../../platform/identity/identity.ts';
import { toGlobalId } from '../../platform/graphql/global-ids.ts';
import { isUuid } from '../../platform/ids.ts';
import type { CatalogContext } from './context.ts';
import { checkNewProduct, checkPrice, type NewProductInput } from './domain/product.ts';
import type { CategoryRecord, ProductRecord } from './infrastructure/product-repository.ts';
import { nodeResolvers } from './node.ts';
import { browseProducts, type ProductFilterInput } from './use-cases/browse-products.ts';

function checkId(id: string, field: string): string {
  if (!isUuid(id)) throw invalidInput(`${field} is not a valid id`, field);
  return id;
}

export const resolvers: GraphQLResolverMap<CatalogContext> = {
  Query: {
    product: (_root, { id }: { id: string }, ctx) => ctx.productLoader.load(checkId(id, 'id')),
    products: (_root, args: { filter?: ProductFilterInput; first?: number; after?: string }, ctx) => browseProducts(ctx.products, args),
    categories: (_root, _args, ctx) => ctx.products.listCategories(),
    category: (_root, { slug }: { slug: string }, ctx) => ctx.products.findCategoryBySlug(slug),
    ...nodeResolvers.Query,
  },
  Mutation: {
    createProduct: (_root, { input }: { input: NewProductInput }, ctx) => {
      requireAdmin(ctx.identity);
      return ctx.products.create(checkNewProduct({ ...input, categoryId: checkId(input.categoryId, 'input.categoryId') }), ctx.causation);
    },
    updateProductPrice: (_root, { id, price }: { id: string; price: number }, ctx) => {
      requireAdmin(ctx.identity);
      return ctx.products.updatePrice(checkId(id, 'id'), checkPrice(price), ctx.causation);
    },
    discontinueProduct: (_root, { id }: { id: string }, ctx) => {
      requireAdmin(ctx.identity);
      return ctx.products.discontinue(checkId(id, 'id'), ctx.causation);
    },
  },
  Product: {
    __resolveReference: (reference: { id: string }, ctx: CatalogContext) => ctx.productLoader.load(reference.id),
    nodeId: (product: ProductRecord) => toGlobalId('Product', product.id),
    price: (product: ProductRecord) => product.priceAmount,
    category: (product: ProductRecord, _args, ctx) => ctx.categoryLoader.load(product.categoryId),
    discontinued: (product: ProductRecord) => product.status === 'DISCONTINUED',
  },
  Category: {
    __resolveReference: (reference: { id: string }, ctx: CatalogContext) => ctx.categoryLoader.load(reference.id),
    nodeId: (category: CategoryRecord) => toGlobalId('Category', category.id),
    products: (category: CategoryRecord, args: { first?: number; after?: string }, ctx) =>
      browseProducts(ctx.products, { ...args, filter: { categoryId: category.id } }),
  },
  // Global ids: `node(id:)`, and the Customer and Order references it answers (node.ts).
  Node: nodeResolvers.Node,
  Customer: nodeResolvers.Customer,
  Order: nodeResolvers.Order,
};
