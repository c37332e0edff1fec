/**
 * Sessions at the gateway (docs/decisions/0022, 0023): who a caller is, from a bearer token or
 * the web session cookie, on every transport; sessions accounts has ended refused within a poll
 * of its revocation feed, their open subscriptions ended; and the cookie set and cleared on the
 * client's response when accounts grants or ends a web session.
 *
 * - `authenticate`: `Authorization: Bearer` wins; else the session cookie (of an HTTP request or
 *   a WebSocket's upgrade request). Tokens are verified by `kid` against accounts' JWKS, or with
 *   the static key (tokens/kid of AUTH_TOKEN_PUBLIC_KEY). A revoked session: 401 "The session has
 *   ended". A cookie refused is also cleared on the HTTP response, or a browser (which cannot
 *   remove an HttpOnly cookie) would be refused on every request, sign-in included.
 * - Every subgraph fetch carries `x-commerce-client-address`; accounts' fetches of a request that
 *   asked for a cookie session (`x-commerce-session: cookie`) carry `x-commerce-session-mode`.
 * - Accounts' `x-commerce-session-grant` response header (a token, or `ended`) never goes further:
 *   it becomes the client's `Set-Cookie`. Mutations are never retried or shared between callers
 *   (plugins/deduplication.ts, resilience.ts), so a grant reaches exactly the client that asked.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeJwt, type CryptoKey } from 'jose';
import { ErrorCode } from '../../platform/errors/index.ts';
import type { GatewayIdentitySigner } from '../../platform/identity/gateway-identity.ts';
import { clientAddressHeader, clientSessionHeader, sessionEnded as sessionEndedGrant, sessionGrantHeader, sessionModeHeader } from '../../platform/identity/session-headers.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { bearerTokenOf } from '../authentication.ts';
import type { Authenticated, ClientConnection, Credentials, GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';
import { clearCookie, cookieSecurityOf, cookieValue, sessionCookieFor, setCookie, type CookieSecurity, type SessionCookie } from '../sessions/cookies.ts';
import { RevocationFeed } from '../sessions/revocations.ts';
import { TokenVerifier } from '../sessions/tokens.ts';

export interface SessionsOptions {
  /** AUTH_TOKEN_PUBLIC_KEY: verifies tokens without a `kid`, and tokens of its own kid, accounts reachable or not. */
  staticKey?: CryptoKey;
  /** AUTH_JWKS_URL. @default accounts' subgraph URL with the path `/.well-known/jwks.json` */
  jwksUrl?: string;
  /** Least time between two JWKS fetches for unknown kids. @default 30_000 */
  jwksCooldownMs?: number;
  /** Accounts' revocation feed. @default accounts' subgraph URL with the path `/sessions/revocations` */
  revocationsUrl?: string;
  /** AUTH_REVOCATION_POLL_MS: how often the feed is read; a revoked session is refused within it. @default 2_000 */
  revocationPollMs?: number;
  /** GATEWAY_SESSION_COOKIE_SECURE. @default 'auto' (Secure unless served over plain HTTP on localhost) */
  cookieSecurity?: CookieSecurity;
}

export interface SessionsPluginOptions extends SessionsOptions {
  /** The accounts subgraph's GraphQL URL: where the JWKS and the feed are by default. */
  accountsUrl?: string;
  /** The accounts subgraph's name in the supergraph. @default 'accounts' */
  accountsSubgraph?: string;
  /** Signs the feed's requests. */
  signer: GatewayIdentitySigner;
  log: Logger;
}


const sessionEnded = () => new GatewayRefusal(ErrorCode.UNAUTHENTICATED, 'The session has ended: sign in again', { status: 401 });

/** Adds a Set-Cookie value, replacing one for the same cookie set earlier in this response. */
function appendSetCookie(response: ServerResponse, cookie: SessionCookie, value: string): void {
  if (response.headersSent) return;
  const existing = response.getHeader('set-cookie');
  const values = existing === undefined ? [] : Array.isArray(existing) ? existing : [String(existing)];
  response.setHeader('set-cookie', [...values.filter((each) => !each.startsWith(`${cookie.name}=`)), value]);
}

export interface SessionsPlugin extends GatewayPlugin {
  /** The revocation feed, when there is one (tests wait on its polls). */
  readonly revocations: RevocationFeed | undefined;
}

