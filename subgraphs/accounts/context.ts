/** What a request of the accounts subgraph works with: the caller, its loaders and use-case dependencies. */
import type DataLoader from 'dataloader';
import type { RequestScope } from '../../platform/subgraph/server.ts';
import type { AddressRecord, CustomerRecord } from './infrastructure/customer-repository.ts';
import type { AccountsDependencies, Caller } from './use-cases/dependencies.ts';

export interface AccountsContext extends RequestScope, AccountsDependencies {
  caller: Caller;
  customerLoader: DataLoader<string, CustomerRecord | null>;
  addressLoader: DataLoader<string, AddressRecord[]>;
  /**
   * What the response's `x-commerce-session-grant` header carries (web sessions): the web
   * session's token after a sign-in, `ended` after a sign-out. Set by resolvers, sent by
   * infrastructure/web-sessions.ts; the gateway turns it into the cookie and never forwards it.
   */
  sessionGrant?: string;
}
