/**
 * How a subgraph says no to what reached it past the gateway, or stops work the gateway gave up
 * on. Each refusal has a code the gateway (and a client) can branch on, and a message that names
 * no internals: no SQL, no table, no subgraph address.
 */
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { isStatementTimeout } from '../database/prisma.ts';
import { originalErrorOf } from '../errors/masking.ts';

export const SubgraphRefusalCode = {
  /** The request's deadline passed (or its caller went away): the subgraph stopped working on it. */
  DEADLINE_EXCEEDED: 'DEADLINE_EXCEEDED',
  /** The identity a subscription was started with expired: the subscription ended; subscribe again. */
  IDENTITY_EXPIRED: 'IDENTITY_EXPIRED',
  /** A database statement ran past `DATABASE_STATEMENT_TIMEOUT_MS` and was cancelled. */
  STATEMENT_TIMEOUT: 'STATEMENT_TIMEOUT',
} as const;
export type SubgraphRefusalCode = (typeof SubgraphRefusalCode)[keyof typeof SubgraphRefusalCode];

export function deadlineExceeded(): GraphQLError {
  return new GraphQLError('The request ran past its deadline and was stopped', {
    extensions: { code: SubgraphRefusalCode.DEADLINE_EXCEEDED, http: { status: 504 } },
  });
}

export function identityExpired(): GraphQLError {
  return new GraphQLError('The identity this subscription was started with expired: subscribe again', {
    // 401: the caller must authenticate again (and masking shows a 4xx refusal as it is).
    extensions: { code: SubgraphRefusalCode.IDENTITY_EXPIRED, http: { status: 401 } },
  });
}

/** graphql-js's parser stopping at `parseOptions.maxTokens` ("more that" in graphql-js 16). */
const tooManyTokens = /^Syntax Error: Document contains more tha[nt] (\d+) tokens/;

/**
 * The error as the client should read it, for what Apollo Server or Prisma report in their own
 * words: a statement cancelled by the statement timeout (PostgreSQL's 57014 under a Prisma
 * error) is STATEMENT_TIMEOUT, not an internal error; a document the parser stopped reading at
 * `maxTokens` is TOO_MANY_TOKENS, as the gateway says it. Other errors are returned as they are.
 */
export function withSubgraphRefusalCodes(formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError {
  const place = { ...(formatted.locations ? { locations: formatted.locations } : {}), ...(formatted.path ? { path: formatted.path } : {}) };
  if (isStatementTimeout(originalErrorOf(error))) {
    return {
      message: 'The request took too long in the database and was stopped: narrow it (fewer or smaller pages) or try again',
      ...place,
      extensions: { code: SubgraphRefusalCode.STATEMENT_TIMEOUT },
    };
  }
  const tokens = formatted.extensions?.code === 'GRAPHQL_PARSE_FAILED' ? tooManyTokens.exec(formatted.message) : null;
  if (tokens) {
    const limit = Number(tokens[1]);
    return { message: `The document has more than ${limit.toLocaleString('en')} tokens; the limit is ${limit.toLocaleString('en')}`, ...place, extensions: { code: 'TOO_MANY_TOKENS', limit, actual: limit + 1 } };
  }
  return formatted;
}
