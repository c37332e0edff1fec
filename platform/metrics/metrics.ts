/**
 * Prometheus metrics of one process (prom-client), served at `/metrics` in the text format by the
 * gateway and every subgraph. Names and labels follow Prometheus conventions: `_total` counters,
 * `_seconds` histograms, base units, and labels of bounded cardinality (never ids): routes are the
 * server's own paths, status codes a few dozen, and names that clients choose (operation and app
 * names) pass through a BoundedLabel.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import client from 'prom-client';

/** Seconds, from a millisecond of a fast route to a slow request's deadline. */
export const durationBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface ServiceMetrics {
  readonly registry: client.Registry;
  /** Counts and times one HTTP request, by route (a path the server knows, else `other`), method and status. */
  observeHttp(route: string, method: string, status: number, seconds: number): void;
  /** The `/metrics` route: the registry in Prometheus' text format. */
  serve(request: IncomingMessage, response: ServerResponse): Promise<void>;
}

/** The metrics of a process named `service` (the `service` label of every series), with Node's own (CPU, memory, event loop lag, GC). */
export function createServiceMetrics(service: string): ServiceMetrics {
  const registry = new client.Registry();
  registry.setDefaultLabels({ service });
  client.collectDefaultMetrics({ register: registry });
  const requests = new client.Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by route, method and status code.',
    labelNames: ['route', 'method', 'code'] as const,
    registers: [registry],
  });
  const duration = new client.Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from a request arriving to its response finishing, by route.',
    labelNames: ['route'] as const,
    buckets: durationBuckets,
    registers: [registry],
  });
  const methods = new BoundedLabel(['GET', 'POST', 'OPTIONS', 'HEAD'], 0);
  return {
    registry,
    observeHttp(route, method, status, seconds) {
      requests.inc({ route, method: methods.of(method), code: String(status) });
      duration.observe({ route }, seconds);
    },
    async serve(_request, response) {
      const body = await registry.metrics();
      response.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' }).end(body);
    },
  };
}

/**
 * A label whose values come from outside (a client's operation name, an app's name): the first
 * `max` distinct values are kept as they are (cut to 64 characters), any further one is `other`,
 * so no client can grow the number of series without bound.
 */
export class BoundedLabel {
  readonly #seen = new Set<string>();

  constructor(
    known: readonly string[] = [],
    private readonly max = 100,
  ) {
    for (const value of known) this.#seen.add(value);
  }

  of(value: string | null | undefined, none = 'none'): string {
    if (value === null || value === undefined || value === '') return none;
    // A label must never throw: a metric that fails would turn the error it counts into another.
    const cut = String(value).slice(0, 64);
    if (this.#seen.has(cut)) return cut;
    if (this.#seen.size >= this.max) return 'other';
    this.#seen.add(cut);
    return cut;
  }
}
