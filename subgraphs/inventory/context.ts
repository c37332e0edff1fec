/** What a request of the inventory subgraph works with. */
import type DataLoader from 'dataloader';
import type { RequestScope } from '../../platform/subgraph/server.ts';
import type { StockLevel } from './domain/stock.ts';
import type { StockRepository } from './infrastructure/stock-repository.ts';

export interface InventoryContext extends RequestScope {
  stock: StockRepository;
  stockLoader: DataLoader<string, StockLevel | null>;
}
