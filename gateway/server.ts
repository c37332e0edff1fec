/**
 * The gateway: @apollo/gateway plans and executes operations over a supergraph file, served by
 * @apollo/server over node:http. Generic on purpose — any supergraph, any port, subgraph URLs
 * overridable — so third-party federation test suites can drive it.
 */
import { createServiceMetrics, type ServiceMetrics } from '../platform/metrics/metrics.ts';
import { metrics } from './plugins/metrics.ts';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { ApolloGateway } from '@apollo/gateway';
import type { GatewayInterface } from '@apollo/server-gateway-interface';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { getOperationAST, GraphQLError, type DocumentNode } from 'graphql';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import type { CryptoKey } from 'jose';
import { ErrorCode } from '../platform/errors/index.ts';
import { formatErrorForClient } from '../platform/errors/masking.ts';
import { retryableStatus } from '../platform/graphql/overload-status.ts';
import type { OperationLimits } from '../platform/graphql/operation-limits.ts';
import { close, createGraphQLHttpServer, listen, sendJson, type GraphQLRequestParams, type Intercepted } from '../platform/http/graphql-http.ts';
import type { GatewayIdentitySigner } from '../platform/identity/gateway-identity.ts';
import { createLogger } from '../platform/logging/logger.ts';
import { requestErrorLogging } from '../platform/logging/request-errors.ts';
import { authenticateHttpRequest, gatewayContextOf } from './authentication.ts';
import type { GatewayContext } from './context.ts';
import { withoutAuthorizationDirectives } from './authorization/rules.ts';
import { GatewayCore, operationRewriteOf } from './pipeline/core.ts';
import type { ExecutionResult, GatewayPlugin, OperationRewrite, SubgraphHealth, Transport } from './pipeline/plugin.ts';
import { GatewayRefusal, isRefusal } from './pipeline/refusal.ts';
import { PluginDataSource } from './pipeline/subgraph-data-source.ts';
import { clientAppOf, clientAwareness, clientRegistry, type ClientRegistryOptions } from './plugins/client-awareness.ts';
import { authorization, type AuthorizationOptions } from './plugins/authorization.ts';
import { connectionLimits } from './plugins/connection-limits.ts';
import { cors } from './plugins/cors.ts';
import { csrf } from './plugins/csrf.ts';
import { deduplication, type DeduplicationOptions } from './plugins/deduplication.ts';
import { demandControl, type DemandControlOptions } from './plugins/demand-control.ts';
import { explorerLanding, explorerRoutes, type ExplorerOptions } from './plugins/explorer.ts';
import { identitySigning } from './plugins/identity-signing.ts';
import { limitedParse, operationLimits } from './plugins/operation-limits.ts';
import { accessLog } from './plugins/access-log.ts';
import { requestTracing } from './plugins/request-tracing.ts';
import { tracing } from './plugins/tracing.ts';
import { tracingEnabled } from '../platform/tracing/tracing.ts';
import { rateLimits, type RateLimitsOptions } from './plugins/rate-limits.ts';
import { resilience, type ResilienceOptions } from './plugins/resilience.ts';
import { sessions, type SessionsOptions } from './plugins/sessions.ts';
import { subgraphTimeout } from './plugins/subgraph-timeout.ts';
import { textInput } from './plugins/text-input.ts';
import { openDocumentStores, trustedDocuments, type DocumentStoresSettings } from './plugins/trusted-documents.ts';
import type { ApqStore } from './documents/apq.ts';
import type { TrustedDocumentStore } from './documents/store.ts';
import { allowedOriginsFrom, OriginPolicy } from './sessions/origins.ts';
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
  /**
   * Verifies clients' tokens that have no `kid` or its kid (AUTH_TOKEN_PUBLIC_KEY), accounts
   * reachable or not; tokens of other kids are verified with accounts' JWKS (`sessions`).
   */
  customerTokenPublicKey?: CryptoKey;
  /** Token keys by kid (JWKS), revoked sessions (feed), the web session cookie. Defaults in plugins/sessions.ts. */
  sessions?: SessionsOptions;
  /**
   * Origins a browser app may call from with credentials (GATEWAY_CORS_ORIGINS, exact origins);
   * outside production Sandbox's are added. The gateway's own origin is always allowed. @default []
   */
  corsOrigins?: string[];
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
  /** The supergraph's @authenticated, @requiresScopes and @policy: the policies' functions. Defaults in plugins/authorization.ts. */
  authorization?: AuthorizationOptions;
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
  /** The development explorer: Sandbox when reachable, else GraphiQL served by the gateway (never in production). Defaults in plugins/explorer.ts. */
  explorer?: ExplorerOptions;
  /** The apps that call the gateway (apollographql-client-name), and what an undeclared one may do. Defaults in plugins/client-awareness.ts. */
  clients?: ClientRegistryOptions;
  /** Rate limits per caller, root field and app (RATE_LIMITED, 429). Off when not given; defaults in plugins/rate-limits.ts. */
  rateLimits?: RateLimitsOptions;
  /**
   * Where the apps' trusted documents (manifests) and APQ registrations are: Redis, or a directory
   * and this process's memory; or the stores themselves. Not given: persisted queries are refused.
   */
  trustedDocuments?: DocumentStoresSettings | { store: TrustedDocumentStore; apq: ApqStore };
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

