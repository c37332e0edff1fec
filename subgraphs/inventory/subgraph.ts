/** Starts the inventory subgraph: stock per product. */
import { startContextSubgraph, type ContextSubgraphOptions, type RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import type { InventoryContext } from './context.ts';
import { connectInventoryDatabase } from './infrastructure/database.ts';
import { StockRepository } from './infrastructure/stock-repository.ts';
import { inventoryEventConsumer } from './consumers/inventory-consumer.ts';
import { resolvers } from './resolvers.ts';

export function startInventorySubgraph(options: ContextSubgraphOptions): Promise<RunningContextSubgraph> {
  const { db, statements } = connectInventoryDatabase(options.databaseUrl);
  const stock = new StockRepository(db);
  return startContextSubgraph<InventoryContext>(options, {
    name: 'inventory',
    moduleUrl: import.meta.url,
    db,
    statements,
    resolvers,
    createContext: (scope) => ({ ...scope, stock, stockLoader: stock.createLoader() }),
    consumers: [inventoryEventConsumer(db)],
  });
}
