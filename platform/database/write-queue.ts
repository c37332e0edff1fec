/**
 * A bounded queue of writers in front of a context's pool (docs/decisions/0016). A burst of
 * mutations used to start all at once: their reads and transactions queued for the pool's few
 * connections, and a transaction that waited past Prisma's `maxWait` (2 s) failed with an
 * internal error. Here at most `maxConcurrent` writers — a writer is a whole mutation, its reads
 * and its transaction — run at once, fewer than the pool has connections, so queries and the
 * context's consumers always find one; the rest wait their turn, in order, in a queue of
 * `maxQueued`.
 *
 * A writer is refused with SERVICE_OVERLOADED before it starts (so nothing is written) when the
 * queue is full, or when its turn has not come by the latest moment it could still start: after
 * `maxWaitMs`, or so close to its request's deadline (`x-request-deadline`, when the gateway gives
 * up) that it could not finish in time, judged by how long writers take lately. Not sooner, from a
 * forecast of the queue: a forecast made from a few slow writers (a cold start) refused work the
 * queue would have served, and refused writers teach it nothing new.
 *
 * The concurrency and queue bounds are a cockatiel bulkhead. Its queue has no time bound, and a
 * queued task cancelled through its signal leaves its turn unused (the next one waits for another
 * task to finish), so a writer that gave up is not cancelled: when its turn comes it returns at
 * once without running, and the next writer goes.
 */
import { bulkhead, BulkheadRejectedError, type BulkheadPolicy } from 'cockatiel';
import { intFromEnv } from '../config.ts';
import { createLogger, type Logger } from '../logging/logger.ts';
import { defaultRetryAfterSeconds, ServiceOverloaded } from './overload.ts';
import { defaultPoolSize } from './prisma.ts';

export interface WriteQueueOptions {
  /** Names the queue in logs, e.g. `orders`. */
  name: string;
  /**
   * Writers running at once. A mutation here runs its statements one after another, so it holds
   * one connection at a time, and one connection of the pool stays free for queries, the
   * context's consumers and health checks.
   * @default DATABASE_WRITE_CONCURRENCY, else the pool size (DATABASE_POOL_SIZE) minus one, at least 1
   */
  maxConcurrent?: number;
  /**
   * Writers waiting for their turn; the next one is refused. Time, not this, is what bounds a
   * writer's wait: it only caps memory. @default DATABASE_WRITE_QUEUE, else 200
   */
  maxQueued?: number;
  /**
   * The longest a writer waits for its turn, whatever its deadline: the bound for callers without
   * one. As long as the gateway's per-attempt subgraph timeout, so that behind the gateway the
   * request's deadline is what binds. @default 5_000
   */
  maxWaitMs?: number;
  /** `Retry-After` of a refused writer, in seconds. @default 1 */
  retryAfterSeconds?: number;
  /** @default createLogger(`${name}.write-queue`) */
  log?: Logger;
}

export interface WriteOptions {
  /** Epoch ms after which nobody will read the answer: the request's deadline. @default none (`maxWaitMs` only) */
  deadline?: number | undefined;
}

/** Writers at once, from DATABASE_WRITE_CONCURRENCY or the pool size. */
export function defaultWriteConcurrency(poolSize = defaultPoolSize()): number {
  const configured = intFromEnv('DATABASE_WRITE_CONCURRENCY', Math.max(1, poolSize - 1));
  if (configured < 1) throw new Error(`DATABASE_WRITE_CONCURRENCY must be at least 1, got ${configured}`);
  return configured;
}

/** Writers that may wait, from DATABASE_WRITE_QUEUE. */
export function defaultWriteQueue(): number {
  const configured = intFromEnv('DATABASE_WRITE_QUEUE', 200);
  if (configured < 0) throw new Error(`DATABASE_WRITE_QUEUE must be 0 (no queue) or more, got ${configured}`);
  return configured;
}

const warnEveryMs = 10_000;
/** Weight of the latest writer in the running estimate of how long one takes. */
const durationWeight = 0.2;