export function sessions(options: SessionsPluginOptions): SessionsPlugin {
  const accounts = options.accountsSubgraph ?? 'accounts';
  const security = options.cookieSecurity ?? 'auto';
  const at = (path: string) => (options.accountsUrl ? new URL(path, options.accountsUrl) : undefined);
  const jwksUrl = options.jwksUrl ? new URL(options.jwksUrl) : at('/.well-known/jwks.json');
  const verifier = new TokenVerifier({
    ...(options.staticKey ? { staticKey: options.staticKey } : {}),
    ...(jwksUrl ? { jwksUrl } : {}),
    ...(options.jwksCooldownMs !== undefined ? { jwksCooldownMs: options.jwksCooldownMs } : {}),
  });
  /** Long-lived connections by session id: what a revocation ends. */
  const open = new Map<string, Set<ClientConnection>>();
  /** Each HTTP request's response, to clear a refused cookie on it. */
  const responses = new WeakMap<IncomingMessage, ServerResponse>();
  const feedUrl = options.revocationsUrl ? new URL(options.revocationsUrl) : at('/sessions/revocations');
  const revocations = feedUrl
    ? new RevocationFeed({
        url: feedUrl,
        signer: options.signer,
        subgraph: accounts,
        ...(options.revocationPollMs !== undefined ? { pollMs: options.revocationPollMs } : {}),
        log: options.log,
        onRevoked: (sessionIds) => {
          for (const sessionId of sessionIds) {
            for (const connection of open.get(sessionId) ?? []) connection.end?.(sessionEnded());
          }
        },
      })
    : undefined;
  revocations?.start();

  const verify = async (token: string, credential: Authenticated['credential']): Promise<Authenticated> => {
    const { identity, expiresAt } = await verifier.verify(token);
    if (identity.sessionId && revocations?.isRevoked(identity.sessionId)) throw sessionEnded();
    return { identity, credential, expiresAt };
  };

  return {
    name: 'sessions',
    revocations,
    onHttpRequest({ request, response }) {
      responses.set(request, response);
    },
    async authenticate({ request, authorization }: Credentials) {
      if (authorization) {
        const token = bearerTokenOf(authorization);
        if (!token) throw new GatewayRefusal(ErrorCode.UNAUTHENTICATED, 'Send the token as "Authorization: Bearer <token>"', { status: 401 });
        // No key at all: not this plugin's to verify, and the core refuses a token no plugin takes (401).
        if (!verifier.configured) return undefined;
        return verify(token, 'token');
      }
      const cookie = sessionCookieFor(request, security);
      const value = cookieValue(request.headers.cookie, cookie.name);
      if (!value) return undefined;
      try {
        return await verify(value, 'cookie');
      } catch (error) {
        const response = responses.get(request);
        if (response && error instanceof GatewayRefusal && error.status === 401) appendSetCookie(response, cookie, clearCookie(cookie));
        throw error;
      }
    },
    onConnection(connection) {
      const sessionId = connection.identity.sessionId;
      if (!sessionId || !connection.end) return;
      const connections = open.get(sessionId) ?? new Set();
      connections.add(connection);
      open.set(sessionId, connections);
      return () => {
        connections.delete(connection);
        if (connections.size === 0 && open.get(sessionId) === connections) open.delete(sessionId);
      };
    },
    onSubgraphRequest(request) {
      if (request.kind !== 'fetch' || !request.context) return;
      if (request.context.clientAddress) request.headers[clientAddressHeader] = request.context.clientAddress;
      if (request.subgraph === accounts && request.context.httpResponse?.req.headers[clientSessionHeader] === 'cookie') {
        request.headers[sessionModeHeader] = 'cookie';
      }
    },
    async wrapSubgraphFetch(request, init, next) {
      const response = await next(init);
      const grant = response.headers.get(sessionGrantHeader);
      if (grant === null) return response;
      const headers = new Headers(response.headers);
      headers.delete(sessionGrantHeader);
      const client = request.context?.httpResponse;
      if (request.subgraph === accounts && client) {
        const cookie = sessionCookieFor(client.req, security);
        if (grant === sessionEndedGrant) appendSetCookie(client, cookie, clearCookie(cookie));
        else {
          try {
            const { exp } = decodeJwt(grant);
            if (exp === undefined) throw new Error('the granted session token has no expiry');
            appendSetCookie(client, cookie, setCookie(cookie, grant, exp - Date.now() / 1000));
          } catch (error) {
            options.log.error('accounts granted a session the gateway cannot read', { subgraph: request.subgraph, error: (error as Error).message });
          }
        }
      }
      return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
    },
    stop() {
      revocations?.stop();
      open.clear();
    },
  };
}

/** AUTH_JWKS_URL, AUTH_REVOCATION_POLL_MS, GATEWAY_SESSION_COOKIE_SECURE. */
export function sessionsOptionsFromEnv(env: NodeJS.ProcessEnv): SessionsOptions {
  const pollMs = env.AUTH_REVOCATION_POLL_MS ? Number(env.AUTH_REVOCATION_POLL_MS) : undefined;
  if (pollMs !== undefined && (!Number.isInteger(pollMs) || pollMs <= 0)) throw new Error(`AUTH_REVOCATION_POLL_MS must be a positive integer, got "${env.AUTH_REVOCATION_POLL_MS}"`);
  return {
    ...(env.AUTH_JWKS_URL ? { jwksUrl: env.AUTH_JWKS_URL } : {}),
    ...(pollMs !== undefined ? { revocationPollMs: pollMs } : {}),
    cookieSecurity: cookieSecurityOf(env.GATEWAY_SESSION_COOKIE_SECURE),
  };
}
