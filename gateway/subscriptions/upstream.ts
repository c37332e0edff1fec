/**
 * The gateway's side of subgraph subscriptions: graphql-ws (`graphql-transport-ws`) sockets to
 * subgraphs, ONE per subgraph, multiplexing the subscriptions of every caller. The socket proves
 * at `connection_init` that it is the gateway's (an identity signed by the gateway); each
 * `subscribe` carries its caller's signed identity in `extensions["x-commerce-identity"]`, as an
 * HTTP fetch carries it in a header, and the subgraph authorizes each operation by it. A socket
 * is opened for the first subscription to its subgraph and closed with the last one. One socket
 * rather than one per caller: sockets, not subscriptions, are what a gateway runs out of
 * (file descriptors, memory) with many distinct callers (docs/decisions/0007).
 *
 * When a socket drops (the subgraph restarts, the network cuts), the client reconnects with
 * back-off and re-subscribes every subscription that was active on it, with a freshly signed
 * identity: subscribers notice nothing (docs/decisions/0007). If the subgraph does not come back
 * within the retry budget, every subscription on the socket ends with SUBGRAPH_UNAVAILABLE.
 * A socket that stops answering keep-alive pings is terminated, which counts as a drop.
 */
import { createClient, type Client } from 'graphql-ws';
import { GraphQLError, type ExecutionResult } from 'graphql';
import WebSocket from 'ws';
import { ErrorCode } from '../../platform/errors/index.ts';
import type { GatewayIdentitySigner } from '../../platform/identity/gateway-identity.ts';
import { gatewayIdentityHeader } from '../../platform/identity/gateway-identity.ts';
import { anonymous, type Identity } from '../../platform/identity/identity.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { errorFields } from '../../platform/logging/logger.ts';

export interface UpstreamOptions {
  signer: GatewayIdentitySigner;
  log: Logger;
  /** Reconnection attempts after a drop before subscriptions end with SUBGRAPH_UNAVAILABLE. @default 8 */
  retryAttempts?: number;
  /** First back-off; doubles per attempt up to `maxRetryWaitMs`, with jitter. @default 250 */
  retryWaitMs?: number;
  /** @default 5_000 */
  maxRetryWaitMs?: number;
  /** Ping each subgraph socket this often... @default 10_000 */
  keepAliveMs?: number;
  /** ...and terminate it when no pong comes back within this. @default 5_000 */
  pongTimeoutMs?: number;
}

export interface UpstreamRequest {
  subgraph: string;
  /** The subgraph's HTTP GraphQL URL; the socket goes to the same URL with ws(s). */
  url: string;
  identity: Identity;
  query: string;
  operationName?: string;
  variables: Record<string, unknown>;
}

export interface UpstreamSink {
  next(result: ExecutionResult): void;
  /** The subscription ended with errors (refused by the subgraph, or the subgraph is gone). */
  error(errors: readonly GraphQLError[]): void;
  complete(): void;
  /** The socket came back after a drop and the subscription was sent again. */
  resubscribed?(): void;
}

/** A subscription at a subgraph: its payload is re-signed on every (re)connection of its socket. */
interface Upstream {
  identity: Identity;
  payload: { query: string; variables: Record<string, unknown>; operationName?: string; extensions: Record<string, unknown> };
  sink: UpstreamSink;
}

interface Connection {
  client: Client;
  /** The subscriptions on this socket (also those still being signed). */
  upstreams: Set<Upstream>;
}

export function scopeKeyOf(identity: Identity): string {
  return `${identity.customerId ?? ''}|${[...identity.roles].sort().join(',')}`;
}

export class UpstreamSubscriptions {
  readonly #options: Required<Omit<UpstreamOptions, 'signer' | 'log'>> & Pick<UpstreamOptions, 'signer' | 'log'>;
  readonly #connections = new Map<string, Connection>();
  #reconnections = 0;

