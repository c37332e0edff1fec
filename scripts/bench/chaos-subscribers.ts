/**
 * `myOrderUpdates` subscribers over graphql-ws through the gateway, each recording every event
 * it receives and every stretch of time it was not subscribed (its socket closed, or the
 * subscription ended with an error and was started again). A subscriber behaves as a client
 * app would: it reconnects for ever, with a short capped back-off, and subscribes again.
 *
 * The gaps matter for judging misses: `myOrderUpdates` starts afresh on each subscribe (there is
 * no client-side resume), so a change committed while the CLIENT was away is not the platform's
 * loss; one committed while the client was subscribed is.
 */
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { Customer } from './chaos-clients.ts';

export interface ReceivedUpdate {
  orderId: string;
  status: string;
  /** Wall-clock ms of arrival. */
  at: number;
}

/** A stretch of wall-clock time during which the subscriber was not subscribed. */
export interface Gap {
  from: number;
  /** Undefined while it lasts. */
  to?: number;
  /** `socket closed`, or the code with which the server ended the subscription. */
  cause: string;
}

const subscription = 'subscription { myOrderUpdates { id status } }';

export class OrderUpdatesSubscriber {
  readonly received: ReceivedUpdate[] = [];
  readonly gaps: Gap[] = [];
  /** Error codes the subscriber saw (closes as `CLOSE_<code>`), with counts. */
  readonly errors = new Map<string, number>();
  /** Wall-clock ms of the first acknowledged subscription. */
  subscribedAt: number | undefined;
  readonly #client: Client;
  #dispose: (() => void) | undefined;
  #stopping = false;

  constructor(
    url: string,
    readonly customer: Customer,
  ) {
    this.#client = createClient({
      url,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${customer.token}` },
      lazy: false,
      retryAttempts: Number.MAX_SAFE_INTEGER,
      shouldRetry: () => true,
      // 250 ms, doubling, at most 2 s: a client app retrying briskly but without hammering.
      retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 250 * 2 ** retries))),
      on: {
        connected: () => this.#closeGap(),
        closed: (event) => {
          if (this.#stopping) return;
          this.#openGap('socket closed');
          this.#count(`CLOSE_${(event as { code?: number }).code ?? 'UNKNOWN'}`);
        },
      },
    });
  }

  /** Subscribes; resolves once the server acknowledged the connection. */
  async start(timeoutMs = 30_000): Promise<void> {
    this.#subscribe();
    const deadline = Date.now() + timeoutMs;
    while (this.subscribedAt === undefined) {
      if (Date.now() > deadline) throw new Error(`subscriber of ${this.customer.email} was not acknowledged within ${timeoutMs / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  #subscribe(): void {
    this.#dispose = this.#client.subscribe<{ myOrderUpdates: { id: string; status: string } }>(
      { query: subscription },
      {
        next: (result) => {
          if (result.data?.myOrderUpdates) this.received.push({ orderId: result.data.myOrderUpdates.id, status: result.data.myOrderUpdates.status, at: Date.now() });
          for (const error of result.errors ?? []) this.#count(String(error.extensions?.code ?? 'NO_CODE'));
        },
        error: (error) => {
          if (this.#stopping) return;
          const codes = Array.isArray(error) ? (error as { extensions?: { code?: string } }[]).map((e) => e.extensions?.code ?? 'NO_CODE') : [(error as { code?: number }).code ? `CLOSE_${(error as { code: number }).code}` : 'SUBSCRIPTION_ERROR'];
          // A close is counted by `closed` already.
          if (Array.isArray(error) || !(error as { code?: number }).code) for (const code of codes) this.#count(code);
          this.#restartSoon(codes.join(','));
        },
        complete: () => {
          if (this.#stopping) return;
          this.#count('COMPLETED_BY_SERVER');
          this.#restartSoon('COMPLETED_BY_SERVER');
        },
      },
    );
  }

  /** The subscription ended while the socket may still be up: subscribe again after a second. */
  #restartSoon(cause: string): void {
    this.#openGap(cause);
    setTimeout(() => {
      if (this.#stopping) return;
      this.#subscribe();
      // graphql-ws sends the subscribe at once on an open socket; `connected` will not fire again.
      setTimeout(() => this.#closeGap(), 1_000);
    }, 1_000);
  }

  #openGap(cause: string): void {
    const last = this.gaps.at(-1);
    if (!last || last.to !== undefined) this.gaps.push({ from: Date.now(), cause });
  }

  #closeGap(): void {
    this.subscribedAt ??= Date.now();
    const last = this.gaps.at(-1);
    if (last && last.to === undefined) last.to = Date.now();
  }

  #count(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#dispose?.();
    // Disposing a client whose socket is down rejects with the failed connect: nothing to close then.
    await Promise.resolve(this.#client.dispose()).catch(() => {});
  }
}
