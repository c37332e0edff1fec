/**
 * Runs one bounded context as an Apollo Federation 2 subgraph. What every subgraph shares lives
 * here once: the signed-identity check that refuses requests that did not come through the
 * gateway (`_entities` and `_service` included), error masking, `/health` (liveness) and `/ready`
 * (readiness: its dependencies, readiness.ts), graceful stop.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { buildSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/resolverMap.js';
import type { DocumentNode } from 'graphql';
import type { CryptoKey } from 'jose';
import { formatErrorForClient } from '../errors/masking.ts';
import { retryableStatus } from '../graphql/overload-status.ts';
import { rejectInvalidText } from '../graphql/text-input.ts';
import { createGraphQLHttpServer, close, listen, sendJson, type Route } from '../http/graphql-http.ts';
import { createServiceMetrics, type ServiceMetrics } from '../metrics/metrics.ts';
import { gatewayIdentityHeader, verifyGatewayIdentity } from '../identity/gateway-identity.ts';
import type { Identity } from '../identity/identity.ts';
import type { Causation } from '../events/envelope.ts';
import { createLogger } from '../logging/logger.ts';
import { requestErrorLogging } from '../logging/request-errors.ts';
import { bindLogScope } from '../logging/request-scope.ts';
import { requestServedLogging } from '../logging/request-served.ts';
import { SpanKind, SpanStatusCode, startSpan, traceparentOf, tracerOf, tracingEnabled, type Span } from '../tracing/tracing.ts';
import { createSubgraphAdmission, type SubgraphAdmissionOptions } from './admission.ts';
import { readinessOf, type DependencyCheck } from './readiness.ts';
import { requestDeadlinePlugin, trackRequestDeadline } from './deadline.ts';
import { withSubgraphRefusalCodes } from './refusals.ts';
import { attachSubscriptions, type SubscriptionServer } from './subscriptions.ts';

export interface RequestScope {
  identity: Identity;
  requestId: string;
  /** Carried by every event this request leads to: correlation = the request id. */
  causation: Causation;
  /**
   * Set on a subscription the gateway made resumable (platform/graphql/subscription-position.ts):
   * its events carry positions, and `after`, when set, is the position to resume after.
   */
  resume?: { after: string | undefined };
}

export interface SubgraphOptions<TContext extends RequestScope> {
  name: string;
  /** The process's metrics, served at `/metrics`. @default createServiceMetrics(name) */
  metrics?: ServiceMetrics;
  typeDefs: DocumentNode;
  resolvers: GraphQLResolverMap<TContext>;
  /**
   * Builds the per-request context (loaders, use cases) once the caller's identity is known;
   * `request` is the HTTP request (absent on a subscription socket).
   */
  createContext: (scope: RequestScope, request?: IncomingMessage) => TContext;
  /** Public key of the gateway's identity signatures. */
  gatewayPublicKey: CryptoKey;
  /**
   * What `/ready` checks (e.g. its database and its event bus, readiness.ts); `/health` checks
   * nothing beyond the process answering. @default [] (ready whenever it answers)
   */
  readiness?: readonly DependencyCheck[];
  /** Masks internal errors and turns introspection off. */
  production: boolean;
  port: number;
  /** @default '0.0.0.0' */
  host?: string;
  /**
   * Serves the schema's Subscription fields over graphql-ws on the same path and port
   * (see subscriptions.ts). @default false
   */
  subscriptions?: boolean;
  /** Operation limits and maximum cost of what this subgraph accepts (admission.ts). @default subgraphOperationLimits, maxCost 100_000 */
  admission?: SubgraphAdmissionOptions;
  /** The longest a request may run, whatever its `x-request-deadline` (deadline.ts). @default 15_000 */
  maxRequestMs?: number;
  /** The context's own HTTP routes beside `/graphql`, by exact path (e.g. accounts' JWKS). @default {} */
  routes?: Record<string, Route>;
  /** The context's own Apollo Server plugins (e.g. one that sets a response header). @default [] */
  plugins?: ApolloServerPlugin<TContext>[];
}

export interface RunningSubgraph {
  name: string;
  port: number;
  url: string;
  stop(): Promise<void>;
}

