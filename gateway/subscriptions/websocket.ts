/**
 * Subscriptions over graphql-ws (the `graphql-transport-ws` protocol) on the gateway's own
 * `/graphql` URL, next to HTTP queries on the same port.
 *
 * - Authentication at `connection_init`: the payload carries the client's token as
 *   `{ "Authorization": "Bearer <token>" }` (or `authorization`, or `{ "token": "<token>" }`),
 *   checked by the same rules as HTTP. No token is anonymous; a bad one closes the socket with
 *   4403 and the reason. The socket is closed with 4403 when the token expires.
 * - Limits: subscriptions per connection (TOO_MANY_SUBSCRIPTIONS on the operation) and
 *   connections per caller (the customer, or the address of an anonymous one: 4429), counted
 *   together with the caller's multipart and SSE streams (connections-per-caller.ts).
 * - Keep-alive: a WebSocket ping every `keepAliveMs`; a socket that does not pong is dropped.
 *   Protocol-level `ping` messages from the client are answered with `pong`.
 * - `connectionInitWaitTimeout`: a socket that does not send `connection_init` in time is closed (4408).
 * - Only subscriptions: queries and mutations belong on HTTP (BAD_REQUEST), where every HTTP
 *   rule of the gateway applies to them.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import { GraphQLError, type GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { CryptoKey } from 'jose';
import { WebSocketServer, type WebSocket } from 'ws';
import { ErrorCode } from '../../platform/errors/index.ts';
import { formatGraphQLError } from '../../platform/errors/masking.ts';
import type { Identity } from '../../platform/identity/identity.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { errorFields } from '../../platform/logging/logger.ts';
import { identityFromAuthorization, timerAt, tokenExpiryOf } from '../authentication.ts';
import type { GatewayContext } from '../context.ts';
import { callerOf, type ConnectionsPerCaller } from './connections-per-caller.ts';
import type { FederatedSubscriptions } from './federated-subscriptions.ts';
import { prepareSubscription } from './prepare.ts';

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
  subscriptions: FederatedSubscriptions;
  customerTokenPublicKey: CryptoKey | undefined;
  production: boolean;
  log: Logger;
  limits?: SubscriptionLimits;
  /** The per-caller connection count (its bound is `limits.maxConnectionsPerCaller`), shared with the HTTP streams. */
  connectionsPerCaller: ConnectionsPerCaller;
  /** While false, new sockets are refused (the gateway is starting or stopping). */
  isReady?: () => boolean;
}

export interface WebSocketTransport {
  /** Open client sockets. */
  readonly connections: number;
  close(): Promise<void>;
}

interface Connection {
  identity: Identity;
  /** Gives the caller's connection slot back. */
  release: () => void;
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
    maxSubscriptionsPerConnection: options.limits?.maxSubscriptionsPerConnection ?? 100,
    connectionInitWaitTimeoutMs: options.limits?.connectionInitWaitTimeoutMs ?? 3_000,
    keepAliveMs: options.limits?.keepAliveMs ?? 12_000,
  };
  const wss = new WebSocketServer({ server: options.http, path: '/graphql' });
  const connections = new WeakMap<object, Connection>();
  const perCaller = options.connectionsPerCaller;

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
        let identity: Identity;
        try {
          identity = await identityFromAuthorization(authorization, options.customerTokenPublicKey);
        } catch (error) {
          socket.close(4403, (error as Error).message.slice(0, 120));
          return false;
        }
        // The client may have gone while its token was verified: graphql-ws has then already run
        // onClose, so counting this connection now would hold its caller's slot forever.
        if (socket.readyState !== socket.OPEN) return false;
        const release = perCaller.acquire(callerOf(identity, request.socket.remoteAddress));
        if (!release) {
          socket.close(4429, perCaller.refusal);
          return false;
        }
        const connection: Connection = { identity, release, connectionId: randomUUID() };
        const expiresAt = tokenExpiryOf(authorization);
        if (expiresAt !== undefined) connection.expiryTimer = timerAt(expiresAt, () => socket.close(4403, 'The token has expired: sign in again'));
        connections.set(ctx.extra, connection);
        return true;
      },
      onClose: (ctx) => {
        const connection = connections.get(ctx.extra);
        if (!connection) return;
        connections.delete(ctx.extra);
        clearTimeout(connection.expiryTimer);
        connection.release();
      },
      onSubscribe: (ctx, id, payload) => {
        const connection = connections.get(ctx.extra)!;
        // The operation being subscribed is already counted in ctx.subscriptions.
        if (Object.keys(ctx.subscriptions).length > limits.maxSubscriptionsPerConnection) {
          return [
            new GraphQLError(`At most ${limits.maxSubscriptionsPerConnection} subscriptions per connection: complete one first`, {
              extensions: { code: ErrorCode.TOO_MANY_SUBSCRIPTIONS },
            }),
          ];
        }
        const prepared = prepareSubscription(options.schema, payload);
        if (!prepared.ok) return prepared.errors;
        const context: GatewayContext = { identity: connection.identity, requestId: `${connection.connectionId}:${id}` };
        return {
          schema: options.schema,
          document: prepared.subscription.document,
          operationName: prepared.subscription.operationName,
          variableValues: prepared.subscription.variables,
          contextValue: context,
        };
      },
      subscribe: (args) =>
        options.subscriptions.subscribe({
          document: args.document,
          operationName: args.operationName ?? null,
          variables: (args.variableValues ?? {}) as Record<string, unknown>,
          context: args.contextValue as GatewayContext,
        }) as never,
      // Results are formatted (and masked) by FederatedSubscriptions already: sent as they are.
      onNext: (_ctx, _id, _payload, _args, result) => result as never,
      onError: (_ctx, _id, _payload, errors) => errors.map((error) => formatGraphQLError(error, options.production)),
    },
    wss,
    limits.keepAliveMs,
  );
  wss.on('error', (error) => options.log.warn('subscription socket server error', errorFields(error)));
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
