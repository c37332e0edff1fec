/**
 * The storefront's one GraphQL client: Apollo Client over HTTP for queries and mutations, and
 * graphql-ws for subscriptions, both to the gateway with the session cookie. The cookie is
 * HttpOnly: the page never sees it; `credentials: 'include'` sends it on every fetch, and the
 * browser sends it with the WebSocket upgrade (the gateway checks that request's Origin).
 */
import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache, ServerError } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { OperationTypeNode } from 'graphql';
import { createClient } from 'graphql-ws';

declare const __GATEWAY_URL__: string;

/** The gateway's GraphQL endpoint, fixed at build time (vite.config.ts). */
export const gatewayUrl = new URL(__GATEWAY_URL__);

/** WebSocket close codes after which reconnecting cannot help: sign in again (graphql-ws and the gateway's 4403 for an ended session). */
const finalCloseCodes = new Set([4400, 4401, 4403, 4409]);

export function createGatewayClient(): ApolloClient {
  const socketUrl = new URL(gatewayUrl);
  socketUrl.protocol = gatewayUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  const sockets = createClient({
    url: socketUrl.href,
    // Opened with the first subscription and closed with the last, so a socket always carries
    // the cookie of the current session (signing in or out changes it).
    lazy: true,
    retryAttempts: 5,
    shouldRetry: (event) => !(event && typeof event === 'object' && 'code' in event && finalCloseCodes.has((event as CloseEvent).code)),
  });
  const link = ApolloLink.split(
    (operation) => operation.operationType === OperationTypeNode.SUBSCRIPTION,
    new GraphQLWsLink(sockets),
    new HttpLink({ uri: gatewayUrl.href, credentials: 'include' }),
  );
  return new ApolloClient({
    link,
    cache: new InMemoryCache(),
    // Sent as apollographql-client-name/-version: the gateway's per-client budgets and logs.
    clientAwareness: { name: 'storefront', version: '1' },
  });
}

/** What went wrong, as the storefront shows it: the platform's error code and its message. */
export interface Problem {
  code: string;
  message: string;
}

export function problemOf(error: unknown): Problem {
  if (CombinedGraphQLErrors.is(error)) {
    const first = error.errors[0];
    return { code: String(first?.extensions?.code ?? 'GRAPHQL_ERROR'), message: first?.message ?? error.message };
  }
  if (ServerError.is(error)) {
    try {
      const body = JSON.parse(error.bodyText) as { errors?: { message: string; extensions?: { code?: string } }[] };
      const first = body.errors?.[0];
      if (first) return { code: first.extensions?.code ?? `HTTP_${error.statusCode}`, message: first.message };
    } catch {
      // not JSON: fall through
    }
    return { code: `HTTP_${error.statusCode}`, message: error.message };
  }
  return { code: 'NETWORK_ERROR', message: error instanceof Error ? error.message : String(error) };
}
