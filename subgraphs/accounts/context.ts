/** What a request of the accounts subgraph works with: the caller, its loaders and use-case dependencies. */
import type DataLoader from 'dataloader';
import type { RequestScope } from '../../platform/subgraph/server.ts';
import type { AddressRecord, CustomerRecord, CustomerRepository } from './infrastructure/customer-repository.ts';
import type { TokenIssuer } from './use-cases/authenticate.ts';

export interface AccountsContext extends RequestScope {
  customers: CustomerRepository;
  issuer: TokenIssuer;
  customerLoader: DataLoader<string, CustomerRecord | null>;
  addressLoader: DataLoader<string, AddressRecord[]>;
}
