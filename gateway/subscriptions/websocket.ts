/**
 * Subscriptions over graphql-ws (the `graphql-transport-ws` protocol) on the gateway's own
 * `/graphql` URL, next to HTTP queries on the same port.
 *
 * - Authentication at `connection_init`: the payload carries the client's token as
 *   `{ "Authorization": "Bearer <token>" }` (or `authorization`, or `{ "token": "<token>" }`), or
 *   the upgrade request carries the session cookie; the core's `authenticate` checks either by the
 *   same rules as HTTP. No credentials is anonymous; bad ones close the socket with 4403 and the
 *   reason. The socket is closed with 4403 when the token expires or its session is revoked.
 * - Admission through the gateway's core (gateway/pipeline/core.ts): the socket is a connection
 *   its plugins admit at `connection_init` (a refusal closes it with the refusal's close code,
 *   e.g. 4429 TOO_MANY_CONNECTIONS), and each `subscribe` an operation they admit (a refusal is
 *   the operation's `error` message with its code, e.g. OPERATION_TOO_DEEP).
 * - Messages are bounded (`maxPayloadBytes`, the HTTP body limit): a larger one closes the
 *   socket with 1009 before it is buffered whole.
 * - Keep-alive: a WebSocket ping every `keepAliveMs`; a socket that does not pong is dropped.
 *   Protocol-level `ping` messages from the client are answered with `pong`.
 * - `connectionInitWaitTimeout`: a socket that does not send `connection_init` in time is closed (4408).
 * - Only subscriptions: queries and mutations belong on HTTP (BAD_REQUEST), where every HTTP
 *   rule of the gateway applies to them.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer, type WebSocket } from 'ws';
import { ErrorCode } from '../../platform/errors/index.ts';
import { defaultMaxBodyBytes } from '../../platform/http/graphql-http.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { logWebSocketErrors } from '../../platform/logging/socket-errors.ts';
import { timerAt } from '../authentication.ts';
import type { GatewayContext } from '../context.ts';
import { withResponseExtensions, type GatewayCore } from '../pipeline/core.ts';
import type { Authenticated, ClientConnection } from '../pipeline/plugin.ts';
import { GatewayRefusal, isRefusal } from '../pipeline/refusal.ts';
import type { FederatedSubscriptions } from './federated-subscriptions.ts';

export interface SubscriptionLimits {
  /** @default 100 */
  maxSubscriptionsPerConnection?: number;
  /** @default 20 */
  maxConnectionsPerCaller?: number;
  /** @default 3_000 */
  connectionInitWaitTimeoutMs?: number;
  /** WebSocket ping interval; a socket that misses a pong is closed. @default 12_000 */
  keepAliveMs?: number;
}

export interface WebSocketTransportOptions {
  http: Server;
  schema: GraphQLSchema;
  core: GatewayCore;
  subscriptions: FederatedSubscriptions;
  log: Logger;
  limits?: SubscriptionLimits;
  /** The largest message taken; a larger one closes the socket with 1009. @default 1_048_576 (the HTTP body limit) */
  maxPayloadBytes?: number;
  /** While false, new sockets are refused (the gateway is starting or stopping). */
  isReady?: () => boolean;
}

export interface WebSocketTransport {
  /** Open client sockets. */
  readonly connections: number;
  close(): Promise<void>;
}

interface Connection {
  /** What the core admitted; `release` gives back what its plugins took (e.g. the caller's slot). */
  admission: Awaited<ReturnType<GatewayCore['admitConnection']>>;
  connectionId: string;
  expiryTimer?: NodeJS.Timeout;
}

/** The token a `connection_init` payload carries, as an Authorization header value. */
function authorizationOf(payload: Record<string, unknown> | undefined): string | undefined {
  if (!payload) return undefined;
  for (const [name, value] of Object.entries(payload)) {
    if (typeof value !== 'string') continue;
    if (name.toLowerCase() === 'authorization') return value;
    if (name === 'token') return `Bearer ${value}`;
  }
  const headers = payload.headers as Record<string, unknown> | undefined;
  if (headers && typeof headers === 'object') return authorizationOf(headers);
  return undefined;
}

