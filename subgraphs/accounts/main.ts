/** The accounts subgraph as its own process: `node --import tsx subgraphs/accounts/main.ts`. */
import { intFromEnv, keyNames, readSecret, requireSecret } from '../../platform/config.ts';
import { importPrivateKey, importPublicKeys } from '../../platform/identity/keys.ts';
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { defaultSessionLifetimes } from './domain/session.ts';
import { startAccountsSubgraph } from './subgraph.ts';

await runContextProcess('accounts', async (base) =>
  startAccountsSubgraph({
    ...base,
    authTokenPrivateKey: await importPrivateKey(requireSecret(keyNames.authTokenPrivate)),
    // PEMs one after another: the keys signed with before the last rotations (docs/decisions/0022).
    retiredTokenPublicKeys: await importPublicKeys(readSecret('AUTH_TOKEN_RETIRED_PUBLIC_KEYS')),
    sessionLifetimes: {
      accessTokenTtlSeconds: intFromEnv('AUTH_ACCESS_TOKEN_TTL_SECONDS', defaultSessionLifetimes.accessTokenTtlSeconds),
      webSessionTtlSeconds: intFromEnv('AUTH_WEB_SESSION_TTL_SECONDS', defaultSessionLifetimes.webSessionTtlSeconds),
      refreshTokenTtlSeconds: intFromEnv('AUTH_REFRESH_TOKEN_TTL_SECONDS', defaultSessionLifetimes.refreshTokenTtlSeconds),
    },
    // Sign-in failures are counted in Redis when there is one, else in the accounts database.
    ...(process.env.REDIS_URL ? { redisUrl: process.env.REDIS_URL } : {}),
  }),
);
