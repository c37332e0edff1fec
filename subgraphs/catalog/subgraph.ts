/** Starts the catalog subgraph: products, categories, prices. */
import { startContextSubgraph, type ContextSubgraphOptions, type RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import type { CatalogContext } from './context.ts';
import { connectCatalogDatabase } from './infrastructure/database.ts';
import { ProductRepository } from './infrastructure/product-repository.ts';
import { resolvers } from './resolvers.ts';

export function startCatalogSubgraph(options: ContextSubgraphOptions): Promise<RunningContextSubgraph> {
  const { db, statements } = connectCatalogDatabase(options.databaseUrl);
  const products = new ProductRepository(db);
  return startContextSubgraph<CatalogContext>(options, {
    name: 'catalog',
    moduleUrl: import.meta.url,
    db,
    statements,
    resolvers,
    createContext: (scope) => ({
      ...scope,
      products,
      productLoader: products.createProductLoader(),
      categoryLoader: products.createCategoryLoader(),
    }),
  });
}
