/** What a request of the catalog subgraph works with. */
import type DataLoader from 'dataloader';
import type { RequestScope } from '../../platform/subgraph/server.ts';
import type { CategoryRecord, ProductRecord, ProductRepository } from './infrastructure/product-repository.ts';

export interface CatalogContext extends RequestScope {
  products: ProductRepository;
  productLoader: DataLoader<string, ProductRecord | null>;
  categoryLoader: DataLoader<string, CategoryRecord | null>;
}
