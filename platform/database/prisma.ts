/**
 * Options every context's Prisma client is built with: the pg driver adapter (Prisma 7 needs no
 * native engine with it) and query events, which the statement counter listens to.
 *
 * Every connection of the pool runs with a `statement_timeout`: PostgreSQL cancels a statement
 * that runs longer (SQLSTATE 57014), so no request, however expensive, holds a connection and a
 * backend's memory for longer than that (docs/decisions/0011). Long-held session work (LISTEN,
 * advisory locks of the relay and the projector) runs on connections of its own, not these.
 */
import { PrismaPg } from '@prisma/adapter-pg';
import type pg from 'pg';
import { intFromEnv } from '../config.ts';
import { createLogger } from '../logging/logger.ts';
import { createPool } from './pool.ts';

/** Connections per context's Prisma client: `DATABASE_POOL_SIZE`, default 10. */
export function defaultPoolSize(): number {
  const configured = Number(process.env.DATABASE_POOL_SIZE);
  return Number.isInteger(configured) && configured > 0 ? configured : 10;
}

/**
 * How long one SQL statement of a context's Prisma client may run before PostgreSQL cancels it:
 * `DATABASE_STATEMENT_TIMEOUT_MS`, default 5000; `0` turns the timeout off.
 */
export function defaultStatementTimeoutMs(): number {
  const configured = intFromEnv('DATABASE_STATEMENT_TIMEOUT_MS', 5_000);
  if (configured < 0) throw new Error(`DATABASE_STATEMENT_TIMEOUT_MS must be 0 (off) or a positive number of milliseconds, got ${configured}`);
  return configured;
}

/**
 * How long a statement waits for a connection of a context's pool (one to come free, or a new one
 * to open) before it fails, and its request gets SERVICE_OVERLOADED instead of waiting on
 * (docs/decisions/0016): `DATABASE_CONNECTION_WAIT_MS`, default 3000. Below the gateway's
 * per-attempt subgraph timeout (5 s), so the client hears "try again" rather than a timeout.
 */
export function defaultConnectionWaitMs(): number {
  const configured = intFromEnv('DATABASE_CONNECTION_WAIT_MS', 3_000);
  if (configured <= 0) throw new Error(`DATABASE_CONNECTION_WAIT_MS must be a positive number of milliseconds, got ${configured}`);
  return configured;
}

export interface PrismaClientTuning {
  /** Connections of the pool. @default DATABASE_POOL_SIZE, else 10 */
  poolSize?: number;
  /** PostgreSQL `statement_timeout` of every connection, in ms; 0 is none. @default DATABASE_STATEMENT_TIMEOUT_MS, else 5_000 */
  statementTimeoutMs?: number;
  /** Longest wait for a connection of the pool, in ms. @default DATABASE_CONNECTION_WAIT_MS, else 3_000 */
  connectionWaitMs?: number;
}

/**
 * The pools of the Prisma clients this process opened, by database URL: what the pool metrics read
 * at scrape (platform/metrics/pool-metrics.ts). Prisma does not expose its adapter's pool; an ended
 * pool (its client disconnected) is dropped the next time pools are read or one is opened.
 */
const openPools = new Map<string, Set<pg.Pool>>();

/** The pools of Prisma clients open on `databaseUrl` in this process (usually one). */
export function prismaPoolsOf(databaseUrl: string): pg.Pool[] {
  const pools = openPools.get(databaseUrl);
  if (!pools) return [];
  for (const pool of pools) if (pool.ended) pools.delete(pool);
  if (pools.size === 0) openPools.delete(databaseUrl);
  return [...pools];
}

export function prismaClientOptions(databaseUrl: string, tuning: number | PrismaClientTuning = {}) {
  const { poolSize = defaultPoolSize(), statementTimeoutMs = defaultStatementTimeoutMs(), connectionWaitMs = defaultConnectionWaitMs() } = typeof tuning === 'number' ? { poolSize: tuning } : tuning;
  // node-postgres sends `statement_timeout` as a startup parameter of each connection.
  // Our own pool (pool.ts): every connection keeps an 'error' listener for life, so a restarted or
  // failed-over server never ends the process; the adapter ends the pool on $disconnect.
  const pool = createPool({
    connectionString: databaseUrl,
    max: poolSize,
    // connectionTimeoutMillis bounds the wait for a pooled connection (without it: forever).
    connectionTimeoutMillis: connectionWaitMs,
    ...(statementTimeoutMs > 0 ? { statement_timeout: statementTimeoutMs } : {}),
    logger: createLogger(`database.${databaseNameOf(databaseUrl)}`),
  });
  // Ended pools go when any pool is opened, so a process that opens many databases (tests) keeps none of theirs.
  for (const url of [...openPools.keys()]) prismaPoolsOf(url);
  openPools.set(databaseUrl, (openPools.get(databaseUrl) ?? new Set()).add(pool));
  return {
    adapter: new PrismaPg(pool, { disposeExternalPool: true }),
    // An interactive transaction waits as long for its connection as a statement does: past it, P2028, SERVICE_OVERLOADED.
    transactionOptions: { maxWait: connectionWaitMs },
    log: [{ emit: 'event' as const, level: 'query' as const }],
  };
}

/** Names the pool's logger: `database.<name>`. */
function databaseNameOf(databaseUrl: string): string {
  try {
    return decodeURIComponent(new URL(databaseUrl).pathname.slice(1)) || 'postgres';
  } catch {
    return 'postgres';
  }
}

/** PostgreSQL's `query_canceled`: what a statement cancelled by `statement_timeout` fails with. */
const queryCanceled = '57014';

/**
 * Whether a Prisma (or node-postgres) error is a statement PostgreSQL cancelled: Prisma 7 reports
 * it as P2010 with the driver adapter's error in `meta`, node-postgres with `code`.
 */
export function isStatementTimeout(error: unknown): boolean {
  const candidate = error as { code?: unknown; meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; code?: unknown } } }; cause?: { originalCode?: unknown; code?: unknown } } | null;
  if (!candidate || typeof candidate !== 'object') return false;
  if (candidate.code === queryCanceled) return true;
  const cause = candidate.meta?.driverAdapterError?.cause ?? candidate.cause;
  return cause?.originalCode === queryCanceled || cause?.code === queryCanceled;
}
