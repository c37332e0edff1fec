/**
 * Configuration read from the environment, in one place so that the README's table and the code
 * cannot drift apart. Every reader documents its variable and its default. Which raw values are
 * valid is said once, in platform/config/schema.ts, and checked when a process starts
 * (platform/config/validation.ts), so these readers only turn valid values into options.
 */
import { readFileSync } from 'node:fs';
import { contextNames, type ContextName } from './contexts.ts';

type Env = Record<string, string | undefined>;

/** `NODE_ENV=production` turns introspection and Sandbox off, masks errors and requires keys. */
export function isProduction(env: Env = process.env): boolean {
  return env.NODE_ENV === 'production';
}

/**
 * The database URL of one context:
 * 1. `<CONTEXT>_DATABASE_URL` (e.g. `ACCOUNTS_DATABASE_URL`) when set;
 * 2. else derived from `DATABASE_URL`, a server URL whose database name becomes a prefix:
 *    `postgres://h/commerce` gives `commerce_accounts`, `commerce_catalog`, …
 *    (no database name in the URL: prefix `commerce`);
 * 3. else `undefined`: `npm start` then runs an embedded PostgreSQL.
 */
export function databaseUrlFor(context: ContextName, env: Env = process.env): string | undefined {
  const own = env[`${context.toUpperCase()}_DATABASE_URL`];
  if (own) return withDatabasePassword(own, env);
  if (!env.DATABASE_URL) return undefined;
  return deriveDatabaseUrl(withDatabasePassword(env.DATABASE_URL, env), context);
}

/**
 * The URL with `DATABASE_PASSWORD` (or the file named by `DATABASE_PASSWORD_FILE`, as compose
 * and Kubernetes mount secrets; one trailing newline dropped) as its password, so that the
 * password need not be written into a URL in plain text. Like libpq's PGPASSWORD it only fills
 * in: a URL that carries its own password keeps it.
 */
export function withDatabasePassword(databaseUrl: string, env: Env = process.env): string {
  const password = readSecret('DATABASE_PASSWORD', env)?.replace(/\r?\n$/, '');
  if (!password) return databaseUrl;
  const url = new URL(databaseUrl);
  if (url.password) return databaseUrl;
  url.password = encodeURIComponent(password);
  return url.toString();
}

/** `postgres://h:5432/commerce` + `accounts` → `postgres://h:5432/commerce_accounts`. */
export function deriveDatabaseUrl(serverUrl: string, context: string): string {
  const url = new URL(serverUrl);
  const prefix = decodeURIComponent(url.pathname.replace(/^\//, '')) || 'commerce';
  url.pathname = `/${prefix}_${context}`;
  return url.toString();
}

/**
 * The PostgreSQL queue's database when each context has its own `<CONTEXT>_DATABASE_URL` and
 * there is no DATABASE_URL to derive `<prefix>_events` from (nor NATS_URL or
 * EVENT_BUS_DATABASE_URL): on the server of the first context, in `contextNames` order, named as
 * DATABASE_URL would have named it. The prefix is that context's database name without its
 * `_<context>` suffix (`…/shop_accounts` → `shop_events`), else `commerce` (`…/users` →
 * `commerce_events`). One answer for the whole platform, so every service shares one bus.
 * Returns which context it came from, for the start-up log; `undefined` when none is configured.
 */
export function eventBusDatabaseFromContexts(urls: Partial<Record<ContextName, string>>): { url: string; context: ContextName } | undefined {
  const context = contextNames.find((name) => urls[name]);
  if (!context) return undefined;
  const databaseUrl = urls[context]!;
  const suffix = `_${context}`;
  const database = databaseNameOf(databaseUrl);
  const prefix = database.endsWith(suffix) && database.length > suffix.length ? database.slice(0, -suffix.length) : 'commerce';
  return { url: withDatabase(databaseUrl, `${prefix}_events`), context };
}

/** Same server, another database (e.g. `postgres` to create or drop databases). */
export function withDatabase(databaseUrl: string, database: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export function databaseNameOf(databaseUrl: string): string {
  return decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, ''));
}

/**
 * A secret or key given either inline (`NAME`, PEM with real or `\n`-escaped newlines) or as a
 * file path (`NAME_FILE`, as Docker and Kubernetes secrets are mounted).
 */
export function readSecret(name: string, env: Env = process.env): string | undefined {
  const inline = env[name];
  if (inline) return inline.replace(/\\n/g, '\n');
  const file = env[`${name}_FILE`];
  if (file) return readFileSync(file, 'utf8');
  return undefined;
}

export function requireSecret(name: string, env: Env = process.env): string {
  const value = readSecret(name, env);
  if (!value) throw new Error(`${name} (or ${name}_FILE) must be set`);
  return value;
}

export function intFromEnv(name: string, fallback: number, env: Env = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value)) throw new Error(`${name} must be an integer, got "${raw}"`);
  return value;
}

/** Names of the key variables, shared by the gateway, the subgraphs and the tooling. */
export const keyNames = {
  /** Ed25519 private key (PKCS#8 PEM) with which accounts signs the tokens it gives clients. */
  authTokenPrivate: 'AUTH_TOKEN_PRIVATE_KEY',
  /** Its public key (SPKI PEM), with which the gateway verifies clients' bearer tokens. */
  authTokenPublic: 'AUTH_TOKEN_PUBLIC_KEY',
  /** Ed25519 private key with which the gateway signs the identity it forwards to subgraphs. */
  gatewayIdentityPrivate: 'GATEWAY_IDENTITY_PRIVATE_KEY',
  /** Its public key, with which every subgraph verifies that a request came through the gateway. */
  gatewayIdentityPublic: 'GATEWAY_IDENTITY_PUBLIC_KEY',
} as const;
