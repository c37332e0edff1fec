/**
 * Runs work one at a time per key, in the order it asked, and concurrently across keys: a
 * consumer that handles several events at once keeps each aggregate's events in sequence within
 * its process. Keys with nothing waiting are forgotten, so memory follows the work in flight.
 */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  /** How many keys have work running or waiting. */
  get size(): number {
    return this.#tails.size;
  }

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => done);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await work();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
