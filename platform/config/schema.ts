/**
 * Every environment variable of the platform, with what a valid value looks like, in one zod
 * schema per variable. The readers (platform/config.ts `intFromEnv`, `readSecret`, the plugins'
 * `…FromEnv`) keep turning values into options and defaults; this schema only says which raw
 * values are acceptable, so that a typo stops a process at start, naming the variable, instead of
 * silently meaning a default (`LOG_LEVEL=verbose`, `NODE_ENV=prod`) or failing later, deep inside
 * Node (`--port abc`). The README's configuration table is checked against this list
 * (test/configuration-docs.test.ts), so the two cannot drift apart.
 */
import { z } from 'zod';
import { contextNames } from '../contexts.ts';

/** The levels platform/logging/logger.ts knows (its `order`); test/configuration-validation.test.ts holds them equal. */
export const logLevels = ['debug', 'info', 'warn', 'error'] as const;

/**
 * Who reads a variable; a process checks the variables of its own scopes (`npm start` checks those
 * of every service it starts, before it starts any). `tests` and `tools` are read by the test
 * support and the scripts (bench, migrate, storefront), which check nothing at start.
 */
export type Scope = 'gateway' | 'subgraphs' | 'start' | 'tests' | 'tools';

export interface Variable {
  /** A valid raw value; its error message says what is expected. An empty value counts as unset. */
  schema: z.ZodType<unknown, string>;
  scopes: readonly Scope[];
  /** A key or password: its value is never printed, valid or not. */
  secret?: true;
  /** Also given as `<NAME>_FILE`, a path to a file holding the value (platform/config.ts readSecret). */
  file?: true;
  /** A URL that may carry a password: printed with the password masked. */
  url?: true;
}

const services: Scope[] = ['gateway', 'subgraphs', 'start'];
const gateway: Scope[] = ['gateway'];
const subgraphs: Scope[] = ['subgraphs'];
const start: Scope[] = ['start'];
const tests: Scope[] = ['tests'];
const tools: Scope[] = ['tools'];

/** An integer in decimal, within bounds (`*_MS`, sizes, counts). */
export function integer(min?: number, max?: number, described?: string): z.ZodType<number, string> {
  const expected =
    described ??
    (min !== undefined && max !== undefined ? `an integer from ${min} to ${max}` : min !== undefined ? `an integer, at least ${min}` : 'an integer');
  // What platform/config.ts intFromEnv accepts (`Number(raw)` is an integer), and within bounds.
  return z
    .string()
    .transform(Number)
    .refine((value) => Number.isInteger(value) && (min === undefined || value >= min) && (max === undefined || value <= max), expected);
}

export const port = integer(0, 65535, 'a port, an integer from 0 to 65535');

export function oneOf(...values: [string, ...string[]]): z.ZodType<string, string> {
  return z.string().refine((value) => values.includes(value), `one of ${values.join(', ')}`);
}

export const boolean = oneOf('true', 'false');

