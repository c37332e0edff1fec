/**
 * A deadline on every subgraph fetch, so one slow subgraph cannot hold a client request forever.
 * The deadline travels with the request (`x-request-deadline`, epoch milliseconds) so the subgraph
 * stops working on it when the gateway has given up.
 */
import { requestDeadlineHeader } from '../../platform/subgraph/deadline.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';

export interface SubgraphTimeoutOptions {
  /** Abort a subgraph fetch after this long. @default 10_000 */
  timeoutMs?: number;
}

export function subgraphTimeout(options: SubgraphTimeoutOptions = {}): GatewayPlugin {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadlines = new WeakMap<object, number>();
  return {
    name: 'subgraph-timeout',
    onSubgraphRequest(request) {
      if (request.kind !== 'fetch') return;
      const deadline = Date.now() + timeoutMs;
      deadlines.set(request, deadline);
      request.headers[requestDeadlineHeader] = String(deadline);
    },
    wrapSubgraphFetch(request, init, next) {
      const remaining = Math.max(1, (deadlines.get(request) ?? Date.now() + timeoutMs) - Date.now());
      const timeout = AbortSignal.timeout(remaining);
      return next({ ...init, signal: init.signal ? AbortSignal.any([init.signal, timeout]) : timeout });
    },
  };
}
