/**
 * The gateway: @apollo/gateway plans and executes operations over a supergraph file, served by
 * @apollo/server over node:http. Generic on purpose — any supergraph, any port, subgraph URLs
 * overridable — so third-party federation test suites can drive it.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { ApolloGateway } from '@apollo/gateway';
import type { GatewayInterface } from '@apollo/server-gateway-interface';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { GraphQLError } from 'graphql';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import type { CryptoKey } from 'jose';
import { ErrorCode } from '../platform/errors/index.ts';
import { formatErrorForClient } from '../platform/errors/masking.ts';
import { overloadStatus } from '../platform/graphql/overload-status.ts';
import type { OperationLimits } from '../platform/graphql/operation-limits.ts';
import { close, createGraphQLHttpServer, listen, sendJson, type GraphQLRequestParams, type Intercepted } from '../platform/http/graphql-http.ts';
import type { GatewayIdentitySigner } from '../platform/identity/gateway-identity.ts';
import { createLogger } from '../platform/logging/logger.ts';
import { requestErrorLogging } from '../platform/logging/request-errors.ts';
import { gatewayContextOf } from './authentication.ts';
import type { GatewayContext } from './context.ts';
import { GatewayCore } from './pipeline/core.ts';
import type { GatewayPlugin, SubgraphHealth } from './pipeline/plugin.ts';
import { GatewayRefusal, isRefusal } from './pipeline/refusal.ts';
import { PluginDataSource } from './pipeline/subgraph-data-source.ts';
import { connectionLimits } from './plugins/connection-limits.ts';
import { deduplication, type DeduplicationOptions } from './plugins/deduplication.ts';
import { demandControl, type DemandControlOptions } from './plugins/demand-control.ts';
import { identitySigning } from './plugins/identity-signing.ts';
import { limitedParse, operationLimits } from './plugins/operation-limits.ts';
import { requestTracing } from './plugins/request-tracing.ts';
import { resilience, type ResilienceOptions } from './plugins/resilience.ts';
import { subgraphTimeout } from './plugins/subgraph-timeout.ts';
import { textInput } from './plugins/text-input.ts';
import { FederatedSubscriptions } from './subscriptions/federated-subscriptions.ts';
import { Federation, type SubgraphEndpoint } from './subscriptions/federation.ts';
import { HttpSubscriptionStreams, subscriptionProtocolOf, subscriptionTransports } from './subscriptions/http.ts';
import { UpstreamSubscriptions, type UpstreamOptions } from './subscriptions/upstream.ts';
import { attachWebSocketSubscriptions, type SubscriptionLimits } from './subscriptions/websocket.ts';

export interface GatewayOptions {
  /** The composed supergraph (SDL text). */
  supergraphSdl: string;
  /** 0 picks a free port. @default 4000 */
  port: number;
  /** @default '0.0.0.0' */
  host?: string;
  /** Subgraph URLs by subgraph name, overriding the URLs written in the supergraph. */
  subgraphUrls?: Record<string, string>;
  /** Verifies clients' bearer tokens; without it every request carrying a token is refused. */
  customerTokenPublicKey?: CryptoKey;
  /** Signs the identity forwarded to subgraphs. */
  identitySigner: GatewayIdentitySigner;
  /** Production turns introspection, Sandbox and schema hints in errors off, and masks internal errors. */
  production: boolean;
  /** The longest a client request waits on subgraphs, all its fetches, retries and queues together. @default 10_000 */
  requestTimeoutMs?: number;
  /** Per-subgraph timeout, retries, circuit breaker and bulkhead. Defaults in plugins/resilience.ts. */
  resilience?: ResilienceOptions;
  /** Sharing of identical in-flight queries and subgraph fetches of one caller. @default both on */
  deduplication?: DeduplicationOptions;
  /** Bounds on the shape of operations (depth, aliases, …), checked before validation and planning. Defaults in operation-limits.ts. */
  limits?: Partial<OperationLimits>;
  /** Cost of operations and budgets per client, priced by the supergraph's @cost and @listSize. Defaults in plugins/demand-control.ts. */
  demandControl?: Omit<DemandControlOptions, 'schema'>;
  /**
   * The largest request body and WebSocket message taken. Documents are bounded far lower
   * (`limits.maxDocumentBytes`); this bounds variables, and what a client makes the gateway read.
   * @default 131_072 (128 KiB)
   */
  maxBodyBytes?: number;
  /** More plugins, run after the gateway's own (e.g. a deployment's policies, or a test's probe). */
  plugins?: GatewayPlugin[];
  /**
   * Let @apollo/gateway send its usage telemetry to Apollo. Off unless asked for: it probes
   * cloud metadata endpoints (AWS, GCP, Azure) and reports to a third party, which a self-hosted
   * or offline deployment must not do by surprise. @default false
   */
  apolloTelemetry?: boolean;
  /** Subscriptions: limits of client connections, and how subgraph sockets recover from drops. */
  subscriptions?: SubscriptionLimits & {
    upstream?: Omit<UpstreamOptions, 'decorate' | 'log'>;
    /** Events queued for one client before it is let go. @default 256 */
    maxQueuedEventsPerClient?: number;
    /** Multipart heartbeat and SSE keep-alive interval. @default 5_000 */
    httpHeartbeatMs?: number;
  };
}

