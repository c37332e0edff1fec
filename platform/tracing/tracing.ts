/**
 * Traces (OpenTelemetry): spans exported with OTLP over HTTP (JSON) when
 * `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, and nothing at all
 * otherwise: `tracerOf` then hands out the API's no-op tracer, whose spans record nothing and
 * export nothing, and which carries a parent's `traceparent` through unchanged.
 *
 * One tracer provider per service (its `service.name`), not one global provider: `npm start`
 * runs one service per process, but the tests and the benchmarks run every service in one
 * process, and a span must still say which service made it. Parents are passed explicitly, as a
 * W3C `traceparent` (the request's header, the event's envelope), so no global context manager
 * or monkey-patching is needed (docs/decisions/0036).
 */
import { createRequire } from 'node:module';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';

export { SpanKind, SpanStatusCode, type Span };

const providers = new Map<string, BasicTracerProvider>();
const require = createRequire(import.meta.url);

/**
 * The SDK and the exporter, loaded only once tracing is enabled: importing them costs a process
 * ~130 ms at start (measured here), which a process that exports nothing should not pay.
 */
function loadSdk() {
  return {
    ...(require('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base')),
    ...(require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http')),
    ...(require('@opentelemetry/resources') as typeof import('@opentelemetry/resources')),
    ...(require('@opentelemetry/semantic-conventions') as typeof import('@opentelemetry/semantic-conventions')),
  };
}
const propagator = new W3CTraceContextPropagator();

/** Whether spans are exported: the standard OTLP endpoint variables, read when asked. */
export function tracingEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/**
 * The tracer of a service (`gateway`, `orders`…): its provider starts on first use when tracing
 * is enabled, batching spans to the OTLP endpoint (the exporter reads the standard variables:
 * endpoint, headers, timeout). When it is not, the no-op tracer.
 */
export function tracerOf(service: string): Tracer {
  if (!tracingEnabled()) return trace.getTracer(service);
  let provider = providers.get(service);
  if (!provider) {
    const { BasicTracerProvider, BatchSpanProcessor, OTLPTraceExporter, resourceFromAttributes, ATTR_SERVICE_NAME } = loadSdk();
    provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: service }),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())],
    });
    providers.set(service, provider);
  }
  return provider.getTracer(service);
}

/** Providers started so far (none while tracing is off). */
export function tracerProviderCount(): number {
  return providers.size;
}

/** Exports what is batched and stops every provider: the process is stopping. */
export async function shutdownTracing(): Promise<void> {
  const stopping = [...providers.values()];
  providers.clear();
  await Promise.all(stopping.map((provider) => provider.shutdown().catch(() => undefined)));
}

/** Exports what is batched now, providers kept (tests read the receiver afterwards). */
export async function flushTracing(): Promise<void> {
  await Promise.all([...providers.values()].map((provider) => provider.forceFlush()));
}

/**
 * Starts a span whose parent is the given W3C `traceparent` (a new trace when it is absent or
 * malformed). End it with `span.end()`.
 */
export function startSpan(tracer: Tracer, name: string, parent: string | null | undefined, kind: SpanKind, attributes?: Attributes): Span {
  const context = parent ? propagator.extract(ROOT_CONTEXT, { traceparent: parent }, { get: (carrier, key) => carrier[key as 'traceparent'], keys: () => ['traceparent'] }) : ROOT_CONTEXT;
  return tracer.startSpan(name, { kind, ...(attributes ? { attributes } : {}) }, context);
}

/** The W3C `traceparent` naming `span` as the parent: undefined for the no-op tracer's span of a new trace. */
export function traceparentOf(span: Span): string | undefined {
  const carrier: Record<string, string> = {};
  propagator.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, { set: (target, key, value) => void (target[key] = value) });
  return carrier.traceparent;
}

/**
 * Runs `work` inside a span (child of `parent`), ending it when the work settles; a failure marks
 * the span as an error, without its message (a message may quote what a caller sent).
 */
export async function inSpan<T>(tracer: Tracer, name: string, parent: string | null | undefined, kind: SpanKind, work: (span: Span) => Promise<T>, attributes?: Attributes): Promise<T> {
  const span = startSpan(tracer, name, parent, kind, attributes);
  try {
    return await work(span);
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR });
    throw error;
  } finally {
    span.end();
  }
}