  constructor(options: UpstreamOptions) {
    this.#options = {
      retryAttempts: 8,
      retryWaitMs: 250,
      maxRetryWaitMs: 5_000,
      keepAliveMs: 10_000,
      pongTimeoutMs: 5_000,
      ...options,
    };
  }

  /** Subscriptions open at subgraphs. */
  get activeSubscriptions(): number {
    let active = 0;
    for (const connection of this.#connections.values()) active += connection.upstreams.size;
    return active;
  }

  /** Sockets open (or opening) to subgraphs. */
  get connections(): number {
    return this.#connections.size;
  }

  /** Times a subgraph socket dropped and was connected again, its subscriptions re-sent (since start). */
  get reconnections(): number {
    return this.#reconnections;
  }

  /** Starts the subscription at the subgraph; the returned function ends it. */
  subscribe(request: UpstreamRequest, sink: UpstreamSink): () => void {
    const key = `${request.subgraph}\0${request.url}`;
    let connection = this.#connections.get(key);
    if (!connection) {
      connection = this.#connect(request);
      this.#connections.set(key, connection);
    }
    const owner = connection;
    const upstream: Upstream = {
      identity: request.identity,
      payload: { query: request.query, variables: request.variables, ...(request.operationName ? { operationName: request.operationName } : {}), extensions: {} },
      sink,
    };
    owner.upstreams.add(upstream);
    let ended = false;
    let dispose: (() => void) | undefined;
    const release = () => {
      owner.upstreams.delete(upstream);
      if (owner.upstreams.size === 0) {
        if (this.#connections.get(key) === owner) this.#connections.delete(key);
        disposeQuietly(owner.client);
      }
    };
    const start = (token: string) => {
      if (ended) return;
      upstream.payload.extensions[gatewayIdentityHeader] = token;
      dispose = owner.client.subscribe<Record<string, unknown>>(upstream.payload, {
        next: (result) => {
          if (!ended) sink.next(result as ExecutionResult);
        },
        error: (error) => {
          if (ended) return;
          ended = true;
          release();
          sink.error(upstreamErrors(request.subgraph, error));
        },
        complete: () => {
          if (ended) return;
          ended = true;
          release();
          sink.complete();
        },
      });
    };
    this.#options.signer.sign(request.identity).then(start, (error: unknown) => {
      if (ended) return;
      ended = true;
      release();
      this.#options.log.error('signing an identity for a subgraph subscription failed', errorFields(error));
      sink.error([new GraphQLError('The subscription could not be started', { extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } })]);
    });
    return () => {
      if (ended) return;
      ended = true;
      dispose?.(); // sends `complete` to the subgraph, which stops the subscription there
      release();
    };
  }

  /** Closes every subgraph socket; their subscriptions end (used when the gateway stops). */
  async close(): Promise<void> {
    const connections = [...this.#connections.values()];
    this.#connections.clear();
    await Promise.all(connections.map((connection) => disposeQuietly(connection.client)));
  }

  #connect(request: UpstreamRequest): Connection {
    const { signer, log } = this.#options;
    const url = request.url.replace(/^http/i, 'ws');
    let pongTimer: NodeJS.Timeout | undefined;
    const upstreams = new Set<Upstream>();
    const client = createClient({
      url,
      webSocketImpl: WebSocket,
      lazy: true,
      lazyCloseTimeout: 0,
      keepAlive: this.#options.keepAliveMs,
      retryAttempts: this.#options.retryAttempts,
      shouldRetry: () => true,
      retryWait: async (retries) => {
        const wait = Math.min(this.#options.retryWaitMs * 2 ** retries, this.#options.maxRetryWaitMs);
        await new Promise((resolve) => setTimeout(resolve, wait / 2 + Math.random() * (wait / 2)));
      },
      // Fresh signatures on every (re)connection, for the socket and for every subscription it
      // re-sends (graphql-ws re-sends the same payload objects once this resolves and the socket
      // is acknowledged): a resumed subscription never presents an expired identity.
      connectionParams: async () => {
        await Promise.all(
          [...upstreams].map(async (upstream) => {
            upstream.payload.extensions[gatewayIdentityHeader] = await signer.sign(upstream.identity);
          }),
        );
        return { [gatewayIdentityHeader]: await signer.sign(anonymous) };
      },
      on: {
        ping: (received) => {
          if (received) return;
          clearTimeout(pongTimer);
          pongTimer = setTimeout(() => {
            log.warn('subgraph socket missed its pong: reconnecting', { subgraph: request.subgraph });
            client.terminate();
          }, this.#options.pongTimeoutMs);
        },
        pong: (received) => {
          if (received) clearTimeout(pongTimer);
        },
        connected: (_socket, _payload, wasRetry) => {
          if (!wasRetry) return;
          this.#reconnections++;
          log.info('subgraph socket reconnected: subscriptions resumed', { subgraph: request.subgraph });
          for (const upstream of upstreams) upstream.sink.resubscribed?.();
        },
        closed: (event) => {
          clearTimeout(pongTimer);
          const { code, reason } = event as { code?: number; reason?: string };
          if (code !== 1000) log.debug('subgraph socket closed', { subgraph: request.subgraph, code, reason });
        },
        error: (error) => log.debug('subgraph socket error', { subgraph: request.subgraph, ...errorFields(error) }),
      },
    });
    return { client, upstreams };
  }
}

/**
 * Disposing a client that is waiting to retry rejects with "All Subscriptions Gone" (it awaits its
 * pending connection): expected when its last subscription just ended, so not an error.
 */
function disposeQuietly(client: Client): Promise<void> {
  return Promise.resolve(client.dispose()).catch(() => {});
}

/** What subscribers see when a subgraph ends a subscription with an error. */
function upstreamErrors(subgraph: string, error: unknown): GraphQLError[] {
  // The subgraph's own `error` message: validation errors of the operation it was sent.
  if (Array.isArray(error)) {
    return error.map(
      (item: { message?: string; extensions?: Record<string, unknown> }) =>
        new GraphQLError(item.message ?? 'The subgraph refused the subscription', { extensions: { code: 'INTERNAL_SERVER_ERROR', ...item.extensions, serviceName: subgraph } }),
    );
  }
  return [
    new GraphQLError(`The ${subgraph} subgraph is unreachable and did not come back in time: the subscription ended, subscribe again`, {
      extensions: { code: ErrorCode.SUBGRAPH_UNAVAILABLE, serviceName: subgraph },
    }),
  ];
}
