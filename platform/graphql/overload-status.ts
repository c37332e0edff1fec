/**
 * HTTP 503 with `Retry-After` for a response that overload kept from doing anything
 * (docs/decisions/0016). GraphQL over HTTP answers 200 whatever its errors, so a client, a load
 * balancer or a retrying HTTP library could not tell "too busy, try later" from a result. A
 * response that has no data (`data` null, or every root field null) and whose errors include
 * SERVICE_OVERLOADED is 503, and `Retry-After` is the longest `retryAfter` of those errors. A
 * response with some data stays 200: part of it worked, and its errors say which part did not.
 *
 * The same plugin runs in every subgraph (where the code comes from error masking) and in the
 * gateway (where it comes from a subgraph, or from the gateway's own load shedding). It reads the
 * formatted errors, so it sees the codes clients see. graphql-ws and HTTP streams have no status
 * to set: there the code is in the error.
 */
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import type { GraphQLFormattedError } from 'graphql';
import { ErrorCode } from '../errors/index.ts';
import { defaultRetryAfterSeconds } from '../database/overload.ts';

/**
 * The seconds to put in `Retry-After` when a result is "overloaded, nothing done", else undefined.
 * `data` is the result's data (undefined when execution never started).
 */
export function overloadRetryAfter(data: Record<string, unknown> | null | undefined, errors: readonly GraphQLFormattedError[] | undefined): number | undefined {
  const overloads = (errors ?? []).filter((error) => error.extensions?.code === ErrorCode.SERVICE_OVERLOADED);
  if (overloads.length === 0) return undefined;
  if (data && Object.values(data).some((value) => value !== null && value !== undefined)) return undefined;
  const asked = overloads.map((error) => Number(error.extensions?.retryAfter)).filter((seconds) => Number.isFinite(seconds) && seconds > 0);
  return Math.ceil(Math.max(defaultRetryAfterSeconds, ...asked));
}

export function overloadStatus<TContext extends BaseContext>(): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ response }) {
          if (response.body.kind !== 'single') return;
          const { data, errors } = response.body.singleResult;
          const retryAfter = overloadRetryAfter(data, errors);
          if (retryAfter === undefined) return;
          response.http.status = 503;
          response.http.headers.set('retry-after', String(retryAfter));
        },
      };
    },
  };
}
