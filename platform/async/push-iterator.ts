/**
 * A push queue as an AsyncIterableIterator: producers `push` values (or `fail` it), one consumer
 * iterates. `return()` (the consumer leaves) runs the cleanup once. The queue is unbounded: a
 * producer that must protect itself from a slow consumer checks `buffered`.
 */
export class PushIterator<T> implements AsyncIterableIterator<T> {
  readonly #values: T[] = [];
  readonly #waiting: { resolve: (result: IteratorResult<T>) => void; reject: (error: unknown) => void }[] = [];
  #failure: unknown;
  #done = false;
  /** Ended by the producer: done once the buffered values are taken. */
  #ending = false;
  #cleanup: (() => Promise<void>) | undefined;

  constructor(cleanup?: () => Promise<void>) {
    this.#cleanup = cleanup;
  }

  setCleanup(cleanup: () => Promise<void>): void {
    if (this.#done) void cleanup();
    else this.#cleanup = cleanup;
  }

  /** Values pushed and not yet taken by the consumer. */
  get buffered(): number {
    return this.#values.length;
  }

  /** Whether the consumer left or the queue ended. */
  get done(): boolean {
    return this.#done;
  }

  push(value: T): void {
    if (this.#done || this.#ending) return;
    const waiter = this.#waiting.shift();
    if (waiter) waiter.resolve({ value, done: false });
    else this.#values.push(value);
  }

  fail(error: unknown): void {
    if (this.#done) return;
    const waiters = this.#waiting.splice(0);
    if (waiters.length === 0) this.#failure = error; // for the next call of next()
    void this.return();
    for (const waiter of waiters) waiter.reject(error);
  }

  /** The producer is done: the consumer gets what is buffered, then the end. */
  end(): void {
    if (this.#done || this.#ending) return;
    this.#ending = true;
    if (this.#values.length === 0) void this.return();
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#values.length > 0) {
      const value = this.#values.shift()!;
      if (this.#ending && this.#values.length === 0) void this.return();
      return Promise.resolve({ value, done: false });
    }
    if (this.#failure !== undefined) {
      const failure = this.#failure;
      this.#failure = undefined;
      return Promise.reject(failure);
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  async return(): Promise<IteratorResult<T>> {
    if (!this.#done) {
      this.#done = true;
      this.#values.length = 0;
      for (const waiter of this.#waiting.splice(0)) waiter.resolve({ value: undefined, done: true });
      const cleanup = this.#cleanup;
      this.#cleanup = undefined;
      await cleanup?.();
    }
    return { value: undefined, done: true };
  }

  async throw(error?: unknown): Promise<IteratorResult<T>> {
    await this.return();
    throw error;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
