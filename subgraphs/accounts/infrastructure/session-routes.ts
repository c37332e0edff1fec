/**
 * Accounts' two HTTP routes for the gateway, beside /graphql (docs/decisions/0022-sessions.md):
 * - `GET /.well-known/jwks.json`: the public keys access tokens are signed with, the current one
 *   and the retired ones whose tokens may still be alive. Public, as public keys are.
 * - `GET /sessions/revocations?after=<cursor>`: the sessions revoked since the cursor, which the
 *   gateway polls and refuses the tokens of. Only for the gateway: it must carry the gateway's
 *   identity signature for this subgraph, as every GraphQL request must.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CryptoKey, JWK } from 'jose';
import { graphQLErrorBody, sendJson, type Route } from '../../../platform/http/graphql-http.ts';
import { gatewayIdentityHeader, verifyGatewayIdentity } from '../../../platform/identity/gateway-identity.ts';
import { formatCursor, parseCursor, type SessionRepository } from './session-repository.ts';

export const jwksPath = '/.well-known/jwks.json';
export const revocationFeedPath = '/sessions/revocations';

/** Revocations per answer; the gateway asks again at once after a full page. */
const feedPageSize = 1000;

function onlyGet(request: IncomingMessage, response: ServerResponse): boolean {
  if (request.method === 'GET' || request.method === 'HEAD') return true;
  response.setHeader('allow', 'GET, HEAD');
  sendJson(response, 405, graphQLErrorBody('Only GET is served here', 'METHOD_NOT_ALLOWED'));
  return false;
}

export function sessionRoutes(options: { jwks: { keys: JWK[] }; sessions: SessionRepository; gatewayPublicKey: CryptoKey }): Record<string, Route> {
  const jwksBody = JSON.stringify(options.jwks);
  return {
    [jwksPath]: (request, response) => {
      if (!onlyGet(request, response)) return;
      // Five minutes: a rotated key reaches the gateway within that (it also re-fetches on an unknown kid).
      response.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=300', 'content-length': Buffer.byteLength(jwksBody) });
      response.end(request.method === 'HEAD' ? undefined : jwksBody);
    },
    [revocationFeedPath]: async (request, response) => {
      if (!onlyGet(request, response)) return;
      const header = request.headers[gatewayIdentityHeader];
      try {
        await verifyGatewayIdentity(options.gatewayPublicKey, Array.isArray(header) ? header[0] : header, 'accounts');
      } catch {
        sendJson(response, 401, graphQLErrorBody('Requests must come through the gateway', 'UNAUTHENTICATED'));
        return;
      }
      const after = new URL(request.url ?? '/', 'http://localhost').searchParams.get('after');
      const cursor = after === null || after === '' ? undefined : parseCursor(after);
      if (after && cursor === undefined) {
        sendJson(response, 400, graphQLErrorBody('after must be a cursor this feed returned', 'BAD_REQUEST'));
        return;
      }
      const page = await options.sessions.revocationsAfter(cursor, feedPageSize);
      response.setHeader('cache-control', 'no-store');
      sendJson(response, 200, {
        revocations: page.revocations.map((revocation) => ({ sessionId: revocation.sessionId, expiresAt: revocation.expiresAt.toISOString() })),
        cursor: formatCursor(page.cursor),
      });
    },
  };
}
