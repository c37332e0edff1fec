/**
 * The error vocabulary of the platform. Every error a client may see carries an
 * `extensions.code` it can branch on and a message a person can act on; anything else is an
 * internal error and is masked in production.
 */
import { GraphQLError } from 'graphql';

export const ErrorCode = {
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  OUT_OF_STOCK: 'OUT_OF_STOCK',
  PAYMENT_DECLINED: 'PAYMENT_DECLINED',
  /** A cancellation the order's progress refuses: `extensions.reason` says why (ALREADY_DISPATCHED). */
  CANCELLATION_REFUSED: 'CANCELLATION_REFUSED',
  INTERNAL_SERVER_ERROR: 'INTERNAL_SERVER_ERROR',
  /** The request itself is malformed (not its input values): wrong transport, operation kind, shape. */
  BAD_REQUEST: 'BAD_REQUEST',
  /** A subgraph a subscription depends on went away and did not come back in time. */
  SUBGRAPH_UNAVAILABLE: 'SUBGRAPH_UNAVAILABLE',
  /** A subgraph did not answer before the request's deadline: trying again may succeed. */
  SUBGRAPH_TIMEOUT: 'SUBGRAPH_TIMEOUT',
  /** A connection opened more subscriptions than the gateway allows. */
  TOO_MANY_SUBSCRIPTIONS: 'TOO_MANY_SUBSCRIPTIONS',
  /** A subscriber read its events too slowly and was let go. */
  SUBSCRIBER_TOO_SLOW: 'SUBSCRIBER_TOO_SLOW',
  /** A caller holds as many subscription connections (WebSockets and HTTP streams) as allowed. */
  TOO_MANY_CONNECTIONS: 'TOO_MANY_CONNECTIONS',
  /**
   * The service is at capacity (database pool exhausted, load shed by a bulkhead): nothing was
   * written, try again after `Retry-After`. HTTP 503.
   */
  SERVICE_OVERLOADED: 'SERVICE_OVERLOADED',
  /**
   * Too many failed sign-ins (or sign-ups) from this address or for this account: try again after
   * `extensions.retryAfter` seconds. The gateway answers it with HTTP 429 and `Retry-After`.
   */
  TOO_MANY_ATTEMPTS: 'TOO_MANY_ATTEMPTS',
  /**
   * The gateway removed a field the caller may not see (`@authenticated`, `@requiresScopes`,
   * `@policy`): it is null, the rest of the data is served. Apollo Router's code.
   */
  UNAUTHORIZED_FIELD_OR_TYPE: 'UNAUTHORIZED_FIELD_OR_TYPE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Codes whose messages are written for clients and pass through masking unchanged (so do errors
 * that ask for a 4xx status, such as every GatewayRefusal: masking.ts `isClientError`).
 */
export const clientErrorCodes: ReadonlySet<string> = new Set([
  ErrorCode.BAD_USER_INPUT,
  ErrorCode.UNAUTHENTICATED,
  ErrorCode.FORBIDDEN,
  ErrorCode.NOT_FOUND,
  ErrorCode.CONFLICT,
  ErrorCode.OUT_OF_STOCK,
  ErrorCode.PAYMENT_DECLINED,
  ErrorCode.CANCELLATION_REFUSED,
  ErrorCode.SUBGRAPH_UNAVAILABLE,
  // Its message names no subgraph ("A service this request depends on did not answer in time").
  ErrorCode.SUBGRAPH_TIMEOUT,
  ErrorCode.TOO_MANY_SUBSCRIPTIONS,
  ErrorCode.SUBSCRIBER_TOO_SLOW,
  ErrorCode.UNAUTHORIZED_FIELD_OR_TYPE,
  ErrorCode.TOO_MANY_CONNECTIONS,
  ErrorCode.SERVICE_OVERLOADED,
  ErrorCode.TOO_MANY_ATTEMPTS,
  // Produced by graphql-js / Apollo Server for malformed operations; safe to show.
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'OPERATION_RESOLUTION_FAILURE',
  ErrorCode.BAD_REQUEST,
  // Refusals of the gateway's and the subgraphs' limits (a subgraph's reach clients through the
  // gateway, which must not mask them): each message says the limit, never an internal detail.
  'OPERATION_TOO_DEEP',
  'TOO_MANY_ALIASES',
  'TOO_MANY_ROOT_FIELDS',
  'TOO_MANY_DIRECTIVES',
  'TOO_MANY_TOKENS',
  'DOCUMENT_TOO_LARGE',
  'OPERATION_TOO_LARGE',
  'FRAGMENT_CYCLE',
  'OPERATION_TOO_COSTLY',
  'COST_BUDGET_EXCEEDED',
  'REQUEST_TOO_LARGE',
  'TOO_MANY_OPERATIONS',
  // Retryable: the request ran out of time at a subgraph (its deadline, its statement timeout),
  // the identity of a long subscription expired (subscribe again), the gateway could not admit it.
  'DEADLINE_EXCEEDED',
  'STATEMENT_TIMEOUT',
  'IDENTITY_EXPIRED',
  'SERVICE_UNAVAILABLE',
]);

/** Invalid input. `field` names the offending argument or input field (e.g. `input.email`). */
export function badUserInput(message: string, field?: string): GraphQLError {
  return new GraphQLError(message, {
    extensions: { code: ErrorCode.BAD_USER_INPUT, ...(field ? { field } : {}) },
  });
}

/** Missing or invalid credentials. `httpStatus` makes the whole HTTP response fail (401). */
export function unauthenticated(message = 'Authentication required', httpStatus?: 401): GraphQLError {
  return new GraphQLError(message, {
    extensions: { code: ErrorCode.UNAUTHENTICATED, ...(httpStatus ? { http: { status: httpStatus } } : {}) },
  });
}

export function forbidden(message = 'You are not allowed to do this'): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.FORBIDDEN } });
}

export function notFound(message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.NOT_FOUND } });
}

export function conflict(message: string, field?: string): GraphQLError {
  return new GraphQLError(message, {
    extensions: { code: ErrorCode.CONFLICT, ...(field ? { field } : {}) },
  });
}

/** Refused by brute-force protection: `retryAfter` is the whole seconds to wait before trying again. */
export function tooManyAttempts(message: string, retryAfterSeconds: number): GraphQLError {
  return new GraphQLError(message, { extensions: { code: ErrorCode.TOO_MANY_ATTEMPTS, retryAfter: Math.max(1, Math.ceil(retryAfterSeconds)) } });
}

/** Prisma's unique-constraint violation. `meta.target` is not filled in Prisma 7: rely on the code. */
export function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'P2002';
}
