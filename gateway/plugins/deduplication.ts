/**
 * Identical work in flight is done once:
 *
 * - inbound: a query whose text, operation name, variables and caller are those of a query
 *   still executing joins it and gets its result (each request is still admitted, priced and
 *   rate-limited on its own);
 * - outbound: an idempotent subgraph fetch whose subgraph, body and caller are those of a fetch
 *   still in flight shares its response.
 *
 * The caller is part of every key: its identity (customer id and roles, or anonymous) as the
 * subgraphs receive it, never the signed header (a new signature each call) — so one customer's
 * answer never reaches another. Mutations, and every fetch of a mutation, are never shared. A
 * joiner still gives up at its own deadline.
 */
import type { Identity } from '../../platform/identity/identity.ts';
import { buffer, replay, type BufferedResponse } from '../pipeline/buffered-response.ts';
import type { ExecutionResult, GatewayPlugin } from '../pipeline/plugin.ts';
import { untilAborted } from '../pipeline/subgraph-failure.ts';

export interface DeduplicationOptions {
  /** Identical in-flight queries of one caller share one execution. @default true */
  requests?: boolean;
  /** Identical in-flight idempotent fetches of one caller to one subgraph share one call. @default true */
  subgraphFetches?: boolean;
}

/** Who the subgraphs see: the same for two requests exactly when their answers may be the same. */
function callerKey(identity: Identity): string {
  return identity.customerId === null ? 'anonymous' : `${identity.customerId}|${[...identity.roles].sort().join(',')}`;
}

/** The plugin, with what it saved so far (for metrics and tests). */
export interface DeduplicationPlugin extends GatewayPlugin {
  /** Queries that joined an identical one instead of executing, and fetches that joined one in flight, since start. */
  readonly joined: { readonly executions: number; readonly fetches: number };
}

export function deduplication(options: DeduplicationOptions = {}): DeduplicationPlugin {
  const executions = new Map<string, Promise<ExecutionResult>>();
  const fetches = new Map<string, Promise<BufferedResponse>>();
  const joined = { executions: 0, fetches: 0 };
  return {
    name: 'deduplication',
    joined,
    wrapExecution(execution, next) {
      if (options.requests === false || execution.operationType !== 'query') return next();
      const key = JSON.stringify([callerKey(execution.context.identity), execution.rewriteKey ?? null, execution.operationName, execution.source, execution.variables]);
      const running = executions.get(key);
      // A copy for each joiner: Apollo Server sets the response's extensions on what it is given.
      if (running) joined.executions++;
      if (running) return running.then((result) => ({ ...result, ...(result.extensions ? { extensions: { ...result.extensions } } : {}) }));
      const started = next().finally(() => executions.delete(key));
      executions.set(key, started);
      return started;
    },
    async wrapSubgraphFetch(request, init, next) {
      if (options.subgraphFetches === false || !request.idempotent || typeof init.body !== 'string') return next(init);
      const key = JSON.stringify([request.subgraph, callerKey(request.identity), init.body]);
      let shared = fetches.get(key);
      if (shared) joined.fetches++;
      else {
        shared = next(init)
          .then(buffer)
          .finally(() => fetches.delete(key));
        fetches.set(key, shared);
      }
      const answer = await (init.signal ? untilAborted(shared, init.signal) : shared);
      return replay(answer);
    },
  };
}
