/**
 * One log line per failed request, whatever the number of its errors. Logging from `formatError`
 * wrote one line per error: a query of 1,000 failing aliases wrote ~1,000 lines, so one anonymous
 * request could flood the logs and bury everything else. This plugin gathers a request's errors
 * and writes, when the response goes out, one line with the request id, the operation name, the
 * number of errors, their codes (with counts) and the first few, by their real messages: what
 * clients see masked (database errors, subgraph failures) is kept here, without stack traces.
 *
 * Level: `error` when some error is internal (masked for clients in production); else `info` in
 * development, where a developer wants to see why a query failed, and `debug` in production,
 * where refused requests are the clients' business and a flood of them must not flood the logs.
 */
import type { ApolloServerPlugin, BaseContext, GraphQLRequestContext } from '@apollo/server';
import type { GraphQLError } from 'graphql';
import { ErrorCode } from '../errors/index.ts';
import { isClientError, originalErrorOf } from '../errors/masking.ts';
import { errorFields, type Logger } from './logger.ts';

export interface RequestErrorLoggingOptions {
  /** Production logs requests that failed only with client errors at `debug` instead of `info`. */
  production: boolean;
  /** Errors described one by one in the line; the rest are only counted. @default 3 */
  detailedErrors?: number;
  /** Each described message is cut to this many characters. @default 300 */
  maxMessageLength?: number;
  /** The request id of a request. @default `contextValue.requestId`, else the `x-request-id` header */
  requestIdOf?: (requestContext: GraphQLRequestContext<BaseContext>) => string | undefined;
}

function defaultRequestIdOf(requestContext: GraphQLRequestContext<BaseContext>): string | undefined {
  const fromContext = (requestContext.contextValue as { requestId?: unknown } | undefined)?.requestId;
  if (typeof fromContext === 'string') return fromContext;
  return requestContext.request.http?.headers.get('x-request-id') ?? undefined;
}

const codeOf = (error: GraphQLError): string => {
  const original = originalErrorOf(error) as { name?: unknown; code?: unknown };
  if (original?.name === 'DomainError' && typeof original.code === 'string') return original.code;
  return typeof error.extensions?.code === 'string' ? error.extensions.code : ErrorCode.INTERNAL_SERVER_ERROR;
};

const cut = (text: unknown, max: number) => (typeof text === 'string' && text.length > max ? `${text.slice(0, max)}…` : text);

/** The fields of one request's errors, for one log line. */
export function requestErrorFields(errors: readonly GraphQLError[], options: { detailedErrors?: number; maxMessageLength?: number } = {}): { internal: boolean; fields: Record<string, unknown> } {
  const max = options.maxMessageLength ?? 300;
  const codes: Record<string, number> = {};
  let internal = false;
  for (const error of errors) {
    const code = codeOf(error);
    codes[code] = (codes[code] ?? 0) + 1;
    if (!isClientError(error, code)) internal = true;
  }
  const first = errors.slice(0, options.detailedErrors ?? 3).map((error) => {
    const { error: message, ...details } = errorFields(originalErrorOf(error));
    return {
      message: cut(message, max),
      code: codeOf(error),
      ...(error.path ? { path: error.path.join('.') } : {}),
      ...details,
    };
  });
  return { internal, fields: { errorCount: errors.length, codes, errors: first } };
}

export function requestErrorLogging<TContext extends BaseContext>(log: Logger, options: RequestErrorLoggingOptions): ApolloServerPlugin<TContext> {
  const requestIdOf = options.requestIdOf ?? defaultRequestIdOf;
  return {
    async requestDidStart() {
      const errors: GraphQLError[] = [];
      return {
        async didEncounterErrors({ errors: encountered }) {
          errors.push(...encountered);
        },
        async willSendResponse(requestContext) {
          if (errors.length === 0) return;
          const { internal, fields } = requestErrorFields(errors, options);
          // The app that sent it (the gateway's client awareness), to tell a broken release from an attack.
          const client = (requestContext.contextValue as { client?: { name?: string; version?: string } } | undefined)?.client;
          const line = {
            requestId: requestIdOf(requestContext as unknown as GraphQLRequestContext<BaseContext>),
            operationName: requestContext.operationName ?? requestContext.request.operationName ?? null,
            ...(client?.name ? { clientName: client.name } : {}),
            ...(client?.version ? { clientVersion: client.version } : {}),
            ...fields,
          };
          if (internal) log.error('request failed', line);
          else if (options.production) log.debug('request refused', line);
          else log.info('request refused', line);
        },
      };
    },
  };
}
