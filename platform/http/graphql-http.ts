/**
 * Serves an Apollo Server over plain `node:http`: the official integration point
 * (`executeHTTPGraphQLRequest`) plus the few things a server needs around it — a body size limit,
 * extra routes such as `/health`, and a graceful close. Shared by the gateway and every subgraph.
 */
import type { ServiceMetrics } from '../metrics/metrics.ts';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HeaderMap, type ApolloServer, type BaseContext } from '@apollo/server';
import { withLogScope } from '../logging/request-scope.ts';

export type Route = (request: IncomingMessage, response: ServerResponse) => void | Promise<void>;

export interface GraphQLHttpOptions<TContext extends BaseContext> {
  apollo: ApolloServer<TContext>;
  /** Builds the context of one request; throw a GraphQLError with `extensions.http` to refuse it. */
  context: (request: IncomingMessage) => Promise<TContext>;
  /** @default '/graphql' */
  graphqlPath?: string;
  /** Requests with a larger body are refused with 413. @default 1_048_576 (1 MiB) */
  maxBodyBytes?: number;
  /**
   * JSON bodies nested deeper than this (objects and arrays) are refused before they are parsed:
   * a 100 KB body of nested brackets costs the whole process a second of parsing and coercion.
   * @default 64
   */
  maxJsonDepth?: number;
  /** Time allowed to receive a request's headers. @default 5_000 */
  headersTimeoutMs?: number;
  /** Time allowed to receive a whole request (headers and body). @default 10_000 */
  requestTimeoutMs?: number;
  /** Other routes by exact path, e.g. `{ '/health': … }`. */
  routes?: Record<string, Route>;
  /** Counts and times every request by route, and serves them at `/metrics` (platform/metrics). */
  metrics?: ServiceMetrics;
  /** While this answers false, GraphQL requests get 503 (e.g. the supergraph is still loading). */
  isReady?: () => boolean;
  /**
   * Sees each request to the GraphQL path as it arrives, before readiness is checked or the body
   * read (CORS preflights, origin checks): `true` means it answered the request itself.
   */
  onRequest?: (request: IncomingMessage, response: ServerResponse) => boolean | Promise<boolean>;
  /**
   * Sees each GraphQL request (its parsed JSON body, or its GET parameters) before Apollo Server
   * does: `true` means it served the request itself (a refusal, the gateway's HTTP subscriptions),
   * `{ context }` hands it to Apollo Server with that context, `false` as if there were no hook.
   */
  intercept?: (request: IncomingMessage, response: ServerResponse, params: GraphQLRequestParams) => Intercepted<TContext> | Promise<Intercepted<TContext>>;
}

export type Intercepted<TContext> = boolean | { context: TContext; params?: GraphQLRequestParams };

/** The largest request body any server of the platform reads, and any WebSocket message it takes. */
export const defaultMaxBodyBytes = 1_048_576;

/** The GraphQL parameters of a request: a POST's JSON body, or a GET's query string. */
export interface GraphQLRequestParams {
  query?: unknown;
  operationName?: unknown;
  variables?: unknown;
  extensions?: unknown;
}

function paramsOf(method: string | undefined, body: unknown, search: string): GraphQLRequestParams {
  if (method === 'POST') return body && typeof body === 'object' && !Array.isArray(body) ? (body as GraphQLRequestParams) : {};
  const query = new URLSearchParams(search);
  const json = (name: string) => {
    const value = query.get(name);
    if (value === null) return undefined;
    try {
      return JSON.parse(value) as unknown;
    } catch {
      return value; // left for validation to refuse
    }
  };
  return { query: query.get('query') ?? undefined, operationName: query.get('operationName') ?? undefined, variables: json('variables'), extensions: json('extensions') };
}

class BodyTooLargeError extends Error {}

/**
 * Whether JSON text nests objects and arrays deeper than `max`: one pass over the characters,
 * skipping strings (and their escapes). Linear, no allocation.
 */
export function jsonNestedDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \\ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > max) return true;
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return false;
}

/**
 * The body as text, refused past `limit` without buffering more: a declared length over it is
 * refused before a byte is read; otherwise buffering stops at the limit and what follows is only
 * counted (see `lingerThenCut`), so the request is never destroyed under the client's feet.
 */
function readBody(request: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers['content-length'] ?? 0);
    if (declared > limit) return reject(new BodyTooLargeError());
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (over) return;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        reject(new BodyTooLargeError());
        return;
      }
      chunks.push(chunk);
    });
    request.once('end', () => {
      if (!over) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    request.once('error', reject);
  });
}

/** What a refused body may still send, discarded, before its connection is cut. */
const lingerBytes = 4 * 1024 * 1024;
const lingerMs = 2_000;

/**
 * After a 413, a client still sending its body must be able to read the answer: closing at once
 * would reset the connection and lose it (HTTP's "lingering close", as nginx does). What follows
 * is discarded, never buffered, up to `lingerBytes` or `lingerMs`; past either the socket is cut.
 */
function lingerThenCut(request: IncomingMessage): void {
  if (request.readableEnded || request.destroyed) return;
  let discarded = 0;
  const cut = () => request.socket.destroy();
  const timer = setTimeout(cut, lingerMs);
  timer.unref();
  request.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > lingerBytes) cut();
  });
  request.once('end', () => clearTimeout(timer));
  request.once('close', () => clearTimeout(timer));
  request.resume();
}

export function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/** A GraphQL error response's body: one error with its code (for answers outside Apollo Server). */
export function graphQLErrorBody(message: string, code: string) {
  return { errors: [{ message, extensions: { code } }] };
}

