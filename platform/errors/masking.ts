/**
 * What a client sees of an error. Client errors (a known code, or a DomainError) pass through;
 * anything else is replaced by a generic message in production, so no SQL, stack trace or
 * internal address leaks. Stack traces are never sent, in any mode: they belong in logs.
 *
 * What the gateway adds to a subgraph's error is internal too: the subgraph's URL, status and
 * body (`extensions.response`, from @apollo/gateway's RemoteGraphQLDataSource) are never sent;
 * the subgraph's name (`extensions.serviceName`) only in development, where it helps. With
 * introspection off, "Did you mean …" suggestions would hand out the schema a field at a time:
 * production drops them from every message.
 *
 * Overload is mapped here, once for every resolver of every subgraph: a database that had no
 * connection to give, or a write queue that shed the work (platform/database/overload.ts), is
 * SERVICE_OVERLOADED with `retryAfter`, in every mode — the client can act on it, and the
 * Prisma or pool message it came as is an internal detail. So is a lost database connection
 * (platform/database/connection-loss.ts): the same code, since the client's move is the same.
 */
import type { GraphQLError, GraphQLFormattedError } from 'graphql';
import { isConnectionLost } from '../database/connection-loss.ts';
import { retryAfterOf } from '../database/overload.ts';
import { DomainError } from './domain-error.ts';
import { clientErrorCodes, ErrorCode } from './index.ts';

export interface MaskingOptions {
  /** Hide messages of internal errors. @default true in production */
  maskInternalErrors: boolean;
  /**
   * Hide what tells the schema or the topology: "Did you mean …" suggestions and the subgraph's
   * name (`extensions.serviceName`). @default maskInternalErrors (on in production)
   */
  hideSchemaDetails?: boolean;
}

/**
 * Extensions that describe our internals and never reach a client, in any mode (`http` is how a
 * refusal tells the server its status; Apollo drops it too).
 */
const internalExtensions = ['stacktrace', 'exception', 'response', 'http'] as const;

/** The HTTP status an error asked for (`extensions.http.status`), on it or on an error it wraps. */
function requestedStatusOf(error: unknown): number | undefined {
  let current = error;
  for (let depth = 0; depth < 5 && current; depth++) {
    const status = (current as { extensions?: { http?: { status?: unknown } } }).extensions?.http?.status;
    if (typeof status === 'number') return status;
    current = (current as { originalError?: unknown }).originalError;
  }
  return undefined;
}

/**
 * Whether a client may read this error as it is: a DomainError, a code of `clientErrorCodes`, or
 * an error that asked for a 4xx status (every GatewayRefusal: OPERATION_TOO_DEEP, rate limits…),
 * since an error that blames the request was written for whoever sent it.
 */
export function isClientError(error: unknown, code: unknown = (error as { extensions?: { code?: unknown } } | null)?.extensions?.code): boolean {
  if (originalErrorOf(error) instanceof DomainError) return true;
  if (typeof code === 'string' && clientErrorCodes.has(code)) return true;
  const status = requestedStatusOf(error);
  return status !== undefined && status >= 400 && status < 500;
}

/**
 * A graphql-js message without its "Did you mean …?" suggestions (`Cannot query field "nme" on
 * type "Product". Did you mean "name"?` → `Cannot query field "nme" on type "Product".`). graphql-js
 * puts them last, as one sentence; validation errors and variable coercion errors alike.
 */
export function withoutSuggestions(message: string): string {
  return message.replace(/ ?Did you mean [^?]*\?\s*$/, '');
}

/** The error a resolver threw, under graphql-js's and Apollo's wrappers. */
export function originalErrorOf(error: unknown): unknown {
  let current = error;
  for (let depth = 0; depth < 5; depth++) {
    const next = (current as { originalError?: unknown } | null)?.originalError;
    if (!next) break;
    current = next;
  }
  return current;
}

/** `formatErrorForClient` for a GraphQLError object (graphql-ws hooks, the gateway's subscriptions). */
export function formatGraphQLError(error: GraphQLError, production: boolean): GraphQLFormattedError {
  return formatErrorForClient(error.toJSON(), error, { maskInternalErrors: production });
}

export function formatErrorForClient(formatted: GraphQLFormattedError, error: unknown, options: MaskingOptions): GraphQLFormattedError {
  const hideSchemaDetails = options.hideSchemaDetails ?? options.maskInternalErrors;
  const extensions = { ...(formatted.extensions ?? {}) } as Record<string, unknown>;
  for (const name of internalExtensions) delete extensions[name];
  if (hideSchemaDetails) delete extensions.serviceName;
  const original = originalErrorOf(error);
  if (original instanceof DomainError) {
    return { ...formatted, message: original.message, extensions: { code: original.code, ...(original.field ? { field: original.field } : {}), ...(original.reason ? { reason: original.reason } : {}) } };
  }
  const retryAfter = retryAfterOf(original);
  if (retryAfter !== undefined) return retryableForClient(formatted, `The service is too busy to do this now and did nothing: try again in ${retryAfter} s`, retryAfter);
  // A connection lost under the request (restart, failover, terminated backend;
  // docs/decisions/0015) is retryable like overload, but the work may have begun (a transaction
  // is rolled back, a COMMIT in flight may have landed), so it does not say "did nothing".
  if (isConnectionLost(original)) return retryableForClient(formatted, 'The service lost its connection to its database: try again in a moment', 1);
  const code = typeof extensions.code === 'string' ? extensions.code : ErrorCode.INTERNAL_SERVER_ERROR;
  if (isClientError(error, code) || !options.maskInternalErrors) {
    // The field is read from graphql-js's own wording, before the suggestions go.
    const field = code === ErrorCode.BAD_USER_INPUT && extensions.field === undefined ? invalidVariableField(formatted.message) : undefined;
    const message = hideSchemaDetails ? withoutSuggestions(formatted.message) : formatted.message;
    return { ...formatted, message, extensions: { ...extensions, code, ...(field ? { field } : {}) } };
  }
  return {
    message: 'Internal server error',
    ...(formatted.locations ? { locations: formatted.locations } : {}),
    ...(formatted.path ? { path: formatted.path } : {}),
    extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR },
  };
}

/** SERVICE_OVERLOADED as a client reads it: where it happened, when to try again, no internals. */
function retryableForClient(formatted: GraphQLFormattedError, message: string, retryAfter: number): GraphQLFormattedError {
  return {
    message,
    ...(formatted.locations ? { locations: formatted.locations } : {}),
    ...(formatted.path ? { path: formatted.path } : {}),
    extensions: { code: ErrorCode.SERVICE_OVERLOADED, retryAfter },
  };
}

/**
 * The field of a variable that graphql-js refused before execution (`Variable "$input" got
 * invalid value 19.99 at "input.price"; Int cannot represent non-integer value: 19.99`), named
 * the way our resolvers name fields (`input.price`), so clients branch on it like on any other
 * BAD_USER_INPUT. Only the variable's name when graphql-js gives no path.
 */
export function invalidVariableField(message: string): string | undefined {
  const variable = /^Variable "\$(\w+)" (?:got invalid value|of required type|of non-null type)/.exec(message);
  if (!variable) return undefined;
  const at = /^Variable "\$\w+" got invalid value [\s\S]*? at "(\w+(?:\.\w+|\[\d+\])*)"; /.exec(message);
  return at?.[1] ?? variable[1];
}
