/**
 * Which request a log line belongs to, without passing it by hand. Every HTTP request a server of
 * ours (gateway or subgraph) answers runs in a scope of its own (platform/http/graphql-http.ts);
 * whoever learns the request's id fills it in (the gateway's access-log plugin, the subgraph's
 * context), and every line logged from then on while handling that request — in resolvers,
 * repositories, data sources, plugins — carries `requestId` and, when the caller sent a W3C
 * `traceparent`, `traceId` (logger.ts adds them). A consumer handling an event runs in the scope
 * of the request that caused it: the event's correlation id is that request's id.
 *
 * AsyncLocalStorage, not a context argument: a repository three calls down has no context to
 * read, and a line without an id cannot be tied to the request that wrote it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

export interface LogScope {
  /** The request's id: the client's `x-request-id` when well-formed, else one the gateway made; an event's correlation id. */
  requestId?: string;
  /** The trace id of the request's W3C `traceparent`, when it came with one. */
  traceId?: string;
}

const storage = new AsyncLocalStorage<LogScope>();

/** Runs `work` in a new, empty scope that the request's handlers fill in with `bindLogScope`. */
export function withLogScope<T>(work: () => T): T {
  return storage.run({}, work);
}

/** Runs `work` in a scope that already knows its request (a consumer handling an event). */
export function runInLogScope<T>(scope: LogScope, work: () => T): T {
  return storage.run({ ...scope }, work);
}

/**
 * Names the request of the current scope: every later line of it carries the id (and the trace
 * id of `traceparent`). Outside any scope (a background loop) it does nothing.
 */
export function bindLogScope(request: { requestId: string; traceparent?: string | null | undefined }): void {
  const scope = storage.getStore();
  if (!scope) return;
  scope.requestId = request.requestId;
  const traceId = traceIdOf(request.traceparent);
  if (traceId) scope.traceId = traceId;
}

/**
 * The current request's scope: one object for the whole request, wherever its work runs, so also
 * a key for what a plugin gathers about the request (the access log). Undefined outside a request.
 */
export function currentLogScope(): LogScope | undefined {
  return storage.getStore();
}

/** The fields the current scope adds to a log line (none outside a request). */
export function logScopeFields(): LogScope {
  const scope = storage.getStore();
  if (!scope?.requestId) return {};
  return scope.traceId ? { requestId: scope.requestId, traceId: scope.traceId } : { requestId: scope.requestId };
}

/** A request id a client may choose: harmless to log and to forward (no spaces, quotes or line breaks). */
const requestIdPattern = /^[A-Za-z0-9._-]{1,64}$/;
const traceparentPattern = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The client's `x-request-id` when it is well-formed, else a new one. */
export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && requestIdPattern.test(header) ? header : randomUUID();
}

/** The trace id of a well-formed W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`); all zeros is invalid. */
export function traceIdOf(traceparent: string | null | undefined): string | undefined {
  const traceId = traceparentPattern.exec(traceparent ?? '')?.[1];
  return traceId && !/^0+$/.test(traceId) ? traceId : undefined;
}

/**
 * A consumer's handler that logs in the scope of the request behind each event: its lines carry
 * the event's correlation id as `requestId`, and the trace id of its `traceparent`.
 */
export function inEventLogScope<E extends { correlationId: string; traceparent?: string | null }, R extends unknown[], T>(
  handle: (event: E, ...rest: R) => T,
): (event: E, ...rest: R) => T {
  return (event, ...rest) => {
    const traceId = traceIdOf(event.traceparent);
    return runInLogScope({ requestId: event.correlationId, ...(traceId ? { traceId } : {}) }, () => handle(event, ...rest));
  };
}
