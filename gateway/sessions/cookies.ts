/**
 * The web session cookie (docs/decisions/0023): `HttpOnly` so no script can read it,
 * `SameSite=Lax` so a cross-site form post does not carry it, and `Secure` with the `__Host-`
 * prefix (one host, path `/`, never set over plain HTTP, so no sibling subdomain can plant one)
 * everywhere except a gateway served over plain HTTP on localhost, where browsers would drop a
 * Secure cookie and a developer needs it to work.
 */
import type { IncomingMessage } from 'node:http';

/** `auto`: Secure unless the gateway is reached over plain HTTP on localhost. */
export type CookieSecurity = 'auto' | 'always' | 'never';

export interface SessionCookie {
  readonly name: string;
  readonly secure: boolean;
}

const secureName = '__Host-commerce-session';
const plainName = 'commerce-session';
const localHosts = new Set(['localhost', '127.0.0.1', '[::1]']);

/** GATEWAY_SESSION_COOKIE_SECURE: auto | true | false. */
export function cookieSecurityOf(value: string | undefined): CookieSecurity {
  const setting = (value ?? 'auto').trim().toLowerCase();
  if (setting === 'auto' || setting === '') return 'auto';
  if (setting === 'true') return 'always';
  if (setting === 'false') return 'never';
  throw new Error(`GATEWAY_SESSION_COOKIE_SECURE must be auto, true or false, got "${value}"`);
}

/** Whether the request reached the gateway over plain HTTP on a loopback host name. */
export function servedOnPlainLocalhost(request: IncomingMessage): boolean {
  const host = (request.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
  const encrypted = 'encrypted' in request.socket && Boolean(request.socket.encrypted);
  return localHosts.has(host) && !encrypted && request.headers['x-forwarded-proto'] !== 'https';
}

/** The cookie (name and Secure) for a request: read and written under the same name. */
export function sessionCookieFor(request: IncomingMessage, security: CookieSecurity): SessionCookie {
  const secure = security === 'always' || (security === 'auto' && !servedOnPlainLocalhost(request));
  return { name: secure ? secureName : plainName, secure };
}

/** The value of cookie `name` in a `Cookie` header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const pair of header.split(';')) {
    const at = pair.indexOf('=');
    if (at > 0 && pair.slice(0, at).trim() === name) return pair.slice(at + 1).trim() || undefined;
  }
  return undefined;
}

/** A `Set-Cookie` value that stores `value` for `maxAgeSeconds`. */
export function setCookie(cookie: SessionCookie, value: string, maxAgeSeconds: number): string {
  return `${cookie.name}=${value}; HttpOnly; SameSite=Lax; Path=/; Max-Age=${Math.max(0, Math.floor(maxAgeSeconds))}${cookie.secure ? '; Secure' : ''}`;
}

/** A `Set-Cookie` value that removes the cookie. */
export function clearCookie(cookie: SessionCookie): string {
  return setCookie(cookie, '', 0);
}
