/**
 * The gateway as a process:
 *   node --import tsx gateway/main.ts [--supergraph schema/supergraph.graphql] [--port 4000]
 *     [--host 0.0.0.0] [--subgraph-url name=url …]
 * Flags win over the environment (SUPERGRAPH_PATH, GATEWAY_PORT, GATEWAY_HOST, SUBGRAPH_URL_<NAME>); both are
 * checked against platform/config/schema.ts before anything starts.
 * Subscriptions: GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION (100), GATEWAY_MAX_CONNECTIONS_PER_CALLER (20),
 * GATEWAY_CONNECTION_INIT_TIMEOUT_MS (3000), GATEWAY_KEEPALIVE_MS (12000), SUBSCRIPTION_UPSTREAM_RECONNECT_BUDGET_MS (60000).
 * Operation limits: GATEWAY_MAX_DEPTH, GATEWAY_MAX_ALIASES, GATEWAY_MAX_ROOT_FIELDS, GATEWAY_MAX_DIRECTIVES,
 * GATEWAY_MAX_TOKENS, GATEWAY_MAX_DOCUMENT_BYTES, GATEWAY_MAX_FIELDS (defaults in platform/graphql/operation-limits.ts),
 * GATEWAY_MAX_BODY_BYTES (128 KiB). Demand control: see plugins/demand-control.ts. Apps, rate limits and trusted
 * documents: GATEWAY_CLIENTS(_FILE), GATEWAY_UNKNOWN_CLIENTS, GATEWAY_RATE_LIMITS(_FILE), GATEWAY_TRUSTED_DOCUMENTS_DIR
 * (see plugins/client-awareness.ts, rate-limits.ts, trusted-documents.ts).
 * Sessions: AUTH_JWKS_URL (accounts' /.well-known/jwks.json), AUTH_REVOCATION_POLL_MS (2000), GATEWAY_CORS_ORIGINS,
 * GATEWAY_SESSION_COOKIE_SECURE (auto) (see plugins/sessions.ts, cors.ts, csrf.ts).
 * Resilience: GATEWAY_REQUEST_TIMEOUT_MS (10000), SUBGRAPH_TIMEOUT_MS, SUBGRAPH_RETRIES, SUBGRAPH_RETRY_DELAY_MS,
 * SUBGRAPH_BREAKER_FAILURES, SUBGRAPH_BREAKER_HALF_OPEN_AFTER_MS, SUBGRAPH_MAX_CONCURRENCY, SUBGRAPH_MAX_QUEUE (each
 * also per subgraph with a _<NAME> suffix; defaults in plugins/resilience.ts), GATEWAY_DEDUPLICATE_REQUESTS and
 * GATEWAY_DEDUPLICATE_SUBGRAPH_FETCHES (true).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { generateKeyPair } from 'jose';
import { intFromEnv, isProduction, keyNames, readSecret } from '../platform/config.ts';
import { checkConfiguration } from '../platform/config/validation.ts';
import { clientRegistryOptionsFromEnv } from './plugins/client-awareness.ts';
import { demandControlOptionsFromEnv } from './plugins/demand-control.ts';
import { rateLimitsOptionsFromEnv } from './plugins/rate-limits.ts';
import { documentStoresFromEnv } from './plugins/trusted-documents.ts';
import { operationLimitsFromEnv } from './plugins/operation-limits.ts';
import { resilienceOptionsFromEnv } from './plugins/resilience.ts';
import { sessionsOptionsFromEnv } from './plugins/sessions.ts';
import { GatewayIdentitySigner } from '../platform/identity/gateway-identity.ts';
import { importPrivateKey, importPublicKey, signingAlgorithm } from '../platform/identity/keys.ts';
import { createLogger, errorFields } from '../platform/logging/logger.ts';
import { stopOnSignals } from '../platform/process/lifecycle.ts';
import { gatewayMaxBodyBytes, startGateway } from './server.ts';

const log = createLogger('gateway');

/**
 * The flags as the variables they stand for (`--port` is GATEWAY_PORT, `--subgraph-url name=url`
 * is SUBGRAPH_URL_<NAME>), so that one check of the schema covers both, naming the flag.
 */
function flagsAsVariables(values: { supergraph?: string; port?: string; host?: string; 'subgraph-url'?: string[] }) {
  const env: Record<string, string> = {};
  const givenAs: Record<string, string> = {};
  const add = (name: string, value: string | undefined, flag: string) => {
    if (value === undefined) return;
    env[name] = value;
    givenAs[name] = flag;
  };
  add('SUPERGRAPH_PATH', values.supergraph, '--supergraph');
  add('GATEWAY_PORT', values.port, '--port');
  add('GATEWAY_HOST', values.host, '--host');
  for (const flag of values['subgraph-url'] ?? []) {
    const [name, url] = flag.split(/=(.*)/s);
    if (!name || !url) throw new Error(`--subgraph-url takes name=url, got "${flag}"`);
    add(`SUBGRAPH_URL_${name.toUpperCase()}`, url, `--subgraph-url ${name}`);
  }
  return { env, givenAs };
}

