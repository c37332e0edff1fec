/** Starts the accounts subgraph: customers, credentials, sessions, roles, addresses. */
import type { CryptoKey } from 'jose';
import { jwksOf, signingKeyOf } from '../../platform/identity/keys.ts';
import { createLogger } from '../../platform/logging/logger.ts';
import { startContextSubgraph, type ContextSubgraphOptions, type RunningContextSubgraph } from '../../platform/subgraph/context-subgraph.ts';
import type { AccountsContext } from './context.ts';
import { checkLifetimes, defaultSessionLifetimes, type SessionLifetimes } from './domain/session.ts';
import type { ThrottlePolicy } from './domain/throttling.ts';
import { createAttemptGuard } from './infrastructure/attempt-guard.ts';
import { CustomerRepository } from './infrastructure/customer-repository.ts';
import { connectAccountsDatabase, transactionsOf } from './infrastructure/database.ts';
import { SessionRepository } from './infrastructure/session-repository.ts';
import { sessionRoutes } from './infrastructure/session-routes.ts';
import { clientAddressOf, requestedKindOf, sessionGrantPlugin } from './infrastructure/web-sessions.ts';
import { resolvers } from './resolvers.ts';

export interface AccountsSubgraphOptions extends ContextSubgraphOptions {
  /** Signs the access tokens handed out at sign-in (AUTH_TOKEN_PRIVATE_KEY). */
  authTokenPrivateKey: CryptoKey;
  /**
   * Public keys of earlier signing keys, published in the JWKS so that tokens signed before a
   * rotation stay valid until they expire (AUTH_TOKEN_RETIRED_PUBLIC_KEYS). @default []
   */
  retiredTokenPublicKeys?: readonly CryptoKey[];
  /** Lifetimes of access tokens, web sessions and refresh tokens. @default defaultSessionLifetimes */
  sessionLifetimes?: Partial<SessionLifetimes>;
  /** Brute-force protection of sign-in and throttling of sign-up. @default defaultThrottlePolicy */
  throttling?: Partial<ThrottlePolicy>;
  /** Where attempts are counted: Redis when set (REDIS_URL), else the accounts database. */
  redisUrl?: string;
  /** Prefix of the throttling keys (tests sharing one Redis isolate themselves). @default 'accounts' */
  throttlingKeyPrefix?: string;
}

export async function startAccountsSubgraph(options: AccountsSubgraphOptions): Promise<RunningContextSubgraph> {
  const { db, statements } = connectAccountsDatabase(options.databaseUrl);
  const customers = new CustomerRepository(db);
  const sessions = new SessionRepository(db);
  const lifetimes = checkLifetimes({ ...defaultSessionLifetimes, ...options.sessionLifetimes });
  const signingKey = await signingKeyOf(options.authTokenPrivateKey);
  const jwks = await jwksOf(options.authTokenPrivateKey, options.retiredTokenPublicKeys ?? []);
  const guard = createAttemptGuard({
    databaseUrl: options.databaseUrl,
    log: createLogger('accounts'),
    ...(options.redisUrl ? { redisUrl: options.redisUrl } : {}),
    ...(options.throttling ? { policy: options.throttling } : {}),
    ...(options.throttlingKeyPrefix ? { keyPrefix: options.throttlingKeyPrefix } : {}),
  });
  const dependencies = { customers, sessions, guard, signingKey, lifetimes, clock: () => new Date(), inTransaction: transactionsOf(db) };
  try {
    const running = await startContextSubgraph<AccountsContext>(options, {
      name: 'accounts',
      moduleUrl: import.meta.url,
      db,
      statements,
      resolvers,
      routes: sessionRoutes({ jwks, sessions, gatewayPublicKey: options.gatewayPublicKey }),
      plugins: [sessionGrantPlugin<AccountsContext>()],
      createContext: (scope, request) => ({
        ...scope,
        ...dependencies,
        caller: { identity: scope.identity, clientAddress: clientAddressOf(request), requestedKind: requestedKindOf(request) },
        customerLoader: customers.createLoader(),
        addressLoader: customers.createAddressLoader(),
      }),
    });
    return {
      ...running,
      async stop() {
        await running.stop();
        await guard.close();
      },
    };
  } catch (error) {
    await guard.close();
    throw error;
  }
}