/** The stores given, or opened from their settings. */
function documentStoresOf(given: NonNullable<GatewayOptions['trustedDocuments']>): { store: TrustedDocumentStore; apq: ApqStore } {
  return 'store' in given ? given : openDocumentStores(given);
}

/** The gateway's own plugins, in the order they run; `options.plugins` come after them. */
export function gatewayPlugins(
  options: GatewayOptions,
  subgraphs: { accountsUrl?: string } = {},
  observability: { metrics?: ServiceMetrics; subgraphHealth?: () => ReadonlyMap<string, SubgraphHealth>; subscriptions?: () => SubscriptionStats } = {},
): GatewayPlugin[] {
  const origins = new OriginPolicy(allowedOriginsFrom(options.corsOrigins ?? [], options.production));
  const clients = clientRegistry({ ...options.clients, production: options.production });
  return [
    // First: the request's id, and its access log line whoever answers it (docs/decisions/0035).
    accessLog(),
    // Development: a browser's GET /graphql gets the explorer's landing page, before anything reads its cookie.
    ...(options.production ? [] : [explorerLanding(options.explorer)]),
    // Browsers: which origins may call, who the caller is (token or cookie), and a cookie only from those origins.
    cors({ origins }),
    sessions({
      ...options.sessions,
      ...(options.customerTokenPublicKey ? { staticKey: options.customerTokenPublicKey } : {}),
      ...(subgraphs.accountsUrl ? { accountsUrl: subgraphs.accountsUrl } : {}),
      signer: options.identitySigner,
      log: createLogger('gateway.sessions'),
    }),
    csrf({ origins }),
    // Which app is calling, what it may run, how often (docs/decisions/0024, 0025).
    clientAwareness({ registry: clients, log: createLogger('gateway.clients') }),
    ...(options.trustedDocuments ? [trustedDocuments({ registry: clients, ...documentStoresOf(options.trustedDocuments) })] : []),
    ...(options.rateLimits ? [rateLimits(options.rateLimits)] : []),
    // Admission: who may connect, what shape and cost an operation may have.
    connectionLimits({
      ...(options.subscriptions?.maxConnectionsPerCaller !== undefined ? { maxConnectionsPerCaller: options.subscriptions.maxConnectionsPerCaller } : {}),
      ...(options.subscriptions?.maxSubscriptionsPerConnection !== undefined ? { maxSubscriptionsPerConnection: options.subscriptions.maxSubscriptionsPerConnection } : {}),
    }),
    operationLimits(options.limits),
    textInput(),
    demandControl({ ...options.demandControl, schema: options.supergraphSdl }),
    // What the caller may see of it (docs/decisions/0026): the rest is removed before planning.
    authorization({ ...options.authorization, supergraphSdl: options.supergraphSdl }),
    // Every subgraph call: who is calling, which request, until when.
    identitySigning({ signer: options.identitySigner }),
    requestTracing(),
    subgraphTimeout(options.requestTimeoutMs !== undefined ? { requestTimeoutMs: options.requestTimeoutMs } : {}),
    // What operators see (/metrics): outside the guards below, so a fetch's time includes its retries.
    ...(observability.metrics
      ? [
          metrics({
            registry: observability.metrics.registry,
            ...(observability.subgraphHealth ? { subgraphHealth: observability.subgraphHealth } : {}),
            ...(observability.subscriptions ? { subscriptions: observability.subscriptions } : {}),
          }),
        ]
      : []),
    // Then, around each fetch: share identical ones, and guard each subgraph (retry, breaker, bulkhead, timeout).
    deduplication(options.deduplication),
    resilience(options.resilience),
    // Innermost: a span per fetch attempt, whose traceparent the fetch sends (docs/decisions/0036).
    ...(tracingEnabled() ? [tracing()] : []),
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
          // Authorization removed fields: the rewritten document is planned (cached by the rewrite's
          // key, never by the client's document's hash) and its result completed.
          const rewrite = operationRewriteOf(execution.context);
          if (!rewrite) return core.execute(execution, () => loaded.executor(requestContext));
          const planAndRun = (document: DocumentNode) =>
            loaded.executor({ ...requestContext, document, queryHash: rewrite.key, operation: getOperationAST(document, requestContext.operationName)! });
          return core.execute({ ...execution, rewriteKey: rewrite.key }, () => executeRewritten(rewrite, planAndRun));
        },
      };
    },
    onSchemaLoadOrUpdate: (callback) => gateway.onSchemaLoadOrUpdate(callback),
    stop: () => gateway.stop(),
  };
}

