/**
 * GraphQL subscriptions for a subgraph over graphql-ws (the `graphql-transport-ws` protocol), on
 * the same http server, path and port as its HTTP GraphQL.
 *
 * Only the gateway may connect: the `connection_init` payload must carry an identity signed by
 * the gateway (`{ "x-commerce-identity": "<jws>" }`), verified with the same key as HTTP
 * requests; without a valid one the socket is closed with 4403 Forbidden.
 *
 * The gateway multiplexes: one socket per subgraph carries the subscriptions of every caller,
 * each `subscribe` message with its caller's signed identity in
 * `extensions["x-commerce-identity"]`, verified here for each operation (UNAUTHENTICATED when it
 * is not valid). An operation without one runs as the socket's identity. Each operation runs
 * with a context built from its identity, as an HTTP request's would be, and its errors are
 * formatted by the same masking as HTTP.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { GraphQLError, parse, validate, type DocumentNode, type GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { CryptoKey } from 'jose';
import { WebSocketServer } from 'ws';
import { ErrorCode } from '../errors/index.ts';
import { formatGraphQLError } from '../errors/masking.ts';
import { gatewayIdentityHeader, verifyGatewayIdentity } from '../identity/gateway-identity.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../logging/logger.ts';
import { errorFields } from '../logging/logger.ts';
import type { RequestScope } from './server.ts';

export interface SubscriptionServerOptions<TContext extends RequestScope> {
  http: Server;
  schema: GraphQLSchema;
  createContext: (scope: RequestScope) => TContext;
  gatewayPublicKey: CryptoKey;
  production: boolean;
  log: Logger;
  /** @default '/graphql' */
  path?: string;
}

export interface SubscriptionServer {
  /** Open sockets. */
  readonly connections: number;
  /** Closes every socket (1001 Going Away) and stops accepting new ones. */
  close(): Promise<void>;
}

interface ConnectionExtra {
  identity?: Identity;
  connectionId?: string;
}

export function attachSubscriptions<TContext extends RequestScope>(options: SubscriptionServerOptions<TContext>): SubscriptionServer {
  const wss = new WebSocketServer({ server: options.http, path: options.path ?? '/graphql' });
  const state = new WeakMap<object, ConnectionExtra>();
  const extraOf = (ctx: { extra: object }) => {
    let extra = state.get(ctx.extra);
    if (!extra) state.set(ctx.extra, (extra = {}));
    return extra;
  };
  const format = (error: GraphQLError) => formatGraphQLError(error, options.production);
  const disposable = useServer(
    {
      schema: options.schema,
      onConnect: async (ctx) => {
        const token = ctx.connectionParams?.[gatewayIdentityHeader];
        try {
          const identity = await verifyGatewayIdentity(options.gatewayPublicKey, typeof token === 'string' ? token : undefined);
          Object.assign(extraOf(ctx), { identity, connectionId: randomUUID() });
          return true;
        } catch {
          return false; // graphql-ws closes with 4403 Forbidden
        }
      },
      // Parses, validates and builds the context here (rather than in `context`) so that an
      // operation whose identity is not valid is refused with an error message, not run.
      onSubscribe: async (ctx, id, payload) => {
        const extra = extraOf(ctx);
        let identity = extra.identity!;
        const signed = payload.extensions?.[gatewayIdentityHeader];
        if (signed !== undefined) {
          try {
            identity = await verifyGatewayIdentity(options.gatewayPublicKey, typeof signed === 'string' ? signed : undefined);
          } catch {
            return [new GraphQLError('The subscription must carry an identity signed by the gateway', { extensions: { code: ErrorCode.UNAUTHENTICATED } })];
          }
        }
        let document: DocumentNode;
        try {
          document = parse(payload.query);
        } catch (error) {
          return [error as GraphQLError];
        }
        const errors = validate(options.schema, document);
        if (errors.length > 0) return errors;
        const requestId = `${extra.connectionId}:${id}`;
        return {
          schema: options.schema,
          document,
          ...(payload.operationName ? { operationName: payload.operationName } : {}),
          ...(payload.variables ? { variableValues: payload.variables } : {}),
          contextValue: options.createContext({ identity, requestId, causation: { correlationId: requestId, causationId: requestId, traceparent: null } }),
        };
      },
      onNext: (_ctx, _id, _payload, _args, result) => (result.errors ? { ...result, errors: result.errors.map(format) } : undefined),
      onError: (_ctx, _id, _payload, errors) => errors.map(format),
    },
    wss,
  );
  wss.on('error', (error) => options.log.warn('subscription server error', errorFields(error)));
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
