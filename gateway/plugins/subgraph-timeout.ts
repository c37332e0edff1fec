/**
 * The whole request's deadline, so that no subgraph — slow, frozen, or retried — holds a client
 * request longer than `requestTimeoutMs`. A query or mutation's deadline starts when it is
 * admitted and bounds all its fetches together, retries and back-off waits included; each
 * subscription event's fetches get a deadline of their own, since a subscription lives on.
 *
 * The deadline travels with each fetch (`x-request-deadline`, epoch milliseconds), so the subgraph
 * stops working on it when the gateway has given up; the resilience plugin lowers it to the end of
 * each attempt (per-subgraph timeout) when that comes first.
 */
import { requestDeadlineHeader } from '../../platform/subgraph/deadline.ts';
import type { GatewayContext } from '../context.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';

export interface SubgraphTimeoutOptions {
  /** The longest a client request may wait on subgraphs, all its fetches together. @default 10_000 */
  requestTimeoutMs?: number;
}

export function subgraphTimeout(options: SubgraphTimeoutOptions = {}): GatewayPlugin {
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  const requestDeadlines = new WeakMap<GatewayContext, number>();
  const fetchDeadlines = new WeakMap<object, number>();
  return {
    name: 'subgraph-timeout',
    onOperation(operation) {
      if (operation.operation.operation !== 'subscription') requestDeadlines.set(operation.context, Date.now() + requestTimeoutMs);
    },
    onSubgraphRequest(request) {
      if (request.kind !== 'fetch') return;
      const deadline = (request.context && requestDeadlines.get(request.context)) ?? Date.now() + requestTimeoutMs;
      fetchDeadlines.set(request, deadline);
      request.headers[requestDeadlineHeader] = String(deadline);
    },
    wrapSubgraphFetch(request, init, next) {
      const remaining = Math.max(1, (fetchDeadlines.get(request) ?? Date.now() + requestTimeoutMs) - Date.now());
      const timeout = AbortSignal.timeout(remaining);
      return next({ ...init, signal: init.signal ? AbortSignal.any([init.signal, timeout]) : timeout });
    },
  };
}
