/**
 * Whether an error means the database connection failed, not the statement: the server went away
 * (restart, failover, `pg_terminate_backend`), refused or dropped the socket, or is starting up.
 * Such a failure says nothing about the request: the same request on a new connection may well
 * succeed, so it is retryable, and a connection it happened on must not go back to a pool.
 *
 * node-postgres reports it as a server error with a SQLSTATE (57P01 when a backend is terminated),
 * a socket error (`ECONNRESET`, `ECONNREFUSED`), or its own "Connection terminated" when the
 * socket closed under it; Prisma 7 wraps any of these in a DriverAdapterError under `meta` or
 * `cause`, or answers with a P1xxx code of its own. The error chain is walked to find one.
 */
import { findInErrorChain, type DatabaseErrorShape } from './error-chain.ts';

/**
 * SQLSTATEs of a lost connection: class 08 (connection exception), 57P01 admin_shutdown
 * (terminated by an administrator or a fast shutdown), 57P02 crash_shutdown, 57P03
 * cannot_connect_now (the server is starting or in recovery).
 */
const lostStates = new Set(['57P01', '57P02', '57P03']);
const lostStateClass = '08';

/** Socket errors: the server is gone, unreachable or dropped the connection. */
const socketCodes = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/** Prisma's own codes: P1001 cannot reach the server, P1002 timed out reaching it, P1017 server closed the connection. */
const prismaCodes = new Set(['P1001', 'P1002', 'P1017']);

/** The Prisma driver adapter's kinds for the same (`DriverAdapterError.cause.kind`). */
const adapterKinds = new Set(['ConnectionClosed', 'DatabaseNotReachable', 'SocketTimeout']);

/** node-postgres's messages when the socket closed under a client or a client is left broken. */
const driverMessages = /^(Connection terminated|Client has encountered a connection error and is not queryable|Connection terminated due to connection timeout)/;

function isLostHere(error: DatabaseErrorShape): boolean {
  for (const code of [error.code, error.originalCode]) {
    if (typeof code !== 'string') continue;
    if (lostStates.has(code) || (code.length === 5 && code.startsWith(lostStateClass))) return true;
    if (socketCodes.has(code) || prismaCodes.has(code)) return true;
  }
  if (typeof error.kind === 'string' && adapterKinds.has(error.kind)) return true;
  return typeof error.message === 'string' && driverMessages.test(error.message);
}

/** Whether `error`, or an error it wraps, is a lost or refused database connection. */
export function isConnectionLost(error: unknown): boolean {
  return findInErrorChain(error, isLostHere) !== undefined;
}
