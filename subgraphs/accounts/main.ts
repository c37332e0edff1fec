/** The accounts subgraph as its own process: `node --import tsx subgraphs/accounts/main.ts`. */
import { intFromEnv, keyNames, requireSecret } from '../../platform/config.ts';
import { importPrivateKey } from '../../platform/identity/keys.ts';
import { runContextProcess } from '../../platform/subgraph/process.ts';
import { startAccountsSubgraph } from './subgraph.ts';

await runContextProcess('accounts', async (base) =>
  startAccountsSubgraph({
    ...base,
    authTokenPrivateKey: await importPrivateKey(requireSecret(keyNames.authTokenPrivate)),
    tokenTtlSeconds: intFromEnv('AUTH_TOKEN_TTL_SECONDS', 3600),
  }),
);