/** A rewritten operation (authorization removed fields): its document executed, its result completed; nothing run when nothing is left. */
async function executeRewritten(rewrite: OperationRewrite, execute: (document: DocumentNode) => Promise<ExecutionResult>): Promise<ExecutionResult> {
  if (!rewrite.document) return rewrite.complete({ data: {} });
  return rewrite.complete(await execute(rewrite.document));
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
  /** Events handed to client subscriptions, and subscribers let go as too slow (SUBSCRIBER_TOO_SLOW), since start. */
  eventsPushed: number;
  slowSubscribersDropped: number;
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
  // The supergraph as @apollo/gateway plans it: its authorization directives are the authorization
  // plugin's to enforce, before planning (docs/decisions/0026).
  const executableSupergraphSdl = withoutAuthorizationDirectives(options.supergraphSdl);
  const federation = new Federation({
    supergraphSdl: executableSupergraphSdl,
    ...(options.subgraphUrls ? { subgraphUrls: options.subgraphUrls } : {}),
    // Endpoints come with their URL overrides already applied.
    buildService: (endpoint: SubgraphEndpoint) => dataSource(endpoint.name, endpoint.url),
  });
  const serviceMetrics = createServiceMetrics('gateway');
  // Read when Prometheus scrapes: by then the core and the subscription path exist.
  const plugins = gatewayPlugins(
    options,
    { accountsUrl: federation.endpoints.get('accounts')?.url },
    { metrics: serviceMetrics, subgraphHealth: () => core?.subgraphHealth() ?? new Map(), subscriptions: () => subscriptionStats() },
  );
  core = new GatewayCore({
    schema: federation.apiSchema,
    plugins,
    production: options.production,
    log,
    parse: limitedParse(options.limits),
  });
  const pipeline = core;
  const apolloGateway = new ApolloGateway({ supergraphSdl: executableSupergraphSdl, buildService: ({ name, url }) => dataSource(name, options.subgraphUrls?.[name] ?? url!) });
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
    // Simple requests (form posts, text/plain, GETs without a preflight header) are refused; a
    // client that names itself (Apollo's client awareness header) has made a preflight-worthy request.
    csrfPrevention: { requestHeaders: ['x-apollo-operation-name', 'apollo-require-preflight', 'apollographql-client-name'] },
    plugins: [
      refuseSubscriptionsOutsideTheSubscriptionPath,
      responseExtensions,
      requestErrorLogging<GatewayContext>(log, { production: options.production }),
      // Overload kept from doing anything is 503, a sign-in lock 429, with Retry-After (docs/decisions/0016, 0024).
      retryableStatus<GatewayContext>(),
      // The landing page is the gateway's own (plugins/explorer.ts, development only), never Apollo's.
      ApolloServerPluginLandingPageDisabled(),
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
    let authenticated: Awaited<ReturnType<typeof authenticateHttpRequest>>['authenticated'];
    try {
      ({ context, authenticated } = await authenticateHttpRequest(request, pipeline));
    } catch (error) {
      if (!isRefusal(error)) throw error;
      pipeline.sendRefusal(response, error, 'http');
      return true;
    }
    context.httpResponse = response;
    // No document at all: Apollo Server's own "no query" answer, which runs nothing (a browser's
    // GET got the explorer's landing page before this, in development).
    if (params.query === undefined && !(params.extensions && typeof params.extensions === 'object')) return { context };
    let release: (() => void) | undefined;
    let transport: Transport = 'http';
    try {
      // A persisted query's hash becomes its text here (trusted documents, APQ), before parsing.
      const client = clientAppOf(request.headers);
      const resolved = await pipeline.resolveDocument(params, { request, client });
      const parsed = pipeline.parse(resolved);
      const protocol = parsed.kind === 'subscription' ? subscriptionProtocolOf(request.headers.accept) : undefined;
      if (parsed.kind === 'subscription' && !protocol) {
        throw new GatewayRefusal(ErrorCode.BAD_REQUEST, `Subscriptions are served over ${subscriptionTransports}`, { status: 400 });
      }
      transport = protocol ?? 'http';
      // A stream is ended early when its session is revoked: the refusal is its last event.
      const ending = new AbortController();
      const admission = await pipeline.admitConnection({
        transport: protocol ?? 'http',
        request,
        client,
        identity: context.identity,
        ...(authenticated.credential ? { credential: authenticated.credential } : {}),
        ...(authenticated.expiresAt !== undefined ? { expiresAt: authenticated.expiresAt } : {}),
        ...(protocol ? { end: (refusal: GatewayRefusal) => ending.abort(refusal) } : {}),
      });
      release = admission.release;
      const operation = await pipeline.admitOperation(parsed, admission.connection, context, request.headers);
      if (protocol) {
        try {
          await httpStreams.serve(request, response, protocol, operation, ending.signal);
        } finally {
          admission.release(); // the caller's slot is held exactly as long as the stream
        }
        return true;
      }
      response.once('close', admission.release);
      // Only a request whose document the plugins resolved (a persisted query) is rewritten for Apollo Server.
      return resolved === params ? { context } : { context, params: resolved };
    } catch (error) {
      release?.();
      if (!isRefusal(error)) throw error;
      pipeline.sendRefusal(response, error, transport);
      return true;
    }
  };

  let ready = false;
  const http: Server = createGraphQLHttpServer<GatewayContext>({
    apollo,
    maxBodyBytes,
    context: (request) => gatewayContextOf(request, pipeline),
    isReady: () => ready,
    onRequest: (request, response) => pipeline.handleHttpRequest({ request, response }),
    metrics: serviceMetrics,
    intercept: admitHttp,
    routes: {
      ...(options.production ? {} : explorerRoutes(options.explorer)),
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
    log: subscriptionLog,
    isReady: () => ready,
    maxPayloadBytes: maxBodyBytes,
    ...(options.subscriptions ? { limits: options.subscriptions } : {}),
  });
  const subscriptionStats = (): SubscriptionStats => ({
    clients: subscriptions.clients,
    sharedUpstreams: subscriptions.sharedUpstreams,
    upstreamSubscriptions: upstreams.activeSubscriptions,
    upstreamConnections: upstreams.connections,
    upstreamReconnections: upstreams.reconnections,
    webSocketConnections: webSockets.connections,
    httpStreams: httpStreams.open,
    eventsPushed: subscriptions.eventsPushed,
    slowSubscribersDropped: subscriptions.slowSubscribersDropped,
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
    subscriptionStats,
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