export async function startSubgraph<TContext extends RequestScope>(options: SubgraphOptions<TContext>): Promise<RunningSubgraph> {
  const log = createLogger(options.name);
  const schema = buildSubgraphSchema({ typeDefs: options.typeDefs, resolvers: options.resolvers as GraphQLResolverMap<unknown> });
  // Defence in depth: the gateway's limits, cost and deadline, enforced again here (docs/decisions/0011).
  const admission = createSubgraphAdmission(schema, options.admission);
  const apollo = new ApolloServer<TContext>({
    schema,
    parseOptions: { maxTokens: admission.limits.maxTokens },
    introspection: !options.production,
    // No "Did you mean …" in validation errors while introspection is off (masking drops the rest).
    hideSchemaDetailsFromClientErrors: options.production,
    includeStacktraceInErrorResponses: false,
    // Our process lifecycle (platform/process/lifecycle.ts) owns SIGINT/SIGTERM; Apollo's own
    // handlers would race it and re-raise the signal halfway through a graceful stop.
    stopOnTerminationSignals: false,
    csrfPrevention: true,
    plugins: [
      // A request the gateway gave up on is refused, or stops resolving (deadline.ts).
      requestDeadlinePlugin<TContext>(),
      admission.plugin<TContext>(),
      ApolloServerPluginLandingPageDisabled(),
      // No inline traces: they tell any caller how long each resolver took, and we report to no Studio.
      ApolloServerPluginInlineTraceDisabled(),
      // A NUL or a lone surrogate is refused before any SQL (the gateway checks too; this is the fence).
      rejectInvalidText<TContext>(),
      // One line per failed request, however many errors it has (formatError logs nothing).
      requestErrorLogging<TContext>(log, { production: options.production }),
      // With LOG_LEVEL=debug, one line per request served, carrying its request id (docs/decisions/0035).
      requestServedLogging<TContext>(log),
      // Nothing done because of overload: 503 with Retry-After (docs/decisions/0016).
      retryableStatus<TContext>(),
      ...(options.plugins ?? []),
    ],
    formatError: (formatted, error) => withSubgraphRefusalCodes(formatErrorForClient(formatted, error, { maskInternalErrors: options.production }), error),
  });
  await apollo.start();

  // Verified once per request: by the structural check below when it runs, else by the context.
  const identities = new WeakMap<IncomingMessage, Promise<Identity>>();
  const identityOf = (request: IncomingMessage) => {
    let identity = identities.get(request);
    if (!identity) {
      const header = request.headers[gatewayIdentityHeader];
      identities.set(request, (identity = verifyGatewayIdentity(options.gatewayPublicKey, Array.isArray(header) ? header[0] : header, options.name)));
    }
    return identity;
  };
  const metrics = options.metrics ?? createServiceMetrics(options.name);
  // With tracing on, a server span per GraphQL request, child of the caller's traceparent
  // (the gateway's fetch span); its events carry it on (docs/decisions/0036).
  const tracer = tracingEnabled() ? tracerOf(options.name) : undefined;
  const spans = new WeakMap<IncomingMessage, Span>();
  const http: Server = createGraphQLHttpServer<TContext>({
    metrics,
    apollo,
    ...(tracer
      ? {
          onRequest: (request: IncomingMessage, response: ServerResponse) => {
            const span = startSpan(tracer, `${options.name} graphql`, headerValue(request.headers.traceparent), SpanKind.SERVER, { 'graphql.subgraph.name': options.name });
            spans.set(request, span);
            response.once('close', () => {
              span.setAttribute('http.response.status_code', response.statusCode);
              if (response.statusCode >= 500 || !response.writableFinished) span.setStatus({ code: SpanStatusCode.ERROR });
              span.end();
            });
            return false;
          },
        }
      : {}),
    // A request through the gateway has its document's structure checked before Apollo Server
    // validates it; anything else is left to Apollo Server and the context (401 without identity).
    intercept: async (request, response, params) => {
      if (typeof params.operationName === 'string') spans.get(request)?.setAttribute('graphql.operation.name', params.operationName);
      if (typeof params.query !== 'string') return false;
      try {
        await identityOf(request);
      } catch {
        return false;
      }
      const refusal = admission.precheck(params.query, typeof params.operationName === 'string' ? params.operationName : null);
      if (!refusal) return false;
      const { http: _http, ...extensions } = refusal.extensions as Record<string, unknown>;
      sendJson(response, 400, { errors: [{ message: refusal.message, extensions }] });
      return true;
    },
    context: async (request) => {
      const identity = await identityOf(request);
      const requestId = headerValue(request.headers['x-request-id']) ?? randomUUID();
      const span = spans.get(request);
      const traceparent = (span && traceparentOf(span)) ?? headerValue(request.headers.traceparent) ?? null;
      // Every line this request logs from here on carries its id (platform/logging/request-scope.ts).
      bindLogScope({ requestId, traceparent });
      const context = options.createContext({ identity, requestId, causation: { correlationId: requestId, causationId: requestId, traceparent } }, request);
      trackRequestDeadline(context, request, options.maxRequestMs !== undefined ? { maxRequestMs: options.maxRequestMs } : {});
      return context;
    },
    routes: {
      ...options.routes,
      // Liveness: the process answers. A database or a broker away is readiness's business.
      '/health': async (_request, response) => sendJson(response, 200, { status: 'ok', subgraph: options.name }),
      '/ready': async (_request, response) => {
        const { ready, body } = await readinessOf(options.name, options.readiness ?? []);
        sendJson(response, ready ? 200 : 503, body);
      },
    },
  });
  const subscriptions: SubscriptionServer | undefined = options.subscriptions
    ? attachSubscriptions<TContext>({ http, subgraph: options.name, schema, admission, createContext: options.createContext, gatewayPublicKey: options.gatewayPublicKey, production: options.production, log })
    : undefined;
  const port = await listen(http, options.port, options.host ?? '0.0.0.0');
  log.info('subgraph listening', { port });
  return {
    name: options.name,
    port,
    url: `http://127.0.0.1:${port}/graphql`,
    async stop() {
      await subscriptions?.close();
      await close(http);
      await apollo.stop();
    },
  };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
