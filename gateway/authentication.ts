/**
 * Who is calling, over HTTP: the request's credentials (an `Authorization` bearer token, or the
 * session cookie) verified by the gateway's core, which asks its plugins (plugins/sessions.ts).
 * No credentials means anonymous; credentials that do not verify are refused with 401, never
 * treated as anonymous, so a client learns at once that its token or session is bad.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { GatewayContext } from './context.ts';
import type { GatewayCore } from './pipeline/core.ts';
import type { Authenticated } from './pipeline/plugin.ts';

/** The bearer token of an `Authorization` value, or undefined when it has none in that shape. */
export function bearerTokenOf(authorization: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(authorization?.trim() ?? '')?.[1];
}

/**
 * A timer for `at` (ms since the epoch), clamped to what setTimeout can wait: a long-lived
 * connection ends when its credential expires (`Authenticated.expiresAt`, from the verified
 * token's `exp`), on every transport.
 */
export function timerAt(at: number, run: () => void): NodeJS.Timeout {
  return setTimeout(run, Math.min(2 ** 31 - 1, Math.max(0, at - Date.now())));
}

const requestIdPattern = /^[A-Za-z0-9._-]{1,64}$/;
const traceparentPattern = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** An HTTP request's context, and how its caller authenticated. Throws a GatewayRefusal (401). */
export async function authenticateHttpRequest(request: IncomingMessage, core: GatewayCore): Promise<{ context: GatewayContext; authenticated: Authenticated }> {
  const authenticated = await core.authenticate({ transport: 'http', request, authorization: request.headers.authorization });
  const incoming = request.headers['x-request-id'];
  // A client-chosen id is kept for tracing only when it is harmless to log.
  const requestId = typeof incoming === 'string' && requestIdPattern.test(incoming) ? incoming : randomUUID();
  const traceparent = request.headers.traceparent;
  const context: GatewayContext = {
    identity: authenticated.identity,
    requestId,
    ...(typeof traceparent === 'string' && traceparentPattern.test(traceparent) ? { traceparent } : {}),
    ...(request.socket.remoteAddress ? { clientAddress: request.socket.remoteAddress } : {}),
  };
  return { context, authenticated };
}

export async function gatewayContextOf(request: IncomingMessage, core: GatewayCore): Promise<GatewayContext> {
  return (await authenticateHttpRequest(request, core)).context;
}
