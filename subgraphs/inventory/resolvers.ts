/** GraphQL → use cases for inventory. */
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { invalidInput } from '../../platform/errors/domain-error.ts';
import { requireAdmin } from '../../platform/identity/identity.ts';
import { isUuid } from '../../platform/ids.ts';
import type { InventoryContext } from './context.ts';
import { checkAdjustment, type StockLevel } from './domain/stock.ts';

interface ProductStock {
  id: string;
  stock: StockLevel | null;
}

export const resolvers: GraphQLResolverMap<InventoryContext> = {
  Mutation: {
    adjustStock: async (_root, args: { productId: string; delta: number; reason: string }, ctx): Promise<ProductStock> => {
      const actorId = requireAdmin(ctx.identity);
      if (!isUuid(args.productId)) throw invalidInput('productId is not a valid id', 'productId');
      const stock = await ctx.stock.adjust(args.productId, checkAdjustment(args.delta, args.reason), actorId, ctx.causation);
      return { id: args.productId, stock };
    },
  },
  Product: {
    __resolveReference: async (reference: { id: string }, ctx: InventoryContext): Promise<ProductStock> => ({
      id: reference.id,
      stock: await ctx.stockLoader.load(reference.id),
    }),
    inStock: (product: ProductStock) => (product.stock?.available ?? 0) > 0,
  },
};
