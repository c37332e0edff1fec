/**
 * The development explorer (docs/decisions/0027): a browser's `GET /graphql` gets a landing page
 * that embeds Apollo Sandbox when Sandbox's CDN answers within `sandboxTimeoutMs`, and otherwise
 * moves on to GraphiQL served by the gateway itself at `/graphql/explorer` (no CDN: offline and
 * behind firewalls). Switched on only outside production, like Sandbox before it.
 *
 * The landing page is answered at `onHttpRequest`, before authentication: a stale session cookie
 * must not turn the page into a 401, and the page runs nothing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Route } from '../../platform/http/graphql-http.ts';
import { explorerAssets, graphiqlBundle, sendAsset } from '../explorer/assets.ts';
import { explorerPage, landingPage } from '../explorer/pages.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';

export interface ExplorerOptions {
  /** The GraphQL endpoint's path; the explorer lives under it. @default '/graphql' */
  endpointPath?: string;
  /**
   * How long the landing page waits for Sandbox's embed script before opening the local explorer.
   * A refused connection falls back at once; this bounds a firewall that drops packets.
   * @default 3_000
   */
  sandboxTimeoutMs?: number;
  /** `false`: no Sandbox at all, `GET /graphql` opens the local explorer. @default true */
  sandbox?: boolean;
}

const defaultSandboxTimeoutMs = 3_000;

function pathsOf(options: ExplorerOptions | undefined) {
  const endpoint = options?.endpointPath ?? '/graphql';
  return { endpoint, explorer: `${endpoint}/explorer`, assets: `${endpoint}/explorer/assets` };
}

/**
 * A browser navigating to the endpoint: a GET that accepts HTML and none of GraphQL's answers
 * (JSON, multipart, SSE). As with Apollo's landing page, a `?query=` in the address does not make
 * it an operation: the explorer opens with that query in its editor.
 */
function isPageRequest(request: IncomingMessage): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  const accept = request.headers.accept ?? '';
  return accept.includes('text/html') && !/application\/(graphql-response\+)?json|multipart\/mixed|text\/event-stream/.test(accept);
}

function sendPage(request: IncomingMessage, response: ServerResponse, page: { html: string; csp: string }): void {
  response.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(page.html),
    'content-security-policy': page.csp,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  });
  response.end(request.method === 'HEAD' ? undefined : page.html);
}

/** Answers a browser's `GET /graphql` with the landing page (Sandbox, or the local explorer). */
export function explorerLanding(options?: ExplorerOptions): GatewayPlugin {
  const paths = pathsOf(options);
  const page = landingPage({
    localExplorerPath: paths.explorer,
    sandboxTimeoutMs: options?.sandboxTimeoutMs ?? defaultSandboxTimeoutMs,
    assetsPath: paths.assets,
  });
  return {
    name: 'explorer',
    onHttpRequest({ request, response }) {
      if (!isPageRequest(request)) return;
      if (options?.sandbox === false) {
        response.writeHead(302, { location: paths.explorer, 'cache-control': 'no-store' }).end();
      } else {
        sendPage(request, response, page);
      }
      return 'handled';
    },
  };
}

/** The routes of the local explorer: its page and its static files, each by exact path. */
export function explorerRoutes(options?: ExplorerOptions): Record<string, Route> {
  const paths = pathsOf(options);
  const bundle = graphiqlBundle();
  const routes: Record<string, Route> = {
    [paths.explorer]: (request, response) =>
      sendPage(
        request,
        response,
        explorerPage({
          endpointPath: paths.endpoint,
          assetsPath: paths.assets,
          bundlePath: bundle ? `${paths.assets}/graphiql-${bundle.version}` : undefined,
          host: request.headers.host,
        }),
      ),
  };
  for (const [path, asset] of explorerAssets(paths.assets, bundle)) routes[path] = (request, response) => sendAsset(request, response, asset);
  return routes;
}