function parses(value: string, protocols: readonly string[]): boolean {
  try {
    return protocols.includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** An absolute URL of one of the given protocols (`postgres:`), or several, comma-separated. */
export function url(protocols: readonly string[], { list = false } = {}): z.ZodType<string, string> {
  const example = `${protocols[0]}//…`;
  const expected = list ? `comma-separated URLs (${example}, …)` : `a URL (${example})`;
  return z.string().refine((value) => (list ? value.split(',').map((part) => part.trim()) : [value]).every((part) => parses(part, protocols)), expected);
}

const postgresUrl = url(['postgres:', 'postgresql:']);
const redisUrl = url(['redis:', 'rediss:']);
const natsUrls = url(['nats:', 'tls:', 'ws:', 'wss:'], { list: true });
const httpUrl = url(['http:', 'https:']);

function isJson(value: string): boolean {
  try {
    JSON.parse(value);
    return true;
  } catch {
    return false;
  }
}

export const json = z.string().refine(isJson, 'JSON');

/** Any text that is not only blanks: names, paths, host names, PEMs. */
export const text = z.string().refine((value) => value.trim() !== '', 'some text');

const milliseconds = integer(0);

/** What platform/events/bus/nats-jetstream.ts accepts: a subject prefix without wildcards. */
const subjectPrefix = z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'dot-separated tokens of letters, digits, _ or - (no wildcards)');
/** NATS refuses stream names with blanks, dots, wildcards or path separators. */
const natsStream = z.string().regex(/^[^\s.*>/\\]+$/, 'a stream name without blanks, dots, wildcards or slashes');
const positive = integer(1);

/** The resilience settings of the gateway; each also takes a `_<NAME>` suffix for one subgraph. */
export const perSubgraphSettings = {
  SUBGRAPH_TIMEOUT_MS: positive,
  SUBGRAPH_RETRIES: integer(0),
  SUBGRAPH_RETRY_DELAY_MS: milliseconds,
  SUBGRAPH_BREAKER_FAILURES: positive,
  SUBGRAPH_BREAKER_HALF_OPEN_AFTER_MS: positive,
  SUBGRAPH_MAX_CONCURRENCY: positive,
  SUBGRAPH_MAX_QUEUE: integer(0),
} as const;

const perContext = (suffix: string, variable: Variable) => Object.fromEntries(contextNames.map((context) => [`${context.toUpperCase()}${suffix}`, variable]));

/** `SUBGRAPH_URL_<NAME>`: one per subgraph the gateway routes to another address. */
export const subgraphUrlPrefix = 'SUBGRAPH_URL_';
export const subgraphUrl: Variable = { schema: httpUrl, scopes: gateway };

export const variables: Record<string, Variable> = {
  NODE_ENV: { schema: oneOf('development', 'production', 'test'), scopes: services },
  LOG_LEVEL: { schema: oneOf(...logLevels), scopes: services },
  LOG_STACKS: { schema: boolean, scopes: services },
  LOG_FORMAT: { schema: oneOf('json', 'pretty'), scopes: services },
  // Traces (platform/tracing): the standard OpenTelemetry variables; the exporter reads the others it knows.
  OTEL_EXPORTER_OTLP_ENDPOINT: { schema: httpUrl, scopes: services, url: true },
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: { schema: httpUrl, scopes: services, url: true },
  DATABASE_URL: { schema: postgresUrl, scopes: [...subgraphs, ...start], url: true },
  ...perContext('_DATABASE_URL', { schema: postgresUrl, scopes: [...subgraphs, ...start], url: true }),
  DATABASE_PASSWORD: { schema: text, scopes: [...subgraphs, ...start], secret: true, file: true },
  DATABASE_POOL_SIZE: { schema: positive, scopes: subgraphs },
  DATABASE_STATEMENT_TIMEOUT_MS: { schema: milliseconds, scopes: subgraphs },
  DATABASE_CONNECTION_WAIT_MS: { schema: positive, scopes: subgraphs },
  DATABASE_WRITE_CONCURRENCY: { schema: positive, scopes: subgraphs },
  DATABASE_WRITE_QUEUE: { schema: integer(0), scopes: subgraphs },
  DATA_DIR: { schema: text, scopes: start },
  EMBEDDED_POSTGRES_PORT: { schema: port, scopes: start },
  SEED_DEMO_DATA: { schema: boolean, scopes: start },
  DEMO_ADMIN_PASSWORD: { schema: text, scopes: start, secret: true, file: true },
  GATEWAY_PORT: { schema: port, scopes: [...gateway, ...start] },
  GATEWAY_HOST: { schema: text, scopes: gateway },
  SUPERGRAPH_PATH: { schema: text, scopes: gateway },
  GATEWAY_REQUEST_TIMEOUT_MS: { schema: positive, scopes: gateway },
  ...Object.fromEntries(Object.entries(perSubgraphSettings).map(([name, schema]) => [name, { schema, scopes: gateway }])),
  GATEWAY_DEDUPLICATE_REQUESTS: { schema: boolean, scopes: gateway },
  GATEWAY_DEDUPLICATE_SUBGRAPH_FETCHES: { schema: boolean, scopes: gateway },
  GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION: { schema: positive, scopes: gateway },
  GATEWAY_MAX_CONNECTIONS_PER_CALLER: { schema: positive, scopes: gateway },
  GATEWAY_MAX_BODY_BYTES: { schema: positive, scopes: gateway },
  GATEWAY_MAX_DEPTH: { schema: positive, scopes: gateway },
  GATEWAY_MAX_ALIASES: { schema: positive, scopes: gateway },
  GATEWAY_MAX_ROOT_FIELDS: { schema: positive, scopes: gateway },
  GATEWAY_MAX_FIELDS: { schema: positive, scopes: gateway },
  GATEWAY_MAX_DIRECTIVES: { schema: positive, scopes: gateway },
  GATEWAY_MAX_TOKENS: { schema: positive, scopes: gateway },
  GATEWAY_MAX_DOCUMENT_BYTES: { schema: positive, scopes: gateway },
  GATEWAY_MAX_COST: { schema: positive, scopes: gateway },
  GATEWAY_COST_BUDGET: { schema: integer(0), scopes: gateway },
  GATEWAY_COST_BUDGET_WINDOW_SECONDS: { schema: positive, scopes: gateway },
  REDIS_URL: { schema: redisUrl, scopes: [...gateway, ...subgraphs], url: true },
  GATEWAY_CLIENTS: { schema: json, scopes: gateway },
  GATEWAY_CLIENTS_FILE: { schema: text, scopes: gateway },
  GATEWAY_UNKNOWN_CLIENTS: { schema: oneOf('refuse', 'allow'), scopes: gateway },
  GATEWAY_RATE_LIMITS: { schema: z.string().refine((value) => value === 'off' || isJson(value), 'JSON, or off'), scopes: gateway },
  GATEWAY_RATE_LIMITS_FILE: { schema: text, scopes: gateway },
  GATEWAY_TRUSTED_DOCUMENTS_DIR: { schema: text, scopes: [...gateway, ...tools] },
  GATEWAY_CONNECTION_INIT_TIMEOUT_MS: { schema: positive, scopes: gateway },
  GATEWAY_KEEPALIVE_MS: { schema: positive, scopes: gateway },
  SUBSCRIPTION_UPSTREAM_RECONNECT_BUDGET_MS: { schema: positive, scopes: gateway },
  APOLLO_TELEMETRY: { schema: boolean, scopes: gateway },
  ...perContext('_PORT', { schema: port, scopes: [...subgraphs, ...start] }),
  SAGA_STEP_TIMEOUT_MS: { schema: positive, scopes: subgraphs },
  ORDER_RETURN_WINDOW_DAYS: { schema: integer(0), scopes: subgraphs },
  EVENT_REDELIVERY_AFTER_MS: { schema: positive, scopes: subgraphs },
  ORDER_SNAPSHOT_EVERY: { schema: positive, scopes: subgraphs },
  PAYMENT_PROVIDER_SLOW_DELAY_MS: { schema: milliseconds, scopes: subgraphs },
  PORT: { schema: port, scopes: subgraphs },
  HOST: { schema: text, scopes: subgraphs },
  MIGRATE_ON_START: { schema: boolean, scopes: subgraphs },
  AUTH_TOKEN_PRIVATE_KEY: { schema: text, scopes: [...subgraphs, ...start], secret: true, file: true },
  AUTH_TOKEN_PUBLIC_KEY: { schema: text, scopes: [...gateway, ...start], secret: true, file: true },
  AUTH_JWKS_URL: { schema: httpUrl, scopes: gateway },
  AUTH_REVOCATION_POLL_MS: { schema: positive, scopes: gateway },
  GATEWAY_CORS_ORIGINS: { schema: url(['http:', 'https:'], { list: true }), scopes: gateway },
  GATEWAY_SESSION_COOKIE_SECURE: { schema: oneOf('auto', 'true', 'false'), scopes: gateway },
  AUTH_ACCESS_TOKEN_TTL_SECONDS: { schema: positive, scopes: subgraphs },
  AUTH_WEB_SESSION_TTL_SECONDS: { schema: positive, scopes: subgraphs },
  AUTH_REFRESH_TOKEN_TTL_SECONDS: { schema: positive, scopes: subgraphs },
  AUTH_TOKEN_RETIRED_PUBLIC_KEYS: { schema: text, scopes: subgraphs, secret: true, file: true },
  GATEWAY_IDENTITY_PRIVATE_KEY: { schema: text, scopes: [...gateway, ...start], secret: true, file: true },
  GATEWAY_IDENTITY_PUBLIC_KEY: { schema: text, scopes: [...subgraphs, ...start], secret: true, file: true },
  NATS_URL: { schema: natsUrls, scopes: [...subgraphs, ...start, ...tools], url: true },
  NATS_STREAM: { schema: natsStream, scopes: [...subgraphs, ...tools] },
  NATS_SUBJECT_PREFIX: { schema: subjectPrefix, scopes: [...subgraphs, ...tools] },
  EVENT_BUS_DATABASE_URL: { schema: postgresUrl, scopes: [...subgraphs, ...start, ...tools], url: true },
  OUTBOX_RETENTION_HOURS: { schema: positive, scopes: subgraphs },
  TEST_DATABASE_URL: { schema: postgresUrl, scopes: tests, url: true },
  TEST_NATS_URL: { schema: natsUrls, scopes: tests, url: true },
  TEST_REDIS_URL: { schema: redisUrl, scopes: tests, url: true },
  CHROMIUM_PATH: { schema: text, scopes: tests },
  ORDER_PROPERTIES_SEED: { schema: integer(), scopes: tests },
  ORDER_PROPERTIES_VERBOSE: { schema: text, scopes: tests },
  STOREFRONT_GATEWAY_URL: { schema: httpUrl, scopes: tools },
  STANDBY_CONFIG_FILE: { schema: text, scopes: tests },
  BENCH_DATABASE_URL: { schema: postgresUrl, scopes: tools, url: true },
  PGBENCH: { schema: text, scopes: tools },
  CHAOS_QUICK: { schema: boolean, scopes: tools },
  NATS_SERVER_BIN: { schema: text, scopes: tools },
  MIGRATE_SERVER_URL: { schema: postgresUrl, scopes: tools, url: true },
};