function subgraphUrlsFrom(flags: string[]): Record<string, string> {
  const urls: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    const match = /^SUBGRAPH_URL_(.+)$/.exec(name);
    if (match && value) urls[match[1]!.toLowerCase()] = value;
  }
  for (const flag of flags) {
    const [name, url] = flag.split(/=(.*)/s);
    if (!name || !url) throw new Error(`--subgraph-url takes name=url, got "${flag}"`);
    urls[name.toLowerCase()] = url;
  }
  return urls;
}

async function identitySigner(production: boolean): Promise<GatewayIdentitySigner> {
  const pem = readSecret(keyNames.gatewayIdentityPrivate);
  if (pem) return new GatewayIdentitySigner(await importPrivateKey(pem));
  if (production) throw new Error(`${keyNames.gatewayIdentityPrivate} (or _FILE) must be set in production`);
  // Lets the gateway front third-party subgraphs with no setup; ours will refuse it, by design.
  log.warn(`${keyNames.gatewayIdentityPrivate} is not set: signing identities with a throwaway key`);
  const { privateKey } = await generateKeyPair(signingAlgorithm);
  return new GatewayIdentitySigner(privateKey);
}

try {
  const { values } = parseArgs({
    options: {
      supergraph: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'subgraph-url': { type: 'string', multiple: true },
    },
  });
  // Before anything starts: a bad value, or a subgraph's name misspelled, stops the gateway here.
  const flags = flagsAsVariables(values);
  checkConfiguration({ ...process.env, ...flags.env }, ['gateway'], { givenAs: flags.givenAs });
  const production = isProduction();
  const supergraphPath = values.supergraph ?? process.env.SUPERGRAPH_PATH ?? 'schema/supergraph.graphql';
  const tokenKey = readSecret(keyNames.authTokenPublic);
  if (!tokenKey && production) throw new Error(`${keyNames.authTokenPublic} (or _FILE) must be set in production`);
  const rateLimits = rateLimitsOptionsFromEnv(process.env);
  const running = await startGateway({
    supergraphSdl: readFileSync(supergraphPath, 'utf8'),
    port: values.port ? Number(values.port) : intFromEnv('GATEWAY_PORT', 4000),
    host: values.host ?? process.env.GATEWAY_HOST ?? '0.0.0.0',
    subgraphUrls: subgraphUrlsFrom(values['subgraph-url'] ?? []),
    ...(tokenKey ? { customerTokenPublicKey: await importPublicKey(tokenKey) } : {}),
    sessions: sessionsOptionsFromEnv(process.env),
    corsOrigins: (process.env.GATEWAY_CORS_ORIGINS ?? '').split(',').map((origin) => origin.trim()).filter(Boolean),
    identitySigner: await identitySigner(production),
    production,
    requestTimeoutMs: intFromEnv('GATEWAY_REQUEST_TIMEOUT_MS', 10_000),
    resilience: resilienceOptionsFromEnv(process.env),
    deduplication: {
      requests: process.env.GATEWAY_DEDUPLICATE_REQUESTS !== 'false',
      subgraphFetches: process.env.GATEWAY_DEDUPLICATE_SUBGRAPH_FETCHES !== 'false',
    },
    limits: operationLimitsFromEnv(process.env),
    demandControl: demandControlOptionsFromEnv(process.env),
    clients: clientRegistryOptionsFromEnv(process.env),
    ...(rateLimits ? { rateLimits } : {}),
    trustedDocuments: documentStoresFromEnv(process.env),
    maxBodyBytes: intFromEnv('GATEWAY_MAX_BODY_BYTES', gatewayMaxBodyBytes),
    apolloTelemetry: process.env.APOLLO_TELEMETRY === 'true',
    subscriptions: {
      maxSubscriptionsPerConnection: intFromEnv('GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION', 100),
      maxConnectionsPerCaller: intFromEnv('GATEWAY_MAX_CONNECTIONS_PER_CALLER', 20),
      connectionInitWaitTimeoutMs: intFromEnv('GATEWAY_CONNECTION_INIT_TIMEOUT_MS', 3_000),
      keepAliveMs: intFromEnv('GATEWAY_KEEPALIVE_MS', 12_000),
      upstream: { reconnectBudgetMs: intFromEnv('SUBSCRIPTION_UPSTREAM_RECONNECT_BUDGET_MS', 60_000) },
    },
  });
  stopOnSignals('gateway', () => running.stop());
} catch (error) {
  log.error('could not start', errorFields(error));
  process.exit(1);
}