/** The gateway's default body and WebSocket message limit: 128 KiB (subgraphs take 1 MiB: entity batches are larger). */
export const gatewayMaxBodyBytes = 131_072;

/** The gateway's own plugins, in the order they run; `options.plugins` come after them. */
export function gatewayPlugins(options: GatewayOptions): GatewayPlugin[] {
  return [
    // Admission: who may connect, what shape and cost an operation may have.
    connectionLimits({
      ...(options.subscriptions?.maxConnectionsPerCaller !== undefined ? { maxConnectionsPerCaller: options.subscriptions.maxConnectionsPerCaller } : {}),
      ...(options.subscriptions?.maxSubscriptionsPerConnection !== undefined ? { maxSubscriptionsPerConnection: options.subscriptions.maxSubscriptionsPerConnection } : {}),
    }),
    operationLimits(options.limits),
    textInput(),
    demandControl({ ...options.demandControl, schema: options.supergraphSdl }),
    // Every subgraph call: who is calling, which request, until when.
    identitySigning({ signer: options.identitySigner }),
    requestTracing(),
    subgraphTimeout(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
    // Then, around each fetch: share identical ones, and guard each subgraph (retry, breaker, bulkhead, timeout).
    deduplication(options.deduplication),
    resilience(options.resilience),
    ...(options.plugins ?? []),
  ];
}

/**
 * Subscriptions never reach Apollo Server: the gateway's own subscription path serves them
 * (gateway/subscriptions). One that slips past it gets a clear refusal rather than
 * @apollo/gateway's internal "subscriptions not supported" error.
 */
const refuseSubscriptionsOutsideTheSubscriptionPath: ApolloServerPlugin<GatewayContext> = {
  async requestDidStart() {
    return {
      async didResolveOperation({ operation }) {
        if (operation?.operation === 'subscription') {
          throw new GraphQLError(`Send subscriptions with their full text, over ${subscriptionTransports}`, {
            extensions: { code: 'BAD_REQUEST', http: { status: 400 } },
          });
        }
      },
    };
  },
};

/** What plugins put in `responseExtensions` (e.g. the estimated cost) reaches HTTP responses too. */
const responseExtensions: ApolloServerPlugin<GatewayContext> = {
  async requestDidStart() {
    return {
      async willSendResponse({ response, contextValue }) {
        const extensions = contextValue.responseExtensions;
        if (!extensions || Object.keys(extensions).length === 0 || response.body.kind !== 'single') return;
        response.body.singleResult.extensions = { ...response.body.singleResult.extensions, ...extensions };
      },
    };
  },
};

/**
 * @apollo/gateway behind the plugins' `wrapExecution` hooks: Apollo Server calls the executor with
 * each admitted query or mutation, and the hooks see it whole (planning and every fetch).
 */
function throughExecutionWrappers(gateway: ApolloGateway, core: GatewayCore): GatewayInterface {
  return {
    async load(options) {
      const loaded = await gateway.load(options);
      return {
        schema: loaded.schema,
        executor: (requestContext) => {
          const operationType = requestContext.operation.operation;
          if (operationType === 'subscription') return loaded.executor(requestContext);
          const execution = {
            context: requestContext.context as GatewayContext,
            operationType,
            source: requestContext.source,
            operationName: requestContext.operationName,
            variables: requestContext.request.variables ?? {},
          };
          return core.execute(execution, () => loaded.executor(requestContext));
        },
      };
    },
    onSchemaLoadOrUpdate: (callback) => gateway.onSchemaLoadOrUpdate(callback),
    stop: () => gateway.stop(),
  };
}

export interface Readiness {
  /**
   * `ready`: the supergraph is loaded and every subgraph is up. `degraded`: some subgraph is
   * down or being probed back — still 200, the others' fields are served (decision 0017).
   * `unavailable` (503): the supergraph is not loaded, or every subgraph is down.
   */
  status: 'ready' | 'degraded' | 'unavailable';
  schema: 'loaded' | 'loading';
  subgraphs: Record<string, { status: 'up' | 'degraded' | 'down' } & Record<string, unknown>>;
}

/** Readiness from the schema and what the plugins (circuit breakers) know of each subgraph. */
export function readinessOf(loaded: boolean, subgraphs: Iterable<string>, health: ReadonlyMap<string, SubgraphHealth>): Readiness {
  const report: Readiness['subgraphs'] = {};
  for (const name of subgraphs) {
    const known = health.get(name);
    report[name] = { ...known?.details, status: known?.status ?? 'up' };
  }
  const statuses = Object.values(report).map((subgraph) => subgraph.status);
  const allDown = statuses.length > 0 && statuses.every((status) => status === 'down');
  const status = !loaded || allDown ? 'unavailable' : statuses.every((status) => status === 'up') ? 'ready' : 'degraded';
  return { status, schema: loaded ? 'loaded' : 'loading', subgraphs: report };
}

function sendRefusal(response: ServerResponse, refusal: GatewayRefusal): void {
  if (refusal.retryAfterSeconds !== undefined) response.setHeader('retry-after', String(refusal.retryAfterSeconds));
  sendJson(response, refusal.status, { errors: [refusal.toClient()] });
}

export interface SubscriptionStats {
  /** Client subscriptions being served, all transports together. */
  clients: number;
  /** Distinct upstream subscriptions the clients share. */
  sharedUpstreams: number;
  /** Subscriptions open at subgraphs, and the sockets they use. */
  upstreamSubscriptions: number;
  upstreamConnections: number;
  /** Subgraph sockets that dropped and were connected again (their subscriptions re-sent), since start. */
  upstreamReconnections: number;
  /** Client WebSockets, and multipart/SSE streams, open. */
  webSocketConnections: number;
  httpStreams: number;
}

export interface RunningGateway {
  port: number;
  url: string;
  /** The plugins the gateway runs, in order. */
  plugins: readonly GatewayPlugin[];
  /** Documents held parsed and validated: only valid ones, bounded by bytes. */
  documentCache(): { entries: number; bytes: number };
  subscriptionStats(): SubscriptionStats;
  stop(): Promise<void>;
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const log = createLogger('gateway');
  // Read by ApolloGateway's constructor; there is no constructor option for it.
  if (!options.apolloTelemetry) process.env.APOLLO_TELEMETRY_DISABLED = 'true';
  const maxBodyBytes = options.maxBodyBytes ?? gatewayMaxBodyBytes;
  // The subscription path: the same supergraph, planner and data sources as queries.
  let core: GatewayCore | undefined;
  const dataSource = (name: string, url: string) => new PluginDataSource({ subgraph: name, url, core: () => core!, log: log.child('subgraphs') });
  const federation = new Federation({
    supergraphSdl: options.supergraphSdl,
    ...(options.subgraphUrls ? { subgraphUrls: options.subgraphUrls } : {}),
    // Endpoints come with their URL overrides already applied.
    buildService: (endpoint: SubgraphEndpoint) => dataSource(endpoint.name, endpoint.url),
  });
  const plugins = gatewayPlugins(options);
  core = new GatewayCore({
    schema: federation.apiSchema,
    plugins,
    production: options.production,
    log,
    parse: limitedParse(options.limits),
  });
  const pipeline = core;
  const apolloGateway = new ApolloGateway({ supergraphSdl: options.supergraphSdl, buildService: ({ name, url }) => dataSource(name, options.subgraphUrls?.[name] ?? url!) });
  const gateway = throughExecutionWrappers(apolloGateway, pipeline);
  const subscriptionLog = createLogger('gateway.subscriptions');
  const upstreams = new UpstreamSubscriptions({ ...options.subscriptions?.upstream, decorate: (request) => pipeline.decorateSubgraphRequest(request), log: subscriptionLog });
  const subscriptions = new FederatedSubscriptions({
    federation,
    upstreams,
    production: options.production,
    log: subscriptionLog,
    ...(options.subscriptions?.maxQueuedEventsPerClient ? { maxQueuedEventsPerClient: options.subscriptions.maxQueuedEventsPerClient } : {}),
  });
  const httpStreams = new HttpSubscriptionStreams({
    subscriptions,
    ...(options.subscriptions?.httpHeartbeatMs ? { heartbeatMs: options.subscriptions.httpHeartbeatMs } : {}),
  });
  const apollo = new ApolloServer<GatewayContext>({
    gateway,
    introspection: !options.production,
    hideSchemaDetailsFromClientErrors: options.production,
    includeStacktraceInErrorResponses: false,
    // Every document reaching Apollo was admitted by the core; persisted-query hashes are not
    // (an unchecked registry anyone could write to): clients send the text.
    persistedQueries: false,
    // Our process lifecycle (platform/process/lifecycle.ts) owns SIGINT/SIGTERM; Apollo's own
    // handlers would race it and re-raise the signal halfway through a graceful stop.
    stopOnTerminationSignals: false,
    csrfPrevention: true,
    plugins: [
      refuseSubscriptionsOutsideTheSubscriptionPath,
      responseExtensions,
      requestErrorLogging<GatewayContext>(log, { production: options.production }),
      // A response overload kept from doing anything is 503 with Retry-After (docs/decisions/0016).
      overloadStatus<GatewayContext>(),
      options.production
        ? ApolloServerPluginLandingPageDisabled()
        : ApolloServerPluginLandingPageLocalDefault({ embed: true, includeCookies: false }),
    ],
    // Logged once per request by requestErrorLogging, not once per error here.
    formatError: (formatted, error) => formatErrorForClient(formatted, error, { maskInternalErrors: options.production }),
  });

  /**
   * Every HTTP GraphQL request, before Apollo Server: parsed, admitted as a connection and an
   * operation by the core, then served as a stream (subscriptions) or handed to Apollo Server.
   */
  const admitHttp = async (request: IncomingMessage, response: ServerResponse, params: GraphQLRequestParams): Promise<Intercepted<GatewayContext>> => {
    let context: GatewayContext;
    try {
      context = await gatewayContextOf(request, options.customerTokenPublicKey);
    } catch (error) {
      const refused = error as GraphQLError;
      sendJson(response, 401, { errors: [{ message: refused.message, extensions: { code: refused.extensions?.code ?? 'UNAUTHENTICATED' } }] });
      return true;
    }
    context.httpResponse = response;
    // No document at all: Apollo Server's own answers (the Sandbox landing page for a browser's
    // GET, its "no query" error otherwise), which run nothing.
    if (params.query === undefined && !(params.extensions && typeof params.extensions === 'object')) return { context };
    let release: (() => void) | undefined;
    try {
      const parsed = pipeline.parse(params);
      const protocol = parsed.kind === 'subscription' ? subscriptionProtocolOf(request.headers.accept) : undefined;
      if (parsed.kind === 'subscription' && !protocol) {
        throw new GatewayRefusal(ErrorCode.BAD_REQUEST, `Subscriptions are served over ${subscriptionTransports}`, { status: 400 });
      }
      const admission = await pipeline.admitConnection({ transport: protocol ?? 'http', request, identity: context.identity });
      release = admission.release;
      const operation = await pipeline.admitOperation(parsed, admission.connection, context, request.headers);
      if (protocol) {
        try {
          await httpStreams.serve(request, response, protocol, operation);
        } finally {
          admission.release(); // the caller's slot is held exactly as long as the stream
        }
        return true;
      }
      response.once('close', admission.release);
      return { context };
    } catch (error) {
      release?.();
      if (!isRefusal(error)) throw error;
      sendRefusal(response, error);
      return true;
    }
  };

  let ready = false;
  const http: Server = createGraphQLHttpServer<GatewayContext>({
    apollo,
    maxBodyBytes,
    context: (request) => gatewayContextOf(request, options.customerTokenPublicKey),
    isReady: () => ready,
    onRequest: (request, response) => pipeline.handleHttpRequest({ request, response }),
    intercept: admitHttp,
    routes: {
      // Liveness, and the supervisor's "it is up": 200 once the supergraph is loaded, nothing else looked at.
      '/health': (_request, response) => sendJson(response, ready ? 200 : 503, { status: ready ? 'ok' : 'loading' }),
      '/ready': (_request, response) => {
        const readiness = readinessOf(ready, federation.endpoints.keys(), pipeline.subgraphHealth());
        sendJson(response, readiness.status === 'unavailable' ? 503 : 200, readiness);
      },
    },
  });
  const webSockets = attachWebSocketSubscriptions({
    http,
    schema: federation.apiSchema,
    core,
    subscriptions,
    customerTokenPublicKey: options.customerTokenPublicKey,
    log: subscriptionLog,
    isReady: () => ready,
    maxPayloadBytes: maxBodyBytes,
    ...(options.subscriptions ? { limits: options.subscriptions } : {}),
  });
  const port = await listen(http, options.port, options.host ?? '0.0.0.0');
  try {
    await apollo.start();
  } catch (error) {
    await webSockets.close();
    await close(http);
    throw error;
  }
  ready = true;
  log.info('gateway ready', { port });
  return {
    port,
    url: `http://127.0.0.1:${port}/graphql`,
    plugins,
    documentCache: () => pipeline.documentCache,
    subscriptionStats: () => ({
      clients: subscriptions.clients,
      sharedUpstreams: subscriptions.sharedUpstreams,
      upstreamSubscriptions: upstreams.activeSubscriptions,
      upstreamConnections: upstreams.connections,
      upstreamReconnections: upstreams.reconnections,
      webSocketConnections: webSockets.connections,
      httpStreams: httpStreams.open,
    }),
    async stop() {
      ready = false;
      // Clients first (WebSockets get 1001 Going Away, HTTP streams their end), then subgraph sockets.
      await webSockets.close();
      httpStreams.closeAll();
      await upstreams.close();
      log.debug('closing http');
      await close(http);
      log.debug('stopping apollo');
      await apollo.stop();
      await pipeline.stop();
      log.debug('stopped');
    },
  };
}