export function attachWebSocketSubscriptions(options: WebSocketTransportOptions): WebSocketTransport {
  const limits = {
    connectionInitWaitTimeoutMs: options.limits?.connectionInitWaitTimeoutMs ?? 3_000,
    keepAliveMs: options.limits?.keepAliveMs ?? 12_000,
  };
  const { core } = options;
  const wss = new WebSocketServer({ server: options.http, path: '/graphql', maxPayload: options.maxPayloadBytes ?? defaultMaxBodyBytes });
  const connections = new WeakMap<object, Connection>();

  wss.on('connection', (socket) => {
    if (options.isReady && !options.isReady()) socket.close(1013, 'Starting up: try again in a moment');
  });

  const disposable = useServer<Record<string, unknown>, { socket: WebSocket; request: IncomingMessage }>(
    {
      schema: options.schema,
      connectionInitWaitTimeout: limits.connectionInitWaitTimeoutMs,
      onConnect: async (ctx) => {
        const { socket, request } = ctx.extra;
        const authorization = authorizationOf(ctx.connectionParams);
        let authenticated: Authenticated;
        try {
          authenticated = await core.authenticate({ transport: 'graphql-ws', request, authorization });
        } catch (error) {
          if (isRefusal(error)) core.refused(error, 'graphql-ws');
          socket.close(isRefusal(error) ? error.closeCode : 4403, (error as Error).message.slice(0, 120));
          return false;
        }
        const { identity } = authenticated;
        // The client may have gone while its token was verified: graphql-ws has then already run
        // onClose, so admitting this connection now would hold its caller's slot forever.
        if (socket.readyState !== socket.OPEN) return false;
        let admission: Connection['admission'];
        try {
          admission = await core.admitConnection({
            transport: 'graphql-ws',
            request,
            identity,
            activeOperations: () => Object.keys(ctx.subscriptions).length,
            ...(authenticated.credential ? { credential: authenticated.credential } : {}),
            ...(authenticated.expiresAt !== undefined ? { expiresAt: authenticated.expiresAt } : {}),
            end: (refusal) => socket.close(refusal.closeCode, refusal.message.slice(0, 120)),
            connectionParams: ctx.connectionParams,
          });
        } catch (error) {
          const refusal = isRefusal(error) ? error : new GatewayRefusal(ErrorCode.INTERNAL_SERVER_ERROR, 'Internal server error', { status: 500, closeCode: 1011 });
          if (isRefusal(error)) core.refused(refusal, 'graphql-ws');
          socket.close(refusal.closeCode, refusal.message.slice(0, 120));
          return false;
        }
        if (socket.readyState !== socket.OPEN) {
          admission.release();
          return false;
        }
        const connection: Connection = { admission, connectionId: randomUUID() };
        const { expiresAt } = authenticated;
        if (expiresAt !== undefined) connection.expiryTimer = timerAt(expiresAt, () => socket.close(4403, 'The token has expired: sign in again'));
        connections.set(ctx.extra, connection);
        return true;
      },
      onClose: (ctx) => {
        const connection = connections.get(ctx.extra);
        if (!connection) return;
        connections.delete(ctx.extra);
        clearTimeout(connection.expiryTimer);
        connection.admission.release();
      },
      onSubscribe: async (ctx, id, payload) => {
        const connection = connections.get(ctx.extra)!;
        // Counted now, before anything is awaited: graphql-ws registers each `subscribe` as it
        // arrives, so by the time an earlier one is admitted, later ones are registered too. This
        // one's count is the operations that arrived before it, and itself.
        const active = Object.keys(ctx.subscriptions).length;
        const admitted: ClientConnection = Object.create(connection.admission.connection, { activeOperations: { value: active } });
        const context: GatewayContext = {
          identity: connection.admission.connection.identity,
          requestId: `${connection.connectionId}:${id}`,
          clientAddress: connection.admission.connection.remoteAddress,
        };
        try {
          await core.receiveOperation(admitted, payload);
          const parsed = core.parse(await core.resolveDocument(payload, { request: ctx.extra.request, client: admitted.client }));
          if (parsed.kind !== undefined && parsed.kind !== 'subscription') {
            throw new GatewayRefusal(ErrorCode.BAD_REQUEST, `This is a ${parsed.kind}: send queries and mutations as HTTP requests to /graphql`, { status: 400 });
          }
          const operation = await core.admitOperation(parsed, admitted, context, ctx.extra.request.headers);
          return {
            schema: options.schema,
            document: operation.document,
            operationName: operation.operationName,
            variableValues: operation.variables,
            contextValue: context,
          };
        } catch (error) {
          if (!isRefusal(error)) return [new GatewayRefusal(ErrorCode.INTERNAL_SERVER_ERROR, 'Internal server error', { status: 500 })];
          core.refused(error, 'graphql-ws');
          return [error];
        }
      },
      subscribe: (args) =>
        options.subscriptions.subscribe({
          document: args.document,
          operationName: args.operationName ?? null,
          variables: (args.variableValues ?? {}) as Record<string, unknown>,
          context: args.contextValue as GatewayContext,
        }) as never,
      // Results are formatted (and masked) by FederatedSubscriptions already; plugins' extensions added.
      onNext: (_ctx, _id, _payload, args, result) => withResponseExtensions(result as Record<string, unknown>, (args.contextValue as GatewayContext).responseExtensions) as never,
      onError: (_ctx, _id, _payload, errors) => errors.map((error) => core.clientError(error)) as never,
    },
    wss,
    limits.keepAliveMs,
  );
  // An oversized or malformed frame: ws closes the socket (1009 / 1002 / 1007) and reports it;
  // one warn line, never graphql-ws's console.error with a stack trace.
  logWebSocketErrors(wss, options.log);
  return {
    get connections() {
      return wss.clients.size;
    },
    async close() {
      await disposable.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

