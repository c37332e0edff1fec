/**
 * Per-subgraph resilience of every HTTP fetch, with cockatiel's policies, from the outside in:
 *
 *   retry (idempotent fetches only) ─▶ circuit breaker ─▶ bulkhead ─▶ timeout ─▶ fetch
 *
 * - retry: a fetch of a query (or of a subscription's event) that could not reach the subgraph,
 *   or got 502/503, is sent again after a jittered exponential back-off, within the request's
 *   deadline. Never a fetch of a mutation, entity fetches included: the subgraph may have applied
 *   it before the connection broke. Never a timeout: a slow subgraph does not need twice the work.
 * - circuit breaker: after `breakerFailures` failures in a row (unreachable, timeout, 502/503/504)
 *   the subgraph's fetches fail at once with SUBGRAPH_UNAVAILABLE, no call made. After
 *   `breakerHalfOpenAfterMs` one fetch — or, with no traffic, the breaker's own probe — is let
 *   through: success closes the breaker, failure opens it again. Changes are logged.
 * - bulkhead: at most `maxConcurrency` fetches in flight and `maxQueue` waiting; more are shed
 *   with SERVICE_OVERLOADED at once, instead of piling up behind a slow subgraph.
 * - timeout: one attempt ends after `timeoutMs` (SUBGRAPH_TIMEOUT), its body read included; the
 *   subgraph is told (`x-request-deadline`) so it stops too.
 *
 * Failures are thrown as `SubgraphFailure`s; the data source answers them with their code and the
 * paths of what is missing.
 */
import {
  BrokenCircuitError,
  BulkheadRejectedError,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  TaskCancelledError,
  TimeoutStrategy,
  bulkhead,
  circuitBreaker,
  handleWhen,
  retry,
  timeout,
  wrap,
  type BulkheadPolicy,
  type CircuitBreakerPolicy,
  type IPolicy,
} from 'cockatiel';
import { intFromEnv } from '../../platform/config.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { createLogger, errorFields } from '../../platform/logging/logger.ts';
import { requestDeadlineHeader } from '../../platform/subgraph/deadline.ts';
import { buffer, replay } from '../pipeline/buffered-response.ts';
import type { GatewayPlugin, SubgraphHealth } from '../pipeline/plugin.ts';
import { isAbort, SubgraphFailure, untilAborted } from '../pipeline/subgraph-failure.ts';

export interface SubgraphPolicy {
  /** One attempt's deadline, its body read included (the whole request has its own). @default 5_000 */
  timeoutMs: number;
  /** Attempts after the first, for idempotent fetches that could not reach the subgraph or got 502/503. @default 2 */
  retries: number;
  /** First back-off delay before a retry; then about doubling (decorrelated jitter), at most 1 s. @default 100 */
  retryDelayMs: number;
  /** Failures in a row that open the breaker. @default 5 */
  breakerFailures: number;
  /** How long an open breaker fails fast before it lets one probe through. @default 2_000 */
  breakerHalfOpenAfterMs: number;
  /** Fetches in flight at once. @default 50 */
  maxConcurrency: number;
  /** Fetches waiting for a free slot; beyond, fetches are shed with SERVICE_OVERLOADED. @default 100 */
  maxQueue: number;
}

export const defaultSubgraphPolicy: Readonly<SubgraphPolicy> = Object.freeze({
  timeoutMs: 5_000,
  retries: 2,
  retryDelayMs: 100,
  breakerFailures: 5,
  breakerHalfOpenAfterMs: 2_000,
  maxConcurrency: 50,
  maxQueue: 100,
});

export interface ResilienceOptions {
  /** What every subgraph gets unless `subgraphs` says otherwise. Defaults in `defaultSubgraphPolicy`. */
  defaults?: Partial<SubgraphPolicy>;
  /** Per subgraph (lower-case name), over the defaults. */
  subgraphs?: Record<string, Partial<SubgraphPolicy>>;
  /** @default the `gateway.resilience` logger */
  log?: Logger;
}

/** Environment variable of each setting; each also takes a `_<NAME>` suffix for one subgraph (`SUBGRAPH_TIMEOUT_MS_ORDERS`). */
const environment: Record<keyof SubgraphPolicy, string> = {
  timeoutMs: 'SUBGRAPH_TIMEOUT_MS',
  retries: 'SUBGRAPH_RETRIES',
  retryDelayMs: 'SUBGRAPH_RETRY_DELAY_MS',
  breakerFailures: 'SUBGRAPH_BREAKER_FAILURES',
  breakerHalfOpenAfterMs: 'SUBGRAPH_BREAKER_HALF_OPEN_AFTER_MS',
  maxConcurrency: 'SUBGRAPH_MAX_CONCURRENCY',
  maxQueue: 'SUBGRAPH_MAX_QUEUE',
};

