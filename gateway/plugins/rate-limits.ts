/**
 * Rate limits, declared in configuration (docs/decisions/0024), on every transport:
 * - per caller (the signed-in customer, else the address): every HTTP request, multipart / SSE
 *   stream, WebSocket and graphql-ws `subscribe`, counted before the document is validated;
 * - per operation, per caller: each root field of the operation (`signIn`, `signUp`,
 *   `placeOrder`…), counted once per time it is selected (aliases included). Root fields, not
 *   operation names: a client names its operations as it likes, so a limit on `SignIn` would be
 *   evaded by calling it `Anything`;
 * - per client app: the whole app's traffic, every caller together (a runaway release).
 * Over a limit: RATE_LIMITED, HTTP 429 with `Retry-After` (HTTP, multipart, SSE), the graphql-ws
 * `error` message of the `subscribe`, or close 4429 for a WebSocket refused at `connection_init`.
 * Counted in Redis when one is configured, so gateway replicas share the limits; in memory
 * otherwise, and in each replica's memory while Redis is unreachable.
 */
import { readFileSync } from 'node:fs';
import { Kind, type DocumentNode, type SelectionSetNode } from 'graphql';
import type { Redis } from 'ioredis';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { createLogger } from '../../platform/logging/logger.ts';
import { closeRedis, connectRedis, firstConnection } from '../../platform/redis/connection.ts';
import { retryAfterSecondsOf, sharedLimiter } from '../../platform/redis/limiter.ts';
import type { ClientConnection, GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';

type Env = Record<string, string | undefined>;

export const RateLimitCode = { RATE_LIMITED: 'RATE_LIMITED' } as const;

/** At most `points` per `durationSeconds`. */
export interface RateLimit {
  points: number;
  durationSeconds: number;
}

/** The limits, as `GATEWAY_RATE_LIMITS` declares them. */
export interface RateLimitRules {
  /** Every operation and connection of one caller. `null` turns it off. @default { points: 1200, durationSeconds: 60 } */
  caller?: RateLimit | null;
  /** Per root field, per caller. @default defaultOperationLimits */
  operations?: Record<string, RateLimit>;
  /** Per client app (by the name it sends), all its callers together. @default {} */
  clients?: Record<string, RateLimit>;
}

export interface RateLimitsOptions extends RateLimitRules {
  /**
   * Where the counts are kept: a Redis URL (the plugin connects, and disconnects on stop) or a
   * connected ioredis client (the caller keeps ownership). Unset: this process's memory.
   * @default undefined
   */
  redis?: string | Redis;
  /** Prefix of the keys in Redis. @default 'gateway:rate-limit' */
  keyPrefix?: string;
}

/**
 * Tighter for what an attacker would repeat: guessing passwords (accounts also locks each
 * account, decision 0022), creating accounts, placing orders that hold stock.
 */
export const defaultOperationLimits: Readonly<Record<string, RateLimit>> = {
  signIn: { points: 20, durationSeconds: 60 },
  signUp: { points: 10, durationSeconds: 3600 },
  refreshSession: { points: 60, durationSeconds: 60 },
  changePassword: { points: 10, durationSeconds: 3600 },
  placeOrder: { points: 60, durationSeconds: 60 },
};

export const defaultCallerLimit: RateLimit = { points: 1200, durationSeconds: 60 };

/**
 * `GATEWAY_RATE_LIMITS` (JSON) or `GATEWAY_RATE_LIMITS_FILE` (a JSON file), e.g.
 * `{ "caller": { "points": 600, "durationSeconds": 60 }, "operations": { "signIn": { "points": 5, "durationSeconds": 60 } }, "clients": { "ios": { "points": 100000, "durationSeconds": 60 } } }`;
 * each of the three replaces its default whole. `off` turns rate limits off (undefined). `REDIS_URL` shares them.
 */
export function rateLimitsOptionsFromEnv(env: Env = process.env): RateLimitsOptions | undefined {
  const inline = env.GATEWAY_RATE_LIMITS?.trim();
  if (inline === 'off') return undefined;
  const text = inline || (env.GATEWAY_RATE_LIMITS_FILE ? readFileSync(env.GATEWAY_RATE_LIMITS_FILE, 'utf8') : undefined);
  let rules: RateLimitRules = {};
  if (text) {
    try {
      rules = JSON.parse(text) as RateLimitRules;
    } catch (error) {
      throw new Error(`GATEWAY_RATE_LIMITS${inline ? '' : '_FILE'} is not valid JSON: ${(error as Error).message}`);
    }
  }
  return { ...rules, ...(env.REDIS_URL ? { redis: env.REDIS_URL } : {}) };
}

const log = createLogger('gateway.rate-limits');

function checked(what: string, limit: RateLimit): RateLimit {
  if (!limit || !Number.isInteger(limit.points) || limit.points < 1) throw new Error(`rate limit ${what}: points must be a positive integer`);
  if (!Number.isInteger(limit.durationSeconds) || limit.durationSeconds < 1) throw new Error(`rate limit ${what}: durationSeconds must be a positive integer`);
  return limit;
}

/** One declared limit and where it counts. */
interface Bucket {
  readonly limit: RateLimit;
  readonly limiter: RateLimiterAbstract;
}

export function rateLimits(options: RateLimitsOptions = {}): GatewayPlugin {
  const prefix = options.keyPrefix ?? 'gateway:rate-limit';
  const owned = typeof options.redis === 'string' ? connectRedis(options.redis, { purpose: 'rate limits', whileDown: 'each replica counts in its own memory until it is back', log }) : undefined;
  const client = owned ?? (options.redis as Redis | undefined);
  const connected = client ? firstConnection(client, 1_000) : Promise.resolve();
  const bucket = (name: string, limit: RateLimit): Bucket => {
    const limiter = sharedLimiter({ points: checked(name, limit).points, duration: limit.durationSeconds, keyPrefix: `${prefix}:${name}` }, client);
    return { limit, limiter };
  };
  const callerLimit = options.caller === null ? undefined : bucket('caller', options.caller ?? defaultCallerLimit);
  const operations = new Map(Object.entries(options.operations ?? defaultOperationLimits).map(([field, limit]) => [field, bucket(`operation:${field}`, limit)]));
  const clients = new Map(Object.entries(options.clients ?? {}).map(([name, limit]) => [name, bucket(`client:${name}`, limit)]));

  /** Spends `points` of the bucket for `key`, or refuses with the limit's words. */
  const spend = async (found: Bucket, key: string, points: number, what: string, details: Record<string, unknown>) => {
    await connected;
    try {
      await found.limiter.consume(key, points);
    } catch (rejection) {
      const retryAfterSeconds = retryAfterSecondsOf(rejection);
      throw new GatewayRefusal(RateLimitCode.RATE_LIMITED, `Rate limit: at most ${found.limit.points} ${what} per ${found.limit.durationSeconds} s; try again in ${retryAfterSeconds} s`, {
        status: 429,
        retryAfterSeconds,
        details: { limit: found.limit.points, durationSeconds: found.limit.durationSeconds, ...details },
      });
    }
  };

  /** A request, stream, socket or `subscribe`: one point of the caller's limit and of its app's. */
  const request = async (connection: ClientConnection) => {
    if (callerLimit) await spend(callerLimit, connection.caller, 1, 'requests from one caller', { scope: 'caller' });
    const app = connection.client.name !== undefined ? clients.get(connection.client.name) : undefined;
    if (app) await spend(app, connection.client.name!, 1, `requests from the app ${connection.client.name}`, { scope: 'client', client: connection.client.name });
  };

  return {
    name: 'rate-limits',
    // HTTP requests and streams are their own connection; a WebSocket's subscribes are counted as they arrive.
    onConnection: (connection) => request(connection),
    onOperationReceived: (connection) => request(connection),
    async onOperation(operation) {
      if (operations.size === 0) return;
      const counts = rootFieldCounts(operation.document, operation.operation.selectionSet);
      for (const [field, times] of counts) {
        const found = operations.get(field);
        if (found) await spend(found, operation.connection.caller, times, `${field} per caller`, { scope: 'operation', operation: field });
      }
    },
    async stop() {
      await closeRedis(owned);
    },
  };
}

/**
 * How many times each root field is selected, through fragments (each fragment entered once per
 * path, at most 1,000 selections looked at: validation has already refused cycles, and a root
 * selection set is small).
 */
function rootFieldCounts(document: DocumentNode, selectionSet: SelectionSetNode): Map<string, number> {
  const fragments = new Map(document.definitions.flatMap((definition) => (definition.kind === Kind.FRAGMENT_DEFINITION ? [[definition.name.value, definition] as const] : [])));
  const counts = new Map<string, number>();
  let budget = 1_000;
  const visit = (set: SelectionSetNode, entered: ReadonlySet<string>) => {
    for (const selection of set.selections) {
      if (--budget < 0) return;
      if (selection.kind === Kind.FIELD) counts.set(selection.name.value, (counts.get(selection.name.value) ?? 0) + 1);
      else if (selection.kind === Kind.INLINE_FRAGMENT) visit(selection.selectionSet, entered);
      else {
        const fragment = fragments.get(selection.name.value);
        if (fragment && !entered.has(fragment.name.value)) visit(fragment.selectionSet, new Set([...entered, fragment.name.value]));
      }
    }
  };
  visit(selectionSet, new Set());
  return counts;
}
