/**
 * GraphQL subscriptions for a subgraph over graphql-ws (the `graphql-transport-ws` protocol), on
 * the same http server, path and port as its HTTP GraphQL.
 *
 * Only the gateway may connect: the `connection_init` payload must carry an identity the gateway
 * signed for THIS subgraph (`{ "x-commerce-identity": "<jws>" }`, audience `subgraph:<name>`),
 * verified with the same key as HTTP requests; without a valid one the socket is closed with 4403
 * Forbidden. That identity opens the socket and nothing more.
 *
 * The gateway multiplexes: one socket per subgraph carries the subscriptions of every caller.
 * EVERY `subscribe` must carry its caller's identity, signed for this subgraph, in
 * `extensions["x-commerce-identity"]`, verified for that operation (UNAUTHENTICATED otherwise):
 * there is no fallback to the socket's identity, so a captured socket identity runs nothing. Only
 * subscriptions are served (a query or mutation is refused with BAD_REQUEST: they go over HTTP,
 * where each request is authorized on its own), within the subgraph's operation limits and cost
 * (admission.ts). A subscription lasts as long as its identity: when that expires, it ends with
 * IDENTITY_EXPIRED and stops at the subgraph; the gateway re-subscribes with a fresh identity
 * before then. Messages are bounded like HTTP bodies (`maxPayload`).
 *
 * Each operation runs with a context built from its identity, as an HTTP request's would be, and
 * its errors are formatted by the same masking as HTTP.
 *
 * A subscription the gateway makes resumable (`extensions["x-commerce-resume-after"]`,
 * docs/decisions/0020) gets `resume` in its context, and each event's position (which its
 * resolver attaches to the source event) in the result's extensions; a checkpoint is sent as a
 * result with the position alone. Other subscriptions get neither.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { GraphQLError, createSourceEventStream, execute, getOperationAST, validate, type ExecutionArgs, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import type { CryptoKey } from 'jose';
import { WebSocketServer } from 'ws';
import { ErrorCode } from '../errors/index.ts';
import { formatGraphQLError } from '../errors/masking.ts';
import { defaultMaxBodyBytes } from '../http/graphql-http.ts';
import { isCheckpoint, positionExtension, positionOf, resumeRequestOf } from '../graphql/subscription-position.ts';
import { gatewayIdentityHeader, verifyGatewayIdentity, verifyGatewayIdentityClaims } from '../identity/gateway-identity.ts';
import type { Logger } from '../logging/logger.ts';
import { logWebSocketErrors } from '../logging/socket-errors.ts';
import type { SubgraphAdmission } from './admission.ts';
import { identityExpired, withSubgraphRefusalCodes } from './refusals.ts';
import type { RequestScope } from './server.ts';

export interface SubscriptionServerOptions<TContext extends RequestScope> {
  http: Server;
  /** The subgraph's name: identities must be signed for it. */
  subgraph: string;
  schema: GraphQLSchema;
  createContext: (scope: RequestScope) => TContext;
  gatewayPublicKey: CryptoKey;
  production: boolean;
  log: Logger;
  /** Operation limits and cost, as on HTTP. */
  admission: SubgraphAdmission;
  /** @default '/graphql' */
  path?: string;
  /** Largest message accepted; a larger one closes the socket (1009). @default 1_048_576, the HTTP body limit */
  maxPayloadBytes?: number;
}

export interface SubscriptionServer {
  /** Open sockets. */
  readonly connections: number;
  /** Closes every socket (1001 Going Away) and stops accepting new ones. */
  close(): Promise<void>;
}

interface ConnectionExtra {
  connectionId?: string;
  /** When each running operation's identity expires, by operation id. */
  expiries: Map<string, number>;
}

