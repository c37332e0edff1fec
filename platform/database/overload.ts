/**
 * Whether a database error means "too busy now", not "wrong": the pool had no connection to give
 * in time, PostgreSQL refused one more connection, or the write queue shed the work. Such a
 * request did nothing (a transaction that never started, or was refused before it started), so
 * the client may simply try again later: it gets SERVICE_OVERLOADED with HTTP 503 and
 * `Retry-After` (docs/decisions/0016), not an internal error.
 *
 * How each arrives (Prisma 7 with the pg driver adapter):
 * - Prisma's interactive transaction waited `maxWait` for a connection: P2028 "Transaction API
 *   error: Unable to start a transaction in the given time." Prisma discards the late connection
 *   (rolled back, released), so nothing of the transaction ran. Other P2028s ("expired
 *   transaction", "already closed") are NOT overload: they ran too long, a bug or a lock.
 * - node-postgres's pool waited `connectionTimeoutMillis` for a free connection: a plain Error
 *   "timeout exceeded when trying to connect", which the driver adapter passes through as it is.
 * - PostgreSQL's too_many_connections (SQLSTATE 53300: the server's `max_connections`, a role's or
 *   a database's connection limit): P2037 "Too many database connections opened", or P2010 (raw
 *   queries) with the driver adapter's error under `meta`; a bare pg error with `code`.
 * - The write queue (write-queue.ts) refused or timed the work out: ServiceOverloaded.
 *
 * A connection that cannot be opened at all (server down, restarting) is a lost connection, not
 * overload: connection-loss.ts.
 */
import { findInErrorChain, type DatabaseErrorShape } from './error-chain.ts';

/** PostgreSQL's too_many_connections. */
const tooManyConnections = '53300';

/** Prisma's codes for the same: P2037 too many connections; P2024 its own pool's timeout (engines without a driver adapter). */
const prismaOverloadCodes = new Set(['P2037', 'P2024']);

/** P2028 is Prisma's code for every interactive-transaction failure: only this one is overload. */
const transactionNotStarted = /Unable to start a transaction in the given time/;

/** node-postgres's pool (pg-pool) when no connection was free within `connectionTimeoutMillis`. */
const poolTimeout = /^timeout exceeded when trying to connect$/;

/** Seconds a client is told to wait when nothing better is known: a burst drains in about that. */
export const defaultRetryAfterSeconds = 1;

/**
 * The work was refused before it started because the service is at capacity. Its `extensions`
 * are what graphql-js gives the GraphQL error a resolver's throw becomes, so logs and clients see
 * the code, not an internal error.
 */
export class ServiceOverloaded extends Error {
  override readonly name = 'ServiceOverloaded';
  readonly code = 'SERVICE_OVERLOADED';
  readonly extensions: { code: 'SERVICE_OVERLOADED'; retryAfter: number };

  constructor(
    /** Why, for logs (`write queue full`, …); clients get a message of their own. */
    reason: string,
    readonly retryAfterSeconds: number = defaultRetryAfterSeconds,
  ) {
    super(`Service overloaded: ${reason}`);
    this.extensions = { code: 'SERVICE_OVERLOADED', retryAfter: retryAfterSeconds };
  }
}

function isOverloadedHere(error: DatabaseErrorShape): boolean {
  if (error instanceof ServiceOverloaded || error.name === 'BulkheadRejectedError') return true;
  if (error.code === tooManyConnections || error.originalCode === tooManyConnections || error.kind === 'TooManyConnections') return true;
  if (typeof error.code === 'string' && prismaOverloadCodes.has(error.code)) return true;
  if (typeof error.message !== 'string') return false;
  if (error.code === 'P2028') return transactionNotStarted.test(error.message);
  return poolTimeout.test(error.message);
}

/** Whether `error`, or an error it wraps (GraphQL → Prisma → driver adapter → pg), is overload. */
export function isOverloaded(error: unknown): boolean {
  return overloadOf(error) !== undefined;
}

/** The overload error in `error`'s chain, if any (to read its `retryAfterSeconds`). */
export function overloadOf(error: unknown): DatabaseErrorShape | undefined {
  return findInErrorChain(error, isOverloadedHere);
}

/** How long the client should wait before trying again, in whole seconds (at least 1); undefined when `error` is not overload. */
export function retryAfterOf(error: unknown): number | undefined {
  const overload = overloadOf(error);
  if (!overload) return undefined;
  const seconds = overload instanceof ServiceOverloaded ? overload.retryAfterSeconds : defaultRetryAfterSeconds;
  return Math.max(1, Math.ceil(seconds));
}
