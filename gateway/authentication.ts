/**
 * Who is calling: the bearer token of the request, verified with the accounts context's public
 * key. No token means anonymous; a token that does not verify is refused with 401, never treated
 * as anonymous, so a client learns at once that its token is bad.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { decodeJwt, type CryptoKey } from 'jose';
import { unauthenticated } from '../platform/errors/index.ts';
import { verifyCustomerToken } from '../platform/identity/customer-token.ts';
import { anonymous, type Identity } from '../platform/identity/identity.ts';
import type { GatewayContext } from './context.ts';

/** The identity behind an `Authorization` header value (HTTP) or a `connection_init` payload field. */
export async function identityFromAuthorization(authorization: string | undefined, publicKey: CryptoKey | undefined): Promise<Identity> {
  if (!authorization) return anonymous;
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!match) throw unauthenticated('Send the token as "Authorization: Bearer <token>"', 401);
  if (!publicKey) throw unauthenticated('This gateway is not configured to accept tokens', 401);
  return verifyCustomerToken(publicKey, match[1]!);
}

/**
 * When the bearer token in an (already verified) Authorization value expires, in ms since the
 * epoch: long-lived subscriptions end then, on every transport.
 */
export function tokenExpiryOf(authorization: string | undefined): number | undefined {
  const token = /^Bearer\s+(\S+)$/i.exec(authorization?.trim() ?? '')?.[1];
  if (!token) return undefined;
  const { exp } = decodeJwt(token);
  return exp === undefined ? undefined : exp * 1000;
}

/** A timer for `at` (ms since the epoch), clamped to what setTimeout can wait. */
export function timerAt(at: number, run: () => void): NodeJS.Timeout {
  return setTimeout(run, Math.min(2 ** 31 - 1, Math.max(0, at - Date.now())));
}

const requestIdPattern = /^[A-Za-z0-9._-]{1,64}$/;
const traceparentPattern = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

export async function gatewayContextOf(request: IncomingMessage, publicKey: CryptoKey | undefined): Promise<GatewayContext> {
  const incoming = request.headers['x-request-id'];
  // A client-chosen id is kept for tracing only when it is harmless to log.
  const requestId = typeof incoming === 'string' && requestIdPattern.test(incoming) ? incoming : randomUUID();
  const traceparent = request.headers.traceparent;
  return {
    identity: await identityFromAuthorization(request.headers.authorization, publicKey),
    requestId,
    ...(typeof traceparent === 'string' && traceparentPattern.test(traceparent) ? { traceparent } : {}),
  };
}
