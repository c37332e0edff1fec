/** Starts the accounts subgraph: customers, credentials, roles, addresses. */
import type { CryptoKey } from 'jose';
import { startContextSubgraph, type ContextSubgraphOptions, type RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import type { AccountsContext } from './context.ts';
import { CustomerRepository } from './infrastructure/customer-repository.ts';
import { connectAccountsDatabase } from './infrastructure/database.ts';
import { resolvers } from './resolvers.ts';

export interface AccountsSubgraphOptions extends ContextSubgraphOptions {
  /** Signs the bearer tokens handed out at sign-up and sign-in. */
  authTokenPrivateKey: CryptoKey;
  /** Lifetime of a bearer token. @default 3600 */
  tokenTtlSeconds?: number;
}

export function startAccountsSubgraph(options: AccountsSubgraphOptions): Promise<RunningContextSubgraph> {
  const { db, statements } = connectAccountsDatabase(options.databaseUrl);
  const customers = new CustomerRepository(db);
  const issuer = { privateKey: options.authTokenPrivateKey, ttlSeconds: options.tokenTtlSeconds ?? 3600 };
  return startContextSubgraph<AccountsContext>(options, {
    name: 'accounts',
    moduleUrl: import.meta.url,
    db,
    statements,
    resolvers,
    createContext: (scope) => ({
      ...scope,
      customers,
      issuer,
      customerLoader: customers.createLoader(),
      addressLoader: customers.createAddressLoader(),
    }),
  });
}