export class WriteQueue {
  readonly maxConcurrent: number;
  readonly maxQueued: number;
  readonly #bulkhead: BulkheadPolicy;
  readonly #maxWaitMs: number;
  readonly #retryAfterSeconds: number;
  readonly #log: Logger;
  /** How long a writer takes lately (moving average). */
  #writerMs = 0;
  /** One warning per overload, not one per refused writer (a burst refuses hundreds). */
  #refusedSinceWarning = 0;
  #warnedAt = -Infinity;

  constructor(options: WriteQueueOptions) {
    this.maxConcurrent = options.maxConcurrent ?? defaultWriteConcurrency();
    this.maxQueued = options.maxQueued ?? defaultWriteQueue();
    this.#maxWaitMs = options.maxWaitMs ?? 5_000;
    this.#retryAfterSeconds = options.retryAfterSeconds ?? defaultRetryAfterSeconds;
    this.#log = options.log ?? createLogger(`${options.name}.write-queue`);
    if (!Number.isInteger(this.maxConcurrent) || this.maxConcurrent < 1) throw new Error(`WriteQueue maxConcurrent must be a positive integer, got ${this.maxConcurrent}`);
    if (!Number.isInteger(this.maxQueued) || this.maxQueued < 0) throw new Error(`WriteQueue maxQueued must be 0 or a positive integer, got ${this.maxQueued}`);
    this.#bulkhead = bulkhead(this.maxConcurrent, this.maxQueued);
  }

  /** Writers running now, and waiting. */
  get load(): { running: number; queued: number } {
    return { running: this.maxConcurrent - this.#bulkhead.executionSlots, queued: this.maxQueued - this.#bulkhead.queueSlots };
  }

  /**
   * Runs `work` once it is this writer's turn. Rejects with ServiceOverloaded, before `work`
   * starts, when the queue is full or the turn does not come in time (see above).
   */
  async run<R>(work: () => Promise<R>, options: WriteOptions = {}): Promise<R> {
    const now = Date.now();
    // The latest moment the writer may start and still answer before the deadline: its own time,
    // and as much again for what follows (the answer's way back, a busy event loop).
    const latestStart = Math.min(now + this.#maxWaitMs, (options.deadline ?? Infinity) - 2 * this.#writerMs);
    return this.#inTurn(async () => {
      const started = Date.now();
      try {
        return await work();
      } finally {
        const took = Date.now() - started;
        this.#writerMs = this.#writerMs === 0 ? took : this.#writerMs + durationWeight * (took - this.#writerMs);
      }
    }, latestStart - now);
  }

  async #inTurn<R>(run: () => Promise<R>, waitMs: number): Promise<R> {
    let started = false;
    let gaveUp = false;
    let refuseLate!: (error: ServiceOverloaded) => void;
    const tooLong = new Promise<never>((_resolve, reject) => (refuseLate = reject));
    const timer = setTimeout(() => {
      if (started) return;
      gaveUp = true;
      refuseLate(this.#refuse('no turn in time'));
    }, Math.max(0, waitMs));
    // The request's socket keeps the process up while it matters; a stopping process need not wait.
    timer.unref();
    const turn = this.#bulkhead.execute(async () => {
      clearTimeout(timer);
      // Its writer was refused while it waited: the turn goes to the next one at once.
      if (gaveUp) return undefined as R;
      started = true;
      return run();
    });
    try {
      return await Promise.race([turn, tooLong]);
    } catch (error) {
      if (error instanceof BulkheadRejectedError) throw this.#refuse('queue full');
      throw error;
    } finally {
      clearTimeout(timer);
      // The race's loser must not reject unheard.
      turn.catch(() => {});
      tooLong.catch(() => {});
    }
  }

  /** One warning per `warnEveryMs` while writers are refused, with how many were. */
  #refuse(reason: string): ServiceOverloaded {
    this.#refusedSinceWarning += 1;
    const now = Date.now();
    if (now - this.#warnedAt >= warnEveryMs) {
      this.#log.warn('write queue overloaded: refusing writes with SERVICE_OVERLOADED', {
        reason,
        refused: this.#refusedSinceWarning,
        ...this.load,
        writerMs: Math.round(this.#writerMs),
        maxConcurrent: this.maxConcurrent,
        maxQueued: this.maxQueued,
      });
      this.#warnedAt = now;
      this.#refusedSinceWarning = 0;
    }
    return new ServiceOverloaded(`write ${reason}`, this.#retryAfterSeconds);
  }
}
