/**
 * Which web origins may call the gateway with credentials: the ones configured
 * (GATEWAY_CORS_ORIGINS, exact origins), in development Apollo Sandbox's too, and always the
 * gateway's own (a page it serves). CORS (plugins/cors.ts) and CSRF (plugins/csrf.ts) ask the
 * same policy, so an origin that may read responses is exactly one that may send the cookie.
 */
import type { IncomingMessage } from 'node:http';

/** Where Apollo Sandbox runs: allowed in development. */
export const sandboxOrigins = ['https://studio.apollographql.com', 'https://sandbox.embed.apollographql.com'] as const;

function normalized(origin: string): string {
  return origin.trim().replace(/\/+$/, '').toLowerCase();
}

/** The configured origins (GATEWAY_CORS_ORIGINS, split by gateway/main.ts), checked, plus Sandbox's origins outside production. */
export function allowedOriginsFrom(configured: readonly string[], production: boolean): string[] {
  const listed = configured.map(normalized).filter(Boolean);
  for (const origin of listed) {
    if (origin === '*' || !/^https?:\/\/[^/]+$/.test(origin)) throw new Error(`GATEWAY_CORS_ORIGINS takes exact origins such as https://shop.example.com, got "${origin}"`);
  }
  return production ? listed : [...listed, ...sandboxOrigins];
}

export class OriginPolicy {
  readonly #listed: ReadonlySet<string>;

  constructor(origins: Iterable<string>) {
    this.#listed = new Set([...origins].map(normalized));
  }

  /** Whether `origin` is on the list. */
  lists(origin: string): boolean {
    return this.#listed.has(normalized(origin));
  }

  /** Whether `origin` is the gateway's own, as the request reached it. */
  isSameOrigin(origin: string, request: IncomingMessage): boolean {
    try {
      return new URL(origin).host === (request.headers.host ?? '').toLowerCase();
    } catch {
      return false;
    }
  }

  /**
   * Whether the request comes from a page allowed to act with the caller's cookie: its `Origin`
   * listed or the gateway's own. Without `Origin`, only a browser's own word that the request is
   * same-origin (`Sec-Fetch-Site`, which no script can set) is enough.
   */
  allows(request: IncomingMessage): boolean {
    const origin = request.headers.origin;
    if (origin === undefined) return request.headers['sec-fetch-site'] === 'same-origin';
    return this.lists(origin) || this.isSameOrigin(origin, request);
  }
}
