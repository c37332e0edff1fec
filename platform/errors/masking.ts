/**
 * What a client sees of an error. Client errors (a known code, or a DomainError) pass through;
 * anything else is replaced by a generic message in production, so no SQL, stack trace or
 * internal address leaks. Stack traces are never sent, in any mode: they belong in logs.
 */
import type { GraphQLError, GraphQLFormattedError } from 'graphql';
import { DomainError } from './domain-error.ts';
import { clientErrorCodes, ErrorCode } from './index.ts';

export interface MaskingOptions {
  /** Hide messages of internal errors. @default true in production */
  maskInternalErrors: boolean;
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
  const { stacktrace: _stack, exception: _exception, ...extensions } = (formatted.extensions ?? {}) as Record<string, unknown>;
  const original = originalErrorOf(error);
  if (original instanceof DomainError) {
    return { ...formatted, message: original.message, extensions: { code: original.code, ...(original.field ? { field: original.field } : {}) } };
  }
  const code = typeof extensions.code === 'string' ? extensions.code : ErrorCode.INTERNAL_SERVER_ERROR;
  if (clientErrorCodes.has(code) || !options.maskInternalErrors) {
    const field = code === ErrorCode.BAD_USER_INPUT && extensions.field === undefined ? invalidVariableField(formatted.message) : undefined;
    return { ...formatted, extensions: { ...extensions, code, ...(field ? { field } : {}) } };
  }
  return {
    message: 'Internal server error',
    ...(formatted.locations ? { locations: formatted.locations } : {}),
    ...(formatted.path ? { path: formatted.path } : {}),
    extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR },
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
