/**
 * How many subscription connections one caller holds open, all transports together: graphql-ws
 * sockets and multipart / SSE streams count against the same bound (docs/decisions/0007). A
 * caller is the signed-in customer, or the client address of an anonymous one.
 */
import type { Identity } from '../../platform/identity/identity.ts';

export function callerOf(identity: Identity, remoteAddress: string | undefined): string {
  return identity.customerId ? `customer:${identity.customerId}` : `address:${remoteAddress ?? 'unknown'}`;
}

export class ConnectionsPerCaller {
  readonly #open = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Connections the caller has open. */
  openOf(caller: string): number {
    return this.#open.get(caller) ?? 0;
  }

  /**
   * Takes a slot for the caller: the function that gives it back (idempotent), or undefined when
   * the caller already holds `max`.
   */
  acquire(caller: string): (() => void) | undefined {
    const open = this.openOf(caller);
    if (open >= this.max) return undefined;
    this.#open.set(caller, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.openOf(caller) - 1;
      if (left > 0) this.#open.set(caller, left);
      else this.#open.delete(caller);
    };
  }

  /** The message a refused connection gets. */
  get refusal(): string {
    return `Too many connections: at most ${this.max} per caller, WebSockets and HTTP streams together`;
  }
}
