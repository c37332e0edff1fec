/**
 * How a `wrapSubgraphFetch` wrapper gives up on a subgraph fetch: with the reason a client can
 * branch on. The data source turns it into an error of that code carrying the path of every field
 * the fetch would have filled (fetch-error-paths.ts); the subgraph's name, URL and the underlying
 * cause stay in the logs.
 */
import { ErrorCode } from '../../platform/errors/index.ts';

export type SubgraphFailureReason =
  /** The fetch's deadline passed (the subgraph's timeout, or the whole request's). */
  | 'timeout'
  /** The subgraph could not be reached, or its circuit breaker is open. */
  | 'unavailable'
  /** The subgraph's bulkhead is full: the fetch was shed, nothing was sent. */
  | 'overloaded';

export class SubgraphFailure extends Error {
  readonly reason: SubgraphFailureReason;

  constructor(reason: SubgraphFailureReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SubgraphFailure';
    this.reason = reason;
  }
}

/** The code and message a client reads for each reason: no subgraph name, no URL, no cause. */
export const failureAnswers: Record<SubgraphFailureReason, { code: string; message: string; extensions?: Record<string, unknown> }> = {
  timeout: { code: ErrorCode.SUBGRAPH_TIMEOUT, message: 'A service this request depends on did not answer in time: try again' },
  unavailable: { code: ErrorCode.SUBGRAPH_UNAVAILABLE, message: 'A service this request depends on is unavailable: try again' },
  // `retryAfter` in seconds, as every SERVICE_OVERLOADED has it: a queue slot frees within one.
  overloaded: { code: ErrorCode.SERVICE_OVERLOADED, message: 'A service this request depends on is at capacity and was not called: try again in 1 s', extensions: { retryAfter: 1 } },
};

/** Whether an error is a fetch aborted by a deadline (AbortSignal.timeout, an aborted controller). */
export function isAbort(error: unknown): boolean {
  const name = (error as { name?: string } | null)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

/** The promise, or the signal's reason as soon as it aborts: a caller waiting in a queue, a back-off or on a shared call stops at its own deadline. */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener('abort', abort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', abort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(error);
      },
    );
  });
}
