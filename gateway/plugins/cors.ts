/**
 * CORS for browser apps on their own origins (docs/decisions/0023). An origin the policy allows
 * (GATEWAY_CORS_ORIGINS, Sandbox's in development, the gateway's own) gets
 * `Access-Control-Allow-Origin: <origin>` with credentials, so the session cookie is sent and the
 * response read; its preflight is answered here, 204, without reaching GraphQL. Any other origin
 * gets no CORS header at all (the browser then keeps the response from the page), and its
 * preflight is refused: 403 CORS_ORIGIN_NOT_ALLOWED.
 */
import type { GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';
import type { OriginPolicy } from '../sessions/origins.ts';

export interface CorsOptions {
  origins: OriginPolicy;
  /** How long a browser may reuse a preflight's answer, in seconds. @default 600 */
  maxAgeSeconds?: number;
}

/** Request headers a browser app may send: GraphQL clients', Apollo's client awareness, ours. */
export const corsAllowedHeaders = [
  'content-type',
  'authorization',
  'apollographql-client-name',
  'apollographql-client-version',
  'apollo-require-preflight',
  'x-apollo-operation-name',
  'x-commerce-session',
  'x-commerce-cost',
  'x-request-id',
  'traceparent',
] as const;

export function cors(options: CorsOptions): GatewayPlugin {
  const maxAge = String(options.maxAgeSeconds ?? 600);
  const allowedHeaders = corsAllowedHeaders.join(', ');
  return {
    name: 'cors',
    onHttpRequest({ request, response }) {
      const origin = request.headers.origin;
      if (origin === undefined) return;
      // Answers differ by Origin: caches must keep them apart.
      response.setHeader('vary', 'Origin');
      const preflight = request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined;
      if (!options.origins.lists(origin) && !options.origins.isSameOrigin(origin, request)) {
        if (preflight) throw new GatewayRefusal('CORS_ORIGIN_NOT_ALLOWED', `The origin ${origin.slice(0, 100)} may not call this API from a browser`, { status: 403 });
        return;
      }
      response.setHeader('access-control-allow-origin', origin);
      response.setHeader('access-control-allow-credentials', 'true');
      // A browser app reads the request id (to quote it to support) and a refusal's wait.
      response.setHeader('access-control-expose-headers', 'x-request-id, retry-after');
      if (!preflight) return;
      response.writeHead(204, {
        'access-control-allow-methods': 'GET, POST, OPTIONS',
        'access-control-allow-headers': allowedHeaders,
        'access-control-max-age': maxAge,
        'content-length': '0',
      });
      response.end();
      return 'handled';
    },
  };
}
