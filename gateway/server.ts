/**
 * The gateway: @apollo/gateway plans and executes operations over a supergraph file, served by
 * @apollo/server over node:http. Generic on purpose — any supergraph, any port, subgraph URLs
 * overridable — so third-party federation test suites can drive it.
 */
import type { Server } from 'node:http';
import { ApolloGateway } from '@apollo/gateway';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { GraphQLError } from 'graphql';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';
import type { CryptoKey } from 'jose';
import { formatErrorForClient, originalErrorOf } from '../platform/errors/masking.ts';
import { close, createGraphQLHttpServer, listen, sendJson } from '../platform/http/graphql-http.ts';
import type { GatewayIdentitySigner } from '../platform/identity/gateway-identity.ts';
import { createLogger, errorFields } from '../platform/logging/logger.ts';
import { gatewayContextOf } from './authentication.ts';
import type { GatewayContext } from './context.ts';
import { SignedIdentityDataSource } from './subgraph-data-source.ts';
import { ConnectionsPerCaller } from './subscriptions/connections-per-caller.ts';
import { FederatedSubscriptions } from './subscriptions/federated-subscriptions.ts';
import { Federation, type SubgraphEndpoint } from './subscriptions/federation.ts';
import { HttpSubscriptionStreams, subscriptionTransports } from './subscriptions/http.ts';
import { isSubscriptionRequest } from './subscriptions/prepare.ts';
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
  /** Production turns introspection and Sandbox off and masks internal errors. */
  production: boolean;
  /** Deadline of one subgraph request. @default 10_000 */
  subgraphTimeoutMs?: number;
  /**
   * Let @apollo/gateway send its usage telemetry to Apollo. Off unless asked for: it probes
   * cloud metadata endpoints (AWS, GCP, Azure) and reports to a third party, which a self-hosted
   * or offline deployment must not do by surprise. @default false
   */
  apolloTelemetry?: boolean;
  /** Subscriptions: limits of client connections, and how subgraph sockets recover from drops. */
  subscriptions?: SubscriptionLimits & {
    upstream?: Omit<UpstreamOptions, 'signer' | 'log'>;
    /** Events queued for one client before it is let go. @default 256 */
    maxQueuedEventsPerClient?: number;
    /** Multipart heartbeat and SSE keep-alive interval. @default 5_000 */
    httpHeartbeatMs?: number;
  };
}

/**
 * Subscriptions never reach Apollo Server: the gateway's own subscription path serves them
 * (gateway/subscriptions). One that slips past it (a request whose text the gateway could not
 * read as a subscription, e.g. a persisted-query hash) gets a clear refusal rather than
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
  subscriptionStats(): SubscriptionStats;
  stop(): Promise<void>;
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const log = createLogger('gateway');
  // Read by ApolloGateway's constructor; there is no constructor option for it.
  if (!options.apolloTelemetry) process.env.APOLLO_TELEMETRY_DISABLED = 'true';
  const dataSource = (url: string) =>
    new SignedIdentityDataSource({
      url,
      signer: options.identitySigner,
      ...(options.subgraphTimeoutMs ? { timeoutMs: options.subgraphTimeoutMs } : {}),
    });
  const gateway = new ApolloGateway({ supergraphSdl: options.supergraphSdl, buildService: ({ name, url }) => dataSource(options.subgraphUrls?.[name] ?? url!) });
  // The subscription path: the same supergraph, planner and data sources as queries.
  const federation = new Federation({
    supergraphSdl: options.supergraphSdl,
    ...(options.subgraphUrls ? { subgraphUrls: options.subgraphUrls } : {}),
    // Endpoints come with their URL overrides already applied.
    buildService: (endpoint: SubgraphEndpoint) => dataSource(endpoint.url),
  });
  const subscriptionLog = createLogger('gateway.subscriptions');
  const upstreams = new UpstreamSubscriptions({ ...options.subscriptions?.upstream, signer: options.identitySigner, log: subscriptionLog });
  const subscriptions = new FederatedSubscriptions({
    federation,
    upstreams,
    production: options.production,
    log: subscriptionLog,
    ...(options.subscriptions?.maxQueuedEventsPerClient ? { maxQueuedEventsPerClient: options.subscriptions.maxQueuedEventsPerClient } : {}),
  });
  // One bound per caller over WebSockets and HTTP streams together (docs/decisions/0007).
  const connectionsPerCaller = new ConnectionsPerCaller(options.subscriptions?.maxConnectionsPerCaller ?? 20);
  const httpStreams = new HttpSubscriptionStreams({
    schema: federation.apiSchema,
    subscriptions,
    production: options.production,
    connectionsPerCaller,
    ...(options.subscriptions?.httpHeartbeatMs ? { heartbeatMs: options.subscriptions.httpHeartbeatMs } : {}),
  });
  const apollo = new ApolloServer<GatewayContext>({
    gateway,
    introspection: !options.production,
    includeStacktraceInErrorResponses: false,
    // Our process lifecycle (platform/process/lifecycle.ts) owns SIGINT/SIGTERM; Apollo's own
    // handlers would race it and re-raise the signal halfway through a graceful stop.
    stopOnTerminationSignals: false,
    csrfPrevention: true,
    plugins: [
      refuseSubscriptionsOutsideTheSubscriptionPath,
      options.production
        ? ApolloServerPluginLandingPageDisabled()
        : ApolloServerPluginLandingPageLocalDefault({ embed: true, includeCookies: false }),
    ],
    formatError: (formatted, error) => {
      const shown = formatErrorForClient(formatted, error, { maskInternalErrors: options.production });
      if (shown.extensions?.code === 'INTERNAL_SERVER_ERROR') log.error('internal error', { path: formatted.path, ...errorFields(originalErrorOf(error)) });
      return shown;
    },
  });

  let ready = false;
  const http: Server = createGraphQLHttpServer<GatewayContext>({
    apollo,
    context: (request) => gatewayContextOf(request, options.customerTokenPublicKey),
    isReady: () => ready,
    intercept: async (request, response, params) => {
      if (!isSubscriptionRequest(params)) return false;
      let context: GatewayContext;
      try {
        context = await gatewayContextOf(request, options.customerTokenPublicKey);
      } catch (error) {
        const refused = error as GraphQLError;
        sendJson(response, 401, { errors: [{ message: refused.message, extensions: { code: refused.extensions?.code ?? 'UNAUTHENTICATED' } }] });
        return true;
      }
      await httpStreams.serve(request, response, params, context);
      return true;
    },
    routes: {
      // 200 only once the supergraph is loaded, so orchestrators and test suites can wait on it.
      '/health': (_request, response) => sendJson(response, ready ? 200 : 503, { status: ready ? 'ok' : 'loading' }),
    },
  });
  const webSockets = attachWebSocketSubscriptions({
    http,
    schema: federation.apiSchema,
    subscriptions,
    customerTokenPublicKey: options.customerTokenPublicKey,
    production: options.production,
    log: subscriptionLog,
    isReady: () => ready,
    connectionsPerCaller,
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
      log.debug('stopped');
    },
  };
}