export function resilienceOptionsFromEnv(env: NodeJS.ProcessEnv): ResilienceOptions {
  const defaults: Partial<SubgraphPolicy> = {
    timeoutMs: intFromEnv('SUBGRAPH_TIMEOUT_MS', defaultSubgraphPolicy.timeoutMs, env),
    retries: intFromEnv('SUBGRAPH_RETRIES', defaultSubgraphPolicy.retries, env),
    retryDelayMs: intFromEnv('SUBGRAPH_RETRY_DELAY_MS', defaultSubgraphPolicy.retryDelayMs, env),
    breakerFailures: intFromEnv('SUBGRAPH_BREAKER_FAILURES', defaultSubgraphPolicy.breakerFailures, env),
    breakerHalfOpenAfterMs: intFromEnv('SUBGRAPH_BREAKER_HALF_OPEN_AFTER_MS', defaultSubgraphPolicy.breakerHalfOpenAfterMs, env),
    maxConcurrency: intFromEnv('SUBGRAPH_MAX_CONCURRENCY', defaultSubgraphPolicy.maxConcurrency, env),
    maxQueue: intFromEnv('SUBGRAPH_MAX_QUEUE', defaultSubgraphPolicy.maxQueue, env),
  };
  const subgraphs: Record<string, Partial<SubgraphPolicy>> = {};
  for (const [setting, base] of Object.entries(environment) as [keyof SubgraphPolicy, string][]) {
    for (const name of Object.keys(env)) {
      if (!name.startsWith(`${base}_`)) continue;
      const subgraph = name.slice(base.length + 1).toLowerCase();
      (subgraphs[subgraph] ??= {})[setting] = intFromEnv(name, defaults[setting]!, env);
    }
  }
  return { defaults, subgraphs };
}

/**
 * 503 with Retry-After is a live subgraph shedding load on purpose (SERVICE_OVERLOADED, nothing
 * done: docs/decisions/0016). It neither opens the breaker (a few shed writes would fail every
 * call to the subgraph) nor is retried at once (more load on what is overloaded): its answer
 * goes to the client, who is told when to try again.
 */
const isShedding = (response: Response) => response.status === 503 && response.headers.has('retry-after');
/** A response the subgraph (or a proxy before it) gave instead of doing the work. */
const isUnavailableResponse = (response: Response) => (response.status === 502 || response.status === 503) && !isShedding(response);
const isFailedResponse = (response: Response) => isUnavailableResponse(response) || response.status === 504;
/** Our own fast failures say nothing about the subgraph. */
const isOurs = (error: unknown) => error instanceof BrokenCircuitError || error instanceof BulkheadRejectedError;
const isTimeout = (error: unknown) => error instanceof TaskCancelledError || isAbort(error);

interface Guarded {
  policy: SubgraphPolicy;
  url: string;
  breaker: CircuitBreakerPolicy;
  bulkhead: BulkheadPolicy;
  /** For idempotent fetches: retry around the rest. */
  retrying: IPolicy<{ signal: AbortSignal }>;
  once: IPolicy<{ signal: AbortSignal }>;
  probe?: NodeJS.Timeout;
  lastShedLog: number;
}

const breakerStates: Record<CircuitState, string> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.HalfOpen]: 'half-open',
  [CircuitState.Open]: 'open',
  [CircuitState.Isolated]: 'open',
};

