/**
 * CSRF protection for the cookie session (docs/decisions/0023). A browser sends the cookie with
 * any request to the gateway, a forged one from another site too; so a request (or WebSocket)
 * that the cookie authenticates must come from a page the origin policy allows: its `Origin` listed
 * or the gateway's own, else 403 CSRF_REJECTED (WebSocket close 4403). A bearer token needs no such
 * rule: no other site can make a browser send it.
 *
 * Around it, on every request whatever its credentials: Apollo Server's csrfPrevention refuses
 * the "simple" requests a form or an `<img>` can make (form-encoded and text/plain bodies, GETs
 * without a preflight header) before anything runs (gateway/server.ts), and mutations are never
 * taken over GET here, where a link or a prefetch could trigger one.
 */
import { OperationTypeNode } from 'graphql';
import type { GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';
import type { OriginPolicy } from '../sessions/origins.ts';

export interface CsrfOptions {
  origins: OriginPolicy;
}

export function csrf(options: CsrfOptions): GatewayPlugin {
  return {
    name: 'csrf',
    onConnection(connection) {
      if (connection.credential !== 'cookie' || options.origins.allows(connection.request)) return;
      throw new GatewayRefusal('CSRF_REJECTED', 'A request with the session cookie must come from an allowed origin: send its Origin, or use a bearer token', {
        status: 403,
        closeCode: 4403,
      });
    },
    onOperation(operation) {
      const { connection } = operation;
      if (connection.transport === 'http' && connection.request.method === 'GET' && operation.operation.operation === OperationTypeNode.MUTATION) {
        throw new GatewayRefusal('BAD_REQUEST', 'Mutations are sent with POST', { status: 405 });
      }
    },
  };
}