export function attachSubscriptions<TContext extends RequestScope>(options: SubscriptionServerOptions<TContext>): SubscriptionServer {
  const wss = new WebSocketServer({ server: options.http, path: options.path ?? '/graphql', maxPayload: options.maxPayloadBytes ?? defaultMaxBodyBytes });
  const state = new WeakMap<object, ConnectionExtra>();
  const extraOf = (ctx: { extra: object }) => {
    let extra = state.get(ctx.extra);
    if (!extra) state.set(ctx.extra, (extra = { expiries: new Map() }));
    return extra;
  };
  // A statement cancelled by the statement timeout is shown as such, masked or not.
  const format = (error: GraphQLError) => withSubgraphRefusalCodes(formatGraphQLError(error, options.production), error);
  const { admission, subgraph } = options;
  const disposable = useServer(
    {
      schema: options.schema,
      onConnect: async (ctx) => {
        const token = ctx.connectionParams?.[gatewayIdentityHeader];
        try {
          await verifyGatewayIdentity(options.gatewayPublicKey, typeof token === 'string' ? token : undefined, subgraph);
          extraOf(ctx).connectionId = randomUUID();
          return true;
        } catch {
          return false; // graphql-ws closes with 4403 Forbidden
        }
      },
      // Verifies, parses, bounds and validates here (rather than in `context`) so that an operation
      // that may not run is refused with an error message, never started.
      onSubscribe: async (ctx, id, payload) => {
        const extra = extraOf(ctx);
        const signed = payload.extensions?.[gatewayIdentityHeader];
        let verified;
        try {
          verified = await verifyGatewayIdentityClaims(options.gatewayPublicKey, typeof signed === 'string' ? signed : undefined, subgraph);
        } catch {
          return [new GraphQLError('Each subscription must carry an identity signed by the gateway for this service', { extensions: { code: ErrorCode.UNAUTHENTICATED } })];
        }
        const document = admission.parse(payload.query);
        if (document instanceof GraphQLError) return [document];
        const operation = getOperationAST(document, payload.operationName);
        if (operation && operation.operation !== 'subscription') {
          return [new GraphQLError(`Only subscriptions are served over this socket: send ${operation.operation === 'mutation' ? 'mutations' : 'queries'} over HTTP`, { extensions: { code: ErrorCode.BAD_REQUEST } })];
        }
        const overLimit = admission.checkLimits(document, payload.operationName);
        if (overLimit) return [overLimit];
        const errors = validate(options.schema, document);
        if (errors.length > 0) return errors;
        const tooCostly = admission.checkCost(document, payload.operationName, payload.variables ?? undefined);
        if (tooCostly) return [tooCostly];
        const resume = resumeRequestOf(payload.extensions);
        if (resume === 'invalid') return [new GraphQLError('The resume position must be a non-negative integer as a string, or null', { extensions: { code: ErrorCode.BAD_REQUEST } })];
        extra.expiries.set(id, verified.expiresAt);
        const requestId = `${extra.connectionId}:${id}`;
        return {
          schema: options.schema,
          document,
          ...(payload.operationName ? { operationName: payload.operationName } : {}),
          ...(payload.variables ? { variableValues: payload.variables } : {}),
          contextValue: options.createContext({
            identity: verified.identity,
            requestId,
            causation: { correlationId: requestId, causationId: requestId, traceparent: null },
            ...(resume ? { resume } : {}),
          }),
        };
      },
      subscribe: subscribeWithPositions,
      // The subscription's events, until its identity expires: then IDENTITY_EXPIRED (graphql-ws
      // sends it as the operation's `error`) and the source stops.
      onOperation: (ctx, id, _payload, _args, result) => {
        const extra = extraOf(ctx);
        const expiresAt = extra.expiries.get(id);
        extra.expiries.delete(id);
        if (expiresAt === undefined || !isAsyncIterable(result)) return undefined;
        return untilExpiry(result, expiresAt);
      },
      onComplete: (ctx, id) => {
        extraOf(ctx).expiries.delete(id);
      },
      onNext: (_ctx, _id, _payload, _args, result) => (result.errors ? { ...result, errors: result.errors.map(format) } : undefined),
      onError: (_ctx, _id, _payload, errors) => errors.map(format),
    },
    wss,
  );
  // One log line per bad frame or oversized message, no stack trace (they are the client's doing).
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

/**
 * graphql-js's `subscribe` (the source stream, each event executed with it as the root value),
 * except that a resumable subscription's results carry their events' positions, and its
 * checkpoints are sent as a position alone; a subscription that is not resumable gets no
 * checkpoint at all.
 */
async function subscribeWithPositions(args: ExecutionArgs): Promise<AsyncGenerator<ExecutionResult> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!isAsyncIterable(source)) return source as ExecutionResult;
  const resumable = (args.contextValue as RequestScope | undefined)?.resume !== undefined;
  return mapEvents(source, async (event) => {
    const position = positionOf(event);
    if (isCheckpoint(event)) return resumable ? { extensions: { [positionExtension]: position } } : undefined;
    const result = await execute({ ...args, rootValue: event });
    if (!resumable || position === undefined) return result;
    return { ...result, extensions: { ...result.extensions, [positionExtension]: position } };
  });
}

/** `source` mapped by `map` (undefined: skipped); leaving it returns the source at once. */
function mapEvents(source: AsyncIterable<unknown>, map: (event: unknown) => Promise<ExecutionResult | undefined>): AsyncGenerator<ExecutionResult> {
  const iterator = source[Symbol.asyncIterator]();
  const done = { done: true as const, value: undefined };
  const mapped: AsyncGenerator<ExecutionResult> = {
    async next() {
      for (;;) {
        const step = await iterator.next();
        if (step.done) return done;
        const result = await map(step.value);
        if (result) return { done: false, value: result };
      }
    },
    async return() {
      await iterator.return?.();
      return done;
    },
    async throw(error: unknown) {
      await iterator.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return mapped;
    },
  };
  return mapped;
}

function isAsyncIterable(value: unknown): value is AsyncIterable<ExecutionResult> {
  return typeof (value as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === 'function';
}

/**
 * The events of `source` until `expiresAt`, then an IDENTITY_EXPIRED error. Ending (by expiry or
 * by the client's `complete`) returns the source at once, which releases what the resolver holds;
 * an async generator would not (its `return` waits for the pending `next`, i.e. the next event).
 */
function untilExpiry(source: AsyncIterable<ExecutionResult>, expiresAt: number): AsyncGenerator<ExecutionResult> {
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  let stop: (reason: 'expired' | 'returned') => void = () => {};
  const stopped = new Promise<'expired' | 'returned'>((resolve) => (stop = resolve));
  const timer = setTimeout(() => stop('expired'), Math.max(0, expiresAt - Date.now()));
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    stop('returned');
    void Promise.resolve(iterator.return?.()).catch(() => {});
  };
  const done = { done: true as const, value: undefined };
  const generator: AsyncGenerator<ExecutionResult> = {
    async next() {
      if (finished) return done;
      const step = await Promise.race([iterator.next(), stopped]);
      if (step === 'expired') {
        finish();
        throw identityExpired();
      }
      if (step === 'returned') return done;
      if (step.done) finish();
      return step;
    },
    async return() {
      finish();
      return done;
    },
    async throw(error: unknown) {
      finish();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return generator;
    },
  };
  return generator;
}
