/**
 * The gateway's Prometheus metrics, as a plugin of its seam: each GraphQL operation it executes
 * (by type, app and outcome code), each HTTP fetch to a subgraph (by subgraph and outcome, with
 * its latency), each refusal it answers (by code and transport), and, read when Prometheus
 * scrapes, each subgraph's circuit breaker and the subscriptions being served. Every HTTP request
 * is counted and timed by route by the HTTP server itself (platform/metrics); `/metrics` serves
 * them all.
 */
import client from 'prom-client';
import { BoundedLabel, durationBuckets } from '../../platform/metrics/metrics.ts';
import type { GatewayPlugin, SubgraphHealth } from '../pipeline/plugin.ts';

/** What the gateway tells of its subscriptions (its `subscriptionStats()`), as the metrics read it. */
export interface SubscriptionFigures {
  /** Client subscriptions being served, all transports together. */
  readonly clients: number;
  readonly webSocketConnections: number;
  /** Multipart and SSE streams open. */
  readonly httpStreams: number;
  /** Since start. */
  readonly eventsPushed: number;
  /** Since start: subscribers let go with SUBSCRIBER_TOO_SLOW. */
  readonly slowSubscribersDropped: number;
}

export interface MetricsOptions {
  registry: client.Registry;
  /** Each subgraph's health as the plugins know it (the resilience plugin's breaker in `details.breaker`), read at scrape. */
  subgraphHealth?: () => ReadonlyMap<string, SubgraphHealth>;
  /** The gateway's subscription figures, read at scrape. */
  subscriptions?: () => SubscriptionFigures;
}

/** The states of a subgraph's circuit breaker (plugins/resilience.ts): one series each, 1 for the current one. */
const breakerStates = ['closed', 'half-open', 'open'] as const;

/**
 * A label for what a thrown error was: its string `code` (a GatewayRefusal's), a SubgraphFailure's
 * `reason`, else its name (`TimeoutError`; a DOMException's numeric `code` is no label).
 */
function failureCode(error: unknown, fallback: string): string {
  const { code, reason, name } = (error ?? {}) as { code?: unknown; reason?: unknown; name?: unknown };
  if (typeof code === 'string') return code;
  if (typeof reason === 'string') return reason;
  return typeof name === 'string' ? name : fallback;
}

/** The code an operation's result ends with: `OK`, or its first error's `extensions.code`. */
function outcomeOf(errors: readonly { extensions?: Record<string, unknown> }[] | undefined): string {
  const code = errors?.[0]?.extensions?.code;
  return errors && errors.length > 0 ? (typeof code === 'string' ? code : 'ERROR') : 'OK';
}

