/**
 * Subscriptions over plain HTTP, for clients that do not use WebSocket, on the same `/graphql`:
 *
 * - Apollo's multipart HTTP subscription protocol (what Apollo Client's HttpLink and Apollo
 *   Sandbox speak to Apollo Router): `Accept: multipart/mixed;subscriptionSpec="1.0"`, answered
 *   with `multipart/mixed;boundary="graphql";subscriptionSpec="1.0"`, one part per event
 *   (`{"payload":{…}}`), a `{}` heartbeat part every few seconds, and `--graphql--` at the end.
 * - Server-Sent Events in graphql-sse's "distinct connections" mode: `Accept: text/event-stream`,
 *   answered with `event: next` per event and `event: complete` at the end.
 *
 * Both authenticate like any HTTP request (`Authorization` header or the session cookie), end
 * when the credential expires or its session is revoked, and end the upstream subscription when
 * the client goes away. Admission happens before a stream starts,
 * in the gateway's core (gateway/pipeline/core.ts), like every transport's: a refused request
 * (not valid, over a limit, over the caller's connections) gets a JSON error response with the
 * refusal's status and code, and nothing is subscribed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FormattedExecutionResult } from 'graphql';
import { ErrorCode } from '../../platform/errors/index.ts';
import { timerAt } from '../authentication.ts';
import type { AdmittedOperation } from '../pipeline/plugin.ts';
import { isRefusal } from '../pipeline/refusal.ts';
import type { FederatedSubscriptions, SubscribeRequest } from './federated-subscriptions.ts';
import { withResponseExtensions } from '../pipeline/core.ts';

export interface HttpSubscriptionOptions {
  subscriptions: FederatedSubscriptions;
  /** Multipart heartbeat and SSE comment interval. @default 5_000 */
  heartbeatMs?: number;
}

export type Protocol = 'multipart' | 'sse';

/** How a client can subscribe here: said wherever a subscription arrives the wrong way. */
export const subscriptionTransports =
  'graphql-ws (a WebSocket to this URL), multipart HTTP (Accept: multipart/mixed;subscriptionSpec="1.0") or Server-Sent Events (Accept: text/event-stream)';

export function subscriptionProtocolOf(accept: string | undefined): Protocol | undefined {
  const value = (accept ?? '').toLowerCase();
  if (/multipart\/mixed/.test(value) && /subscriptionspec/.test(value)) return 'multipart';
  if (value.includes('text/event-stream')) return 'sse';
  return undefined;
}

/** The streams being served, so the gateway can end them when it stops. */
export class HttpSubscriptionStreams {
  readonly #open = new Set<() => void>();

  constructor(private readonly options: HttpSubscriptionOptions) {}

  get open(): number {
    return this.#open.size;
  }

  /**
   * Streams an admitted subscription until it ends or the client goes away. `ended` aborts (with
   * a GatewayRefusal as its reason) to end it early: its session was revoked.
   */
  async serve(request: IncomingMessage, response: ServerResponse, protocol: Protocol, operation: AdmittedOperation, ended?: AbortSignal): Promise<void> {
    await this.#stream(request, response, protocol, operation.connection.expiresAt, ended, {
      document: operation.document,
      operationName: operation.operationName,
      variables: operation.variables,
      context: operation.context,
    });
  }

  async #stream(
    request: IncomingMessage,
    response: ServerResponse,
    protocol: Protocol,
    expiresAt: number | undefined,
    ended: AbortSignal | undefined,
    subscription: SubscribeRequest,
  ): Promise<void> {
    const started = this.options.subscriptions.subscribe(subscription);
    const writer = protocol === 'multipart' ? multipartWriter(response) : sseWriter(response);
    response.flushHeaders();
    if (!(Symbol.asyncIterator in started)) {
      writer.next(withResponseExtensions(started, subscription.context.responseExtensions));
      writer.end();
      return;
    }
    const events = started;
    const stop = () => void events.return?.();
    this.#open.add(stop);
    const heartbeat = setInterval(() => writer.heartbeat(), this.options.heartbeatMs ?? 5_000);
    // As on a WebSocket, a stream lives no longer than the token that opened it, or its session.
    const end = () => {
      const reason: unknown = ended?.reason;
      if (isRefusal(reason)) writer.next({ errors: [reason.toClient()] });
      stop();
    };
    if (ended?.aborted) end();
    else ended?.addEventListener('abort', end, { once: true });
    const expiry =
      expiresAt === undefined
        ? undefined
        : timerAt(expiresAt, () => {
            writer.next({ errors: [{ message: 'The token has expired: sign in again', extensions: { code: ErrorCode.UNAUTHENTICATED } }] });
            stop();
          });
    // The client went away: leave, which ends the upstream subscription if it was the last one.
    response.once('close', stop);
    try {
      for await (const result of events) writer.next(withResponseExtensions(result, subscription.context.responseExtensions));
    } finally {
      clearInterval(heartbeat);
      clearTimeout(expiry);
      ended?.removeEventListener('abort', end);
      this.#open.delete(stop);
      response.off('close', stop);
      if (!response.destroyed) writer.end();
    }
  }

  /** Ends every stream (the gateway is stopping): each client gets its end of stream. */
  closeAll(): void {
    for (const stop of [...this.#open]) stop();
  }
}

interface Writer {
  next(result: FormattedExecutionResult): void;
  heartbeat(): void;
  end(): void;
}

function multipartWriter(response: ServerResponse): Writer {
  response.writeHead(200, {
    'content-type': 'multipart/mixed;boundary="graphql";subscriptionSpec="1.0"',
    'cache-control': 'no-cache',
  });
  // Every part is written with the delimiter that closes it: a client hands a part over only once
  // it sees the next delimiter (Apollo Client's parser does), so a part left open would wait for
  // the next event or heartbeat. The last delimiter then becomes the close delimiter, `--graphql--`.
  response.write('\r\n--graphql');
  const part = (json: string) => response.write(`\r\ncontent-type: application/json; charset=utf-8\r\n\r\n${json}\r\n--graphql`);
  return {
    next: (result) => part(JSON.stringify({ payload: result })),
    heartbeat: () => part('{}'),
    end: () => response.end('--\r\n'),
  };
}

function sseWriter(response: ServerResponse): Writer {
  response.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  return {
    next: (result) => response.write(`event: next\ndata: ${JSON.stringify(result)}\n\n`),
    heartbeat: () => response.write(':\n\n'),
    end: () => response.end('event: complete\ndata:\n\n'),
  };
}
