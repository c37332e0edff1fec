/**
 * Web (cookie) sessions at accounts' edge: the gateway asks for one with
 * `x-commerce-session-mode: cookie` (its client sent `x-commerce-session: cookie`), and takes the
 * session's token from the response header `x-commerce-session-grant`, which it puts in an
 * HttpOnly cookie and never forwards. The token so never appears in a response body that page
 * scripts could read (docs/decisions/0022-sessions.md).
 */
import type { IncomingMessage } from 'node:http';
import type { ApolloServerPlugin } from '@apollo/server';
import { clientAddressHeader, sessionGrantHeader, sessionModeHeader } from '../../../platform/identity/session-headers.ts';
import type { SessionKind } from '../domain/session.ts';

function headerOf(request: IncomingMessage | undefined, name: string): string | undefined {
  const value = request?.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The kind of session a sign-in of this request opens. */
export function requestedKindOf(request: IncomingMessage | undefined): SessionKind {
  return headerOf(request, sessionModeHeader)?.trim().toLowerCase() === 'cookie' ? 'web' : 'mobile';
}

/** The client's address as the gateway saw it, else the socket's peer (a request not through a gateway that sets it). */
export function clientAddressOf(request: IncomingMessage | undefined): string {
  return headerOf(request, clientAddressHeader)?.trim() || request?.socket.remoteAddress || 'unknown';
}

/** Sends the grant a resolver left in the context as the response header. */
export function sessionGrantPlugin<TContext extends { sessionGrant?: string }>(): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ contextValue, response }) {
          if (contextValue.sessionGrant) response.http.headers.set(sessionGrantHeader, contextValue.sessionGrant);
        },
      };
    },
  };
}
