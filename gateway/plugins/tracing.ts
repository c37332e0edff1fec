/**
 * Traces of the gateway (docs/decisions/0036): one server span per HTTP request to the GraphQL
 * endpoint, continuing the client's W3C `traceparent` or starting a trace when it sent none, and
 * one client span per HTTP fetch to a subgraph, whose `traceparent` the fetch sends, so that the
 * subgraph's span is its child. The request's log lines carry the span's trace id.
 *
 * Attributes say what ran and for which app and kind of caller — the operation's name and type,
 * the client's name and version, `anonymous` / `customer` / `admin` — never who the caller is, the
 * variables or the document: a trace is kept and read as widely as a log.
 *
 * Only when tracing is enabled (platform/tracing/tracing.ts): otherwise request-tracing forwards
 * the client's `traceparent` unchanged and nothing here runs. Last among the plugins, so that a
 * fetch's span times one attempt (a retry is a span of its own).
 */
import type { IncomingMessage } from 'node:http';
import { currentLogScope } from '../../platform/logging/request-scope.ts';
import { SpanKind, SpanStatusCode, startSpan, traceparentOf, tracerOf, type Span } from '../../platform/tracing/tracing.ts';
import { isAdmin, type Identity } from '../../platform/identity/identity.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';
import { clientAppOf } from './client-awareness.ts';

const header = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

function callerKind(identity: Identity): 'anonymous' | 'customer' | 'admin' {
  return isAdmin(identity) ? 'admin' : identity.customerId ? 'customer' : 'anonymous';
}

/** The app as it named itself; a name client-awareness refuses is not repeated. */
function clientAttributes(request: IncomingMessage): Record<string, string> {
  try {
    const { name, version } = clientAppOf(request.headers);
    return { ...(name ? { 'graphql.client.name': name } : {}), ...(version ? { 'graphql.client.version': version } : {}) };
  } catch {
    return {};
  }
}

export function tracing(): GatewayPlugin {
  const tracer = tracerOf('gateway');
  // By request id (access-log gave every request one before this runs); removed when it closes.
  const requests = new Map<string, Span>();
  const spanOf = (requestId: string | undefined) => (requestId ? requests.get(requestId) : undefined);
  return {
    name: 'tracing',
    onHttpRequest({ request, response }) {
      const requestId = header(request.headers['x-request-id']);
      if (!requestId) return;
      const span = startSpan(tracer, 'graphql request', header(request.headers.traceparent), SpanKind.SERVER, {
        'http.request.method': request.method ?? 'GET',
        ...clientAttributes(request),
      });
      requests.set(requestId, span);
      // The request's log lines carry this trace's id, whether the client sent a traceparent or not.
      const scope = currentLogScope();
      if (scope) scope.traceId = span.spanContext().traceId;
      response.once('close', () => {
        requests.delete(requestId);
        span.setAttribute('http.response.status_code', response.statusCode);
        if (response.statusCode >= 500 || !response.writableFinished) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      });
    },
    onOperation({ context, operation, operationName }) {
      const span = spanOf(context.requestId);
      if (!span) return;
      // The document's name when the request named none (its only operation).
      const name = operationName ?? operation.name?.value;
      span.updateName(`${operation.operation} ${name ?? 'anonymous'}`);
      span.setAttributes({
        'graphql.operation.type': operation.operation,
        ...(name ? { 'graphql.operation.name': name } : {}),
        'caller.kind': callerKind(context.identity),
      });
    },
    async wrapSubgraphFetch(request, init, next) {
      const parent = spanOf(request.context?.requestId);
      if (!parent) return next(init);
      const span = startSpan(tracer, `fetch ${request.subgraph}`, traceparentOf(parent), SpanKind.CLIENT, { 'graphql.subgraph.name': request.subgraph });
      const traceparent = traceparentOf(span);
      try {
        const response = await next(traceparent ? { ...init, headers: { ...(init.headers as Record<string, string>), traceparent } } : init);
        span.setAttribute('http.response.status_code', response.status);
        if (response.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        return response;
      } catch (error) {
        span.setStatus({ code: SpanStatusCode.ERROR });
        throw error;
      } finally {
        span.end();
      }
    },
  };
}
