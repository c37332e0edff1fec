/**
 * The gateway's Prometheus metrics, as a plugin of its seam: each GraphQL operation it executes
 * (by type, app and outcome code) and each HTTP fetch to a subgraph (by subgraph and outcome,
 * with its latency). Every HTTP request is counted and timed by route by the HTTP server itself
 * (platform/metrics); `/metrics` serves them all.
 */
import client from 'prom-client';
import { BoundedLabel, durationBuckets } from '../../platform/metrics/metrics.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';

export interface MetricsOptions {
  registry: client.Registry;
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
        operations.inc({ ...labels, code: codes.of((error as { code?: string }).code ?? 'ERROR') });
        throw error;
      } finally {
        stop();
      }
    },
    async wrapSubgraphFetch(request, init, next) {
      const stop = fetches.startTimer({ subgraph: request.subgraph });
      try {
        const response = await next(init);
        stop({ outcome: response.ok ? 'ok' : `http_${response.status}` });
        return response;
      } catch (error) {
        stop({ outcome: codes.of((error as { code?: string }).code ?? 'error') });
        throw error;
      }
    },
  };
}