/** The request as Apollo Server reads it, with the given parameters: a POST's body, a GET's query string. */
function withParams(method: string | undefined, params: GraphQLRequestParams, search: string): { search: string; body: unknown } {
  if (method === 'POST') return { search, body: params };
  const query = new URLSearchParams(search);
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined) query.delete(name);
    else query.set(name, typeof value === 'string' ? value : JSON.stringify(value));
  }
  return { search: `?${query}`, body: undefined };
}

async function serveGraphQL<TContext extends BaseContext>(
  options: GraphQLHttpOptions<TContext>,
  request: IncomingMessage,
  response: ServerResponse,
  search: string,
): Promise<void> {
  const headers = new HeaderMap();
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  let body: unknown;
  if (request.method === 'POST') {
    const text = await readBody(request, options.maxBodyBytes ?? defaultMaxBodyBytes);
    const isJson = (headers.get('content-type') ?? '').includes('json');
    if (isJson && text.length > 0) {
      const maxDepth = options.maxJsonDepth ?? 64;
      if (jsonNestedDeeperThan(text, maxDepth)) {
        sendJson(response, 400, graphQLErrorBody(`The request body nests JSON deeper than ${maxDepth} levels`, 'BAD_REQUEST'));
        return;
      }
      try {
        body = JSON.parse(text);
      } catch {
        sendJson(response, 400, graphQLErrorBody('The request body is not valid JSON', 'BAD_REQUEST'));
        return;
      }
    } else {
      body = text;
    }
  }
  const intercepted = options.intercept ? await options.intercept(request, response, paramsOf(request.method, body, search)) : false;
  if (intercepted === true) return;
  // The interceptor may have rewritten the request (a persisted query's hash replaced by its text).
  const rewritten = intercepted && intercepted.params ? withParams(request.method, intercepted.params, search) : { search, body };
  const result = await options.apollo.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: request.method ?? 'GET', headers, search: rewritten.search, body: rewritten.body },
    context: intercepted ? () => Promise.resolve(intercepted.context) : () => options.context(request),
  });
  for (const [name, value] of result.headers) response.setHeader(name, value);
  response.statusCode = result.status ?? 200;
  if (result.body.kind === 'complete') {
    response.end(result.body.string);
    return;
  }
  for await (const chunk of result.body.asyncIterator) response.write(chunk);
  response.end();
}

/** A `node:http` server for the given Apollo Server; call `listen` to start it. */
export function createGraphQLHttpServer<TContext extends BaseContext>(options: GraphQLHttpOptions<TContext>): Server {
  const graphqlPath = options.graphqlPath ?? '/graphql';
  // Request timeouts are enforced by a sweep every connectionsCheckingInterval (30 s by default).
  const metrics = options.metrics;
  const routes: Record<string, Route> = { ...options.routes, ...(metrics ? { '/metrics': (request, response) => metrics.serve(request, response) } : {}) };
  const server = createServer({ connectionsCheckingInterval: 1_000 }, (request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (metrics) {
      // The route label is one of the server's own paths: a scan of random URLs adds no series.
      const routeLabel = url.pathname === graphqlPath || Object.hasOwn(routes, url.pathname) ? url.pathname : 'other';
      const started = process.hrtime.bigint();
      response.once('finish', () => metrics.observeHttp(routeLabel, request.method ?? 'GET', response.statusCode, Number(process.hrtime.bigint() - started) / 1e9));
    }
    const handle = async () => {
      const route = routes[url.pathname];
      if (route) return route(request, response);
      if (url.pathname === graphqlPath) {
        if (options.onRequest && (await options.onRequest(request, response))) return;
        if (options.isReady && !options.isReady()) {
          sendJson(response, 503, graphQLErrorBody('Starting up: try again in a moment', 'SERVICE_UNAVAILABLE'));
          return;
        }
        return serveGraphQL(options, request, response, url.search);
      }
      if (url.pathname === '/' && request.method === 'GET') {
        response.writeHead(302, { location: graphqlPath }).end();
        return;
      }
      sendJson(response, 404, graphQLErrorBody(`Nothing here: GraphQL is served at ${graphqlPath}`, 'NOT_FOUND'));
    };
    // Each request logs in a scope of its own: its lines carry its id once it is known (platform/logging/request-scope.ts).
    withLogScope(handle).catch((error: unknown) => {
      if (response.headersSent) return void response.destroy();
      if (error instanceof BodyTooLargeError) {
        lingerThenCut(request);
        sendJson(response, 413, graphQLErrorBody(`The request body is too large: at most ${options.maxBodyBytes ?? defaultMaxBodyBytes} bytes`, 'REQUEST_TOO_LARGE'));
        return;
      }
      sendJson(response, 500, graphQLErrorBody('Internal server error', 'INTERNAL_SERVER_ERROR'));
    });
  });
  // A client that trickles its headers or body (slowloris) is cut off instead of holding a socket
  // for Node's default 300 s. Streams being answered are not affected: these bound the request.
  server.headersTimeout = options.headersTimeoutMs ?? 5_000;
  server.requestTimeout = options.requestTimeoutMs ?? 10_000;
  return server;
}

/** Starts listening and resolves with the bound port (useful with port 0 in tests). */
export function listen(server: Server, port: number, host = '0.0.0.0'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stops accepting connections and closes idle keep-alive ones so shutdown does not hang. */
export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    setTimeout(() => server.closeAllConnections(), 5_000).unref();
  });
}
