/**
 * An HTTP status with `Retry-After` for a response that a retryable refusal kept from doing
 * anything. GraphQL over HTTP answers 200 whatever its errors, so a client, a load balancer or a
 * retrying HTTP library could not tell "try later" from a result. A response that has no data
 * (`data` null, or every root field null) and whose errors include one of these codes gets the
 * code's status, and `Retry-After` is the longest `retryAfter` of those errors:
 * - SERVICE_OVERLOADED → 503: overload (docs/decisions/0016);
 * - TOO_MANY_ATTEMPTS → 429: accounts' brute-force lock on signIn / signUp (docs/decisions/0022,
 *   0024).
 * A response with some data stays 200: part of it worked, and its errors say which part did not.
 * When several codes are present, the first of the list wins (the platform's state before the
 * caller's behaviour).
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

/** A code that, alone in a response without data, makes it an HTTP refusal. */
export interface RetryableCode {
  code: string;
  status: number;
}

export const retryableCodes: readonly RetryableCode[] = [
  { code: ErrorCode.SERVICE_OVERLOADED, status: 503 },
  { code: ErrorCode.TOO_MANY_ATTEMPTS, status: 429 },
];

/**
 * The status and `Retry-After` seconds of a result that a retryable refusal kept from doing
 * anything, else undefined. `data` is the result's data (undefined when execution never started).
 */
export function retryableStatusOf(
  data: Record<string, unknown> | null | undefined,
  errors: readonly GraphQLFormattedError[] | undefined,
  codes: readonly RetryableCode[] = retryableCodes,
): { status: number; retryAfter: number } | undefined {
  if (!errors?.length) return undefined;
  if (data && Object.values(data).some((value) => value !== null && value !== undefined)) return undefined;
  for (const { code, status } of codes) {
    const refusals = errors.filter((error) => error.extensions?.code === code);
    if (refusals.length === 0) continue;
    const asked = refusals.map((error) => Number(error.extensions?.retryAfter)).filter((seconds) => Number.isFinite(seconds) && seconds > 0);
    return { status, retryAfter: Math.ceil(Math.max(defaultRetryAfterSeconds, ...asked)) };
  }
  return undefined;
}

/** The seconds to put in `Retry-After` when a result is "overloaded, nothing done", else undefined. */
export function overloadRetryAfter(data: Record<string, unknown> | null | undefined, errors: readonly GraphQLFormattedError[] | undefined): number | undefined {
  return retryableStatusOf(data, errors, [retryableCodes[0]!])?.retryAfter;
}

/** Sets the status and `Retry-After` of single (not incremental) responses, by `retryableStatusOf`. */
export function retryableStatus<TContext extends BaseContext>(codes: readonly RetryableCode[] = retryableCodes): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ response }) {
          if (response.body.kind !== 'single') return;
          const { data, errors } = response.body.singleResult;
          const refusal = retryableStatusOf(data, errors, codes);
          if (refusal === undefined) return;
          response.http.status = refusal.status;
          response.http.headers.set('retry-after', String(refusal.retryAfter));
        },
      };
    },
  };
}
