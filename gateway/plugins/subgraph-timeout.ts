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
import type { GatewayPlugin } from '../pipeline/plugin.ts';

export interface SubgraphTimeoutOptions {
  /** The longest a client request may wait on subgraphs, all its fetches together. @default 10_000 */
  requestTimeoutMs?: number;
}

export function subgraphTimeout(options: SubgraphTimeoutOptions = {}): GatewayPlugin {
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
  return {
    name: 'subgraph-timeout',
    onOperation(operation) {
      if (operation.operation.operation !== 'subscription') operation.context.deadline = Date.now() + requestTimeoutMs;
    },
    onSubgraphRequest(request) {
      if (request.kind !== 'fetch') return;
      request.headers[requestDeadlineHeader] = String(request.context?.deadline ?? Date.now() + requestTimeoutMs);
    },
    wrapSubgraphFetch(request, init, next) {
      // The header set above is the one source of this fetch's deadline (resilience reads it too).
      const deadline = Number(request.headers[requestDeadlineHeader]) || Date.now() + requestTimeoutMs;
      const timeout = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
      return next({ ...init, signal: init.signal ? AbortSignal.any([init.signal, timeout]) : timeout });
    },
  };
}