export function resilience(options: ResilienceOptions = {}): GatewayPlugin {
  const log = options.log ?? createLogger('gateway.resilience');
  const guarded = new Map<string, Guarded>();
  let stopped = false;

  const policyOf = (subgraph: string): SubgraphPolicy => ({ ...defaultSubgraphPolicy, ...options.defaults, ...options.subgraphs?.[subgraph] });

  /** With no traffic, an open breaker would never learn that its subgraph is back: probe it. */
  const scheduleProbe = (subgraph: string, guard: Guarded) => {
    clearTimeout(guard.probe);
    if (stopped) return;
    guard.probe = setTimeout(() => {
      if (guard.breaker.state !== CircuitState.Open) return;
      guard.breaker
        .execute(async () => {
          // The subgraph's readiness, not a GraphQL call: an unsigned operation would only be
          // refused (and logged) by our subgraphs. 503 means up but not yet able to serve (its
          // database or bus is away), a failed answer to the breaker: it stays open. Any other
          // answer — a subgraph of someone else's without `/ready` answers 404 — shows it serving.
          const response = await fetch(new URL('/ready', guard.url), { signal: AbortSignal.timeout(guard.policy.timeoutMs) });
          await response.arrayBuffer();
          return response;
        })
        .catch((error: unknown) => log.debug('breaker probe failed', { subgraph, ...errorFields(error) }));
    }, guard.policy.breakerHalfOpenAfterMs + 10);
    guard.probe.unref();
  };

  const guardOf = (subgraph: string, url: string): Guarded => {
    const known = guarded.get(subgraph);
    if (known) return known;
    const policy = policyOf(subgraph);
    const breaker = circuitBreaker(handleWhen((error) => !isOurs(error)).orWhenResult((result) => result instanceof Response && isFailedResponse(result)), {
      halfOpenAfter: policy.breakerHalfOpenAfterMs,
      breaker: new ConsecutiveBreaker(policy.breakerFailures),
    });
    const shed = bulkhead(policy.maxConcurrency, policy.maxQueue);
    const attempt = timeout(policy.timeoutMs, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: true });
    const retrying = retry(handleWhen((error) => !isOurs(error) && !isTimeout(error)).orWhenResult((result) => result instanceof Response && isUnavailableResponse(result)), {
      maxAttempts: policy.retries,
      backoff: new ExponentialBackoff({ initialDelay: policy.retryDelayMs, maxDelay: Math.max(1_000, policy.retryDelayMs) }),
    });
    const guard: Guarded = { policy, url, breaker, bulkhead: shed, retrying: wrap(retrying, breaker, shed, attempt), once: wrap(breaker, shed, attempt), lastShedLog: 0 };
    retrying.onRetry((event) => log.debug('retrying a subgraph fetch', { subgraph, attempt: event.attempt, delayMs: Math.round(event.delay), ...('error' in event ? errorFields(event.error) : { status: (event.value as Response).status }) }));
    breaker.onBreak(() => {
      log.warn('circuit breaker opened: failing fast', { subgraph, halfOpenAfterMs: policy.breakerHalfOpenAfterMs });
      scheduleProbe(subgraph, guard);
    });
    breaker.onHalfOpen(() => log.info('circuit breaker half-open: probing', { subgraph }));
    breaker.onReset(() => log.info('circuit breaker closed: subgraph is back', { subgraph }));
    shed.onReject(() => {
      const now = Date.now();
      if (now - guard.lastShedLog < 5_000) return;
      guard.lastShedLog = now;
      log.warn('bulkhead full: shedding subgraph fetches', { subgraph, maxConcurrency: policy.maxConcurrency, maxQueue: policy.maxQueue });
    });
    guarded.set(subgraph, guard);
    return guard;
  };

  return {
    name: 'resilience',
    async wrapSubgraphFetch(request, init, next) {
      const guard = guardOf(request.subgraph, request.url);
      const signal = init.signal ?? new AbortController().signal;
      const requestDeadline = Number(request.headers[requestDeadlineHeader]) || Infinity;
      const send = async ({ signal: attemptSignal }: { signal: AbortSignal }): Promise<Response> => {
        // The subgraph stops when this attempt ends, or the whole request, whichever is first.
        const deadline = Math.min(requestDeadline, Date.now() + guard.policy.timeoutMs);
        const response = await next({ ...init, headers: { ...(init.headers as Record<string, string>), [requestDeadlineHeader]: String(deadline) }, signal: attemptSignal });
        // Read within the attempt: a subgraph that freezes mid-body is a timeout like any other.
        return replay(await buffer(response));
      };
      const policy = request.idempotent ? guard.retrying : guard.once;
      try {
        return await untilAborted(policy.execute(send, signal), signal);
      } catch (error) {
        if (error instanceof BrokenCircuitError) throw new SubgraphFailure('unavailable', 'circuit breaker open');
        if (error instanceof BulkheadRejectedError) throw new SubgraphFailure('overloaded', 'bulkhead full');
        if (isTimeout(error) || signal.aborted) throw new SubgraphFailure('timeout', 'deadline passed', { cause: error });
        throw new SubgraphFailure('unavailable', 'fetch failed', { cause: error });
      }
    },
    subgraphHealth() {
      const health: Record<string, SubgraphHealth> = {};
      for (const [subgraph, guard] of guarded) {
        const state = guard.breaker.state;
        health[subgraph] = {
          status: state === CircuitState.Closed ? 'up' : state === CircuitState.HalfOpen ? 'degraded' : 'down',
          details: { breaker: breakerStates[state], inFlight: guard.policy.maxConcurrency - guard.bulkhead.executionSlots, queued: guard.policy.maxQueue - guard.bulkhead.queueSlots },
        };
      }
      return health;
    },
    stop() {
      stopped = true;
      for (const guard of guarded.values()) clearTimeout(guard.probe);
    },
  };
}