export function metrics(options: MetricsOptions): GatewayPlugin {
  const registers = [options.registry];
  const operations = new client.Counter({
    name: 'gateway_operations_total',
    help: 'GraphQL queries and mutations executed, by operation type, client app and outcome code (OK, or the first error code).',
    labelNames: ['type', 'client', 'code'] as const,
    registers,
  });
  const operationDuration = new client.Histogram({
    name: 'gateway_operation_duration_seconds',
    help: 'Time to plan and execute a query or mutation, subgraph fetches included, by operation type and client app.',
    labelNames: ['type', 'client'] as const,
    buckets: durationBuckets,
    registers,
  });
  const fetches = new client.Histogram({
    name: 'gateway_subgraph_fetch_duration_seconds',
    help: 'HTTP fetches to subgraphs, by subgraph and outcome (ok, http_<status>, or the error code the gateway gave up with).',
    labelNames: ['subgraph', 'outcome'] as const,
    buckets: durationBuckets,
    registers,
  });
  // App names come from the client: bounded, so that no client grows the series without end.
  const clients = new BoundedLabel();
  const codes = new BoundedLabel();
  const refusals = new client.Counter({
    name: 'gateway_refusals_total',
    help: 'Refusals the gateway answered, by code (RATE_LIMITED, TOO_MANY_CONNECTIONS, TOO_MANY_ALIASES, UNAUTHENTICATED, CSRF_REJECTED, GRAPHQL_VALIDATION_FAILED…) and transport (http, graphql-ws, multipart, sse).',
    labelNames: ['code', 'transport'] as const,
    registers,
  });
  if (options.subgraphHealth) {
    const health = options.subgraphHealth;
    new client.Gauge({
      name: 'gateway_subgraph_breaker_state',
      help: 'Each subgraph’s circuit breaker: 1 for the state it is in (closed: calls go through; half-open: one probe is let through; open: calls fail fast), 0 for the others. Subgraphs not called yet are not shown.',
      labelNames: ['subgraph', 'state'] as const,
      registers,
      collect() {
        for (const [subgraph, report] of health()) {
          const current = report.details?.breaker;
          if (typeof current !== 'string') continue;
          for (const state of breakerStates) this.set({ subgraph, state }, state === current ? 1 : 0);
        }
      },
    });
  }
  if (options.subscriptions) registerSubscriptionMetrics(registers, options.subscriptions);
  return {
    name: 'metrics',
    async wrapExecution(execution, next) {
      const labels = { type: execution.operationType, client: clients.of(execution.context.client?.name) };
      const stop = operationDuration.startTimer(labels);
      try {
        const result = await next();
        operations.inc({ ...labels, code: codes.of(outcomeOf(result.errors as { extensions?: Record<string, unknown> }[] | undefined)) });
        return result;
      } catch (error) {
        operations.inc({ ...labels, code: codes.of(failureCode(error, 'ERROR')) });
        throw error;
      } finally {
        stop();
      }
    },
    onRefusal(refusal, transport) {
      refusals.inc({ code: codes.of(String(refusal.extensions.code ?? 'ERROR')), transport });
    },
    async wrapSubgraphFetch(request, init, next) {
      const stop = fetches.startTimer({ subgraph: request.subgraph });
      try {
        const response = await next(init);
        stop({ outcome: response.ok ? 'ok' : `http_${response.status}` });
        return response;
      } catch (error) {
        stop({ outcome: codes.of(failureCode(error, 'error')) });
        throw error;
      }
    },
  };
}

/**
 * Subscriptions, read from the gateway's own figures at scrape: open ones and their connections
 * (gauges), and the events pushed and slow subscribers dropped since start (counters, moved by
 * what the figures moved since the last scrape).
 */
function registerSubscriptionMetrics(registers: client.Registry[], figures: () => SubscriptionFigures): void {
  new client.Gauge({
    name: 'gateway_subscriptions_open',
    help: 'Client subscriptions being served, all transports together.',
    registers,
    collect() {
      this.set(figures().clients);
    },
  });
  new client.Gauge({
    name: 'gateway_subscription_connections_open',
    help: 'Client connections that carry subscriptions, by transport: graphql-ws sockets, and multipart or SSE streams (http).',
    labelNames: ['transport'] as const,
    registers,
    collect() {
      const now = figures();
      this.set({ transport: 'graphql-ws' }, now.webSocketConnections);
      this.set({ transport: 'http' }, now.httpStreams);
    },
  });
  const sinceStart = (name: string, help: string, read: (now: SubscriptionFigures) => number) => {
    let counted = 0;
    new client.Counter({
      name,
      help,
      registers,
      collect() {
        const total = read(figures());
        if (total > counted) this.inc(total - counted);
        counted = total;
      },
    });
  };
  sinceStart('gateway_subscription_events_pushed_total', 'Events handed to client subscriptions (a joiner’s replay of the latest included).', (now) => now.eventsPushed);
  sinceStart('gateway_subscription_slow_consumers_dropped_total', 'Client subscriptions let go (SUBSCRIBER_TOO_SLOW) because more events waited for them than the gateway holds.', (now) => now.slowSubscribersDropped);
}
