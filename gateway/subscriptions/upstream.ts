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
 * What a socket and a subscription carry is decided by the gateway's plugins, not here: each
 * (re)connection and each (re)subscription is a `SubgraphRequest` (kind `socket`: its headers
 * become the `connection_init` payload; kind `subscription`: they become the `subscribe`
 * message's `extensions`) passed to `decorate`, where the identity-signing plugin signs.
 *
 * When a socket drops (the subgraph restarts, the network cuts), the client reconnects with
 * capped back-off and re-subscribes every subscription that was active on it, freshly decorated:
 * subscribers notice nothing (docs/decisions/0007). If the subgraph does not come back within the
 * reconnection budget (a time, long enough for a supervised restart), every subscription on the
 * socket ends with SUBGRAPH_UNAVAILABLE. A socket that stops answering keep-alive pings is
 * terminated, which counts as a drop.
 *
 * Resumable subscriptions (platform/graphql/subscription-position.ts, docs/decisions/0020): every
 * `subscribe` asks for positions; a subgraph that reports them gets, on each re-subscription and
 * each renewal, the position of the last event delivered, and sends what came after it. Events at
 * or before that position are dropped, checkpoints are never delivered. So nothing committed
 * during a drop is lost and nothing is delivered twice; a renewal hands over as soon as the next
 * leg has answered.
 *
 * A subgraph ends a subscription when its identity expires (IDENTITY_EXPIRED, docs/decisions/0011),
 * so each one is renewed before then, make-before-break: a second subscription (the next "leg")
 * starts with a fresh identity while the first goes on delivering; as soon as both have sent the
 * same event they are in step and the first is completed; otherwise the first is completed just
 * before it expires, and the next leg's events that the first had not sent are delivered then.
 * Subscribers see neither a gap nor a repeated event. (A resumable subscription hands over by
 * position instead, see above.)
 */
import { createClient, type Client } from 'graphql-ws';
import { GraphQLError, type ExecutionResult } from 'graphql';
import { decodeJwt } from 'jose';
import WebSocket from 'ws';
import { ErrorCode } from '../../platform/errors/index.ts';
import { parsePosition, positionExtension, resumeAfterExtension } from '../../platform/graphql/subscription-position.ts';
import { gatewayIdentityHeader } from '../../platform/identity/gateway-identity.ts';
import { anonymous, type Identity } from '../../platform/identity/identity.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { errorFields } from '../../platform/logging/logger.ts';
import type { SubgraphRequest } from '../pipeline/plugin.ts';

export interface UpstreamOptions {
  /**
   * Decorates each subgraph socket (`kind: 'socket'`: its headers become the `connection_init`
   * payload) and each subscription (`kind: 'subscription'`: its headers become the `subscribe`
   * message's `extensions`), on every (re)connection and (re)subscription: the plugins'
   * `onSubgraphRequest`. Throwing refuses the subscription with that error.
   */
  decorate: (request: SubgraphRequest) => Promise<void>;
  log: Logger;
  /**
   * How long the gateway keeps reconnecting to a subgraph whose socket dropped before its
   * subscriptions end with SUBGRAPH_UNAVAILABLE: longer than a supervised restart (the
   * supervisor's back-off of up to ~10 s plus a start of several seconds on a busy machine).
   * @default 60_000
   */
  reconnectBudgetMs?: number;
  /** First back-off; doubles per attempt up to `maxRetryWaitMs`, with jitter. @default 250 */
  retryWaitMs?: number;
  /** The back-off's cap: a subgraph that is back is reconnected within about this. @default 2_000 */
  maxRetryWaitMs?: number;
  /** Ping each subgraph socket this often... @default 10_000 */
  keepAliveMs?: number;
  /** ...and terminate it when no pong comes back within this. @default 5_000 */
  pongTimeoutMs?: number;
  /**
   * Lifetime of a subscription's identity when its signature does not tell (no readable `exp` in
   * `extensions["x-commerce-identity"]`): the subscription is renewed before this has passed.
   * @default 300_000, the signer's subscription lifetime
   */
  identityTtlMs?: number;
  /**
   * Start renewing a subscription this long before its identity expires (at most half of the
   * identity's lifetime). @default 30_000
   */
  renewBeforeExpiryMs?: number;
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

type Options = Required<Omit<UpstreamOptions, 'decorate' | 'log'>> & Pick<UpstreamOptions, 'decorate' | 'log'>;

interface Connection {
  client: Client;
  /** The subscriptions on this socket (also those still being decorated). */
  upstreams: Set<RenewedSubscription>;
}

export function scopeKeyOf(identity: Identity): string {
  return `${identity.customerId ?? ''}|${[...identity.roles].sort().join(',')}`;
}

export class UpstreamSubscriptions {
  readonly #options: Options;
  readonly #connections = new Map<string, Connection>();
  readonly #counters = { reconnections: 0, renewals: 0 };

  constructor(options: UpstreamOptions) {
    this.#options = {
      reconnectBudgetMs: 60_000,
      retryWaitMs: 250,
      maxRetryWaitMs: 2_000,
      keepAliveMs: 10_000,
      pongTimeoutMs: 5_000,
      identityTtlMs: 300_000,
      renewBeforeExpiryMs: 30_000,
      ...options,
    };
    for (const name of ['identityTtlMs', 'renewBeforeExpiryMs', 'reconnectBudgetMs'] as const) {
      const value = this.#options[name];
      if (!Number.isFinite(value) || value <= 0) throw new Error(`UpstreamSubscriptions: ${name} must be a positive number of milliseconds, got ${value}`);
    }
  }

  /** Subscriptions open at subgraphs (one being renewed counts once). */
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
    return this.#counters.reconnections;
  }

  /** Subscriptions renewed with a fresh identity before theirs expired (since start). */
  get renewals(): number {
    return this.#counters.renewals;
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
    const subscription = new RenewedSubscription(request, sink, owner.client, this.#options, this.#counters, () => {
      owner.upstreams.delete(subscription);
      if (owner.upstreams.size > 0) return;
      if (this.#connections.get(key) === owner) this.#connections.delete(key);
      disposeQuietly(owner.client);
    });
    owner.upstreams.add(subscription);
    subscription.start();
    // Disposing each leg sends `complete` to the subgraph, which stops the subscription there.
    return () => subscription.end();
  }

  /** Closes every subgraph socket; their subscriptions end (used when the gateway stops). */
  async close(): Promise<void> {
    const connections = [...this.#connections.values()];
    this.#connections.clear();
    for (const connection of connections) for (const subscription of connection.upstreams) subscription.stopTimers();
    await Promise.all(connections.map((connection) => disposeQuietly(connection.client)));
  }

  #connect(request: UpstreamRequest): Connection {
    const { decorate, log } = this.#options;
    const url = request.url.replace(/^http/i, 'ws');
    let pongTimer: NodeJS.Timeout | undefined;
    /** Subscriptions sent before a reconnection carry extensions that may have expired since. */
    let connectedBefore = false;
    /** Since when the socket has been down (undefined while it is up): the budget runs from here. */
    let downSince: number | undefined;
    const upstreams = new Set<RenewedSubscription>();
    const client = createClient({
      url,
      webSocketImpl: WebSocket,
      lazy: true,
      lazyCloseTimeout: 0,
      keepAlive: this.#options.keepAliveMs,
      // Bounded by time, not by a count of attempts: what must be outlasted is a restart's duration.
      retryAttempts: Number.MAX_SAFE_INTEGER,
      shouldRetry: () => {
        downSince ??= Date.now();
        if (Date.now() - downSince < this.#options.reconnectBudgetMs) return true;
        log.warn('subgraph did not come back within the reconnection budget: its subscriptions end', { subgraph: request.subgraph, budgetMs: this.#options.reconnectBudgetMs });
        return false;
      },
      retryWait: async (retries) => {
        const wait = Math.min(this.#options.retryWaitMs * 2 ** retries, this.#options.maxRetryWaitMs);
        await new Promise((resolve) => setTimeout(resolve, wait / 2 + Math.random() * (wait / 2)));
      },
      // Freshly decorated on every (re)connection, the socket and every subscription it re-sends
      // (graphql-ws re-sends the same payload objects once this resolves and the socket is
      // acknowledged): a resumed subscription never presents an expired identity.
      connectionParams: async () => {
        if (connectedBefore) await Promise.all([...upstreams].map((subscription) => subscription.redecorate()));
        const headers: Record<string, string> = {};
        await decorate({ kind: 'socket', subgraph: request.subgraph, url: request.url, identity: anonymous, context: undefined, headers });
        return headers;
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
          connectedBefore = true;
          downSince = undefined;
          if (!wasRetry) return;
          this.#counters.reconnections++;
          log.info('subgraph socket reconnected: subscriptions resumed', { subgraph: request.subgraph });
          for (const upstream of upstreams) upstream.resubscribed();
        },
        closed: (event) => {
          clearTimeout(pongTimer);
          downSince ??= Date.now();
          const { code, reason } = event as { code?: number; reason?: string };
          if (code !== 1000) log.debug('subgraph socket closed', { subgraph: request.subgraph, code, reason });
        },
        error: (error) => log.debug('subgraph socket error', { subgraph: request.subgraph, ...errorFields(error) }),
      },
    });
    return { client, upstreams };
  }
}

type Payload = { query: string; variables: Record<string, unknown>; operationName?: string; extensions: Record<string, unknown> };

/** One subscription at the subgraph under one identity: a subscription is renewed by starting another. */
interface Leg {
  /** Sent with `subscribe`; graphql-ws re-sends this same object after a reconnection. */
  readonly payload: Payload;
  /** When it was decorated, and when the identity it carries expires (epoch ms). */
  decoratedAt: number;
  expiresAt: number;
  /** Set once it is sent. */
  dispose?: () => void;
  /** The last event it sent, and that as JSON (computed when compared). */
  latest?: ExecutionResult;
  latestJson?: string;
  /** A next leg's events, held until it takes over. */
  held: ExecutionResult[];
  ended: boolean;
}

/** A next leg holds at most this many events; past that it takes over at once. */
const maxHeldEvents = 64;

/**
 * A subscription as its subscriber sees it, served by one leg at a time (`current`) and, while it
 * is renewed, a second one (`next`) that takes over from it.
 */
class RenewedSubscription {
  #current: Leg | undefined;
  #next: Leg | undefined;
  /** The position of the last event delivered (or checkpoint received), once the subgraph reports positions. */
  #position: bigint | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #handOverTimer: NodeJS.Timeout | undefined;
  #ended = false;

  constructor(
    private readonly request: UpstreamRequest,
    private readonly sink: UpstreamSink,
    private readonly client: Client,
    private readonly options: Options,
    private readonly counters: { renewals: number },
    private readonly release: () => void,
  ) {}

  start(): void {
    this.#current = this.#startLeg();
  }

  /** Ends it at the subgraph (both legs), without telling the subscriber. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.stopTimers();
    this.#stopLeg(this.#current);
    this.#stopLeg(this.#next);
    this.release();
  }

  stopTimers(): void {
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#handOverTimer);
  }

  /** Fresh extensions for the legs a reconnection re-sends, and renewal timed by the new identity. */
  async redecorate(): Promise<void> {
    const legs = [this.#current, this.#next].filter((leg): leg is Leg => leg !== undefined && !leg.ended && leg.dispose !== undefined);
    await Promise.all(legs.map((leg) => this.#decorate(leg)));
    if (this.#current && legs.includes(this.#current)) this.#scheduleRenewal();
  }

  resubscribed(): void {
    // Resumed by position, it repeats nothing: only a subscription without positions may.
    if (this.#position === undefined) this.sink.resubscribed?.();
  }

  #startLeg(): Leg {
    const { request } = this;
    const leg: Leg = {
      payload: { query: request.query, variables: request.variables, ...(request.operationName ? { operationName: request.operationName } : {}), extensions: {} },
      decoratedAt: Date.now(),
      expiresAt: Number.POSITIVE_INFINITY,
      held: [],
      ended: false,
    };
    this.#decorate(leg).then(
      () => {
        if (leg.ended || this.#ended) return;
        leg.dispose = this.client.subscribe<Record<string, unknown>>(leg.payload, {
          next: (result) => {
            if (!leg.ended && !this.#ended) this.#onNext(leg, result as ExecutionResult);
          },
          error: (error) => {
            if (leg.ended || this.#ended) return;
            leg.ended = true;
            this.#onError(leg, upstreamErrors(request.subgraph, error));
          },
          complete: () => {
            if (leg.ended || this.#ended) return;
            leg.ended = true;
            this.#onComplete(leg);
          },
        });
        if (leg === this.#current) this.#scheduleRenewal();
      },
      (error: unknown) => {
        if (leg.ended || this.#ended) return;
        leg.ended = true;
        // Refused while decorating (a plugin said no): the subscription cannot go on.
        this.end();
        this.sink.error([refusalOf(error, this.options.log)]);
      },
    );
    return leg;
  }

  /** The leg's `extensions` from the plugins, and when the identity in them expires. */
  async #decorate(leg: Leg): Promise<void> {
    const { request } = this;
    const headers: Record<string, string> = {};
    await this.options.decorate({ kind: 'subscription', subgraph: request.subgraph, url: request.url, identity: request.identity, context: undefined, headers });
    // The same object: graphql-ws re-sends it as it is after a reconnection.
    for (const name of Object.keys(leg.payload.extensions)) delete leg.payload.extensions[name];
    Object.assign(leg.payload.extensions, headers);
    // Where to resume: after the last event delivered; null asks a new subscription for positions.
    leg.payload.extensions[resumeAfterExtension] = this.#position === undefined ? null : String(this.#position);
    leg.decoratedAt = Date.now();
    leg.expiresAt = expiryOf(headers[gatewayIdentityHeader]) ?? leg.decoratedAt + this.options.identityTtlMs;
  }

  /** Starts the next leg before the current one's identity expires, and hands over just before it does. */
  #scheduleRenewal(): void {
    const current = this.#current;
    this.stopTimers();
    if (!current || this.#ended || !Number.isFinite(current.expiresAt)) return;
    const lead = Math.min(this.options.renewBeforeExpiryMs, Math.max(0, current.expiresAt - current.decoratedAt) / 2);
    this.#renewTimer = setTimeout(() => {
      if (this.#ended || this.#next || this.#current !== current) return;
      this.counters.renewals++;
      this.#next = this.#startLeg();
    }, Math.max(0, current.expiresAt - lead - Date.now()));
    // A quarter of the lead before expiry, the next leg takes over even if not in step yet.
    this.#handOverTimer = setTimeout(() => {
      if (!this.#ended && this.#current === current && this.#next?.dispose) this.#handOver(true);
    }, Math.max(0, current.expiresAt - lead / 4 - Date.now()));
  }

  #onNext(leg: Leg, result: ExecutionResult): void {
    const position = parsePosition(result.extensions?.[positionExtension]);
    if (position !== undefined) return this.#onPositioned(leg, result, position);
    leg.latest = result;
    leg.latestJson = undefined;
    if (leg === this.#current) this.sink.next(result);
    else if (leg === this.#next) leg.held.push(result);
    else return;
    const current = this.#current;
    const next = this.#next;
    if (!current || !next || current.latest === undefined || next.latest === undefined) return;
    // In step: both sent the same event last, so from here on the next leg sends what the
    // current one would have; what it holds, the subscriber already has.
    if (jsonOf(current) === jsonOf(next)) this.#handOver(false);
    else if (next.held.length > maxHeldEvents) this.#handOver(true);
  }

  /**
   * An event (or checkpoint) with its position. A next leg that answers takes over at once: it
   * sends everything after the position it was given, and what the subscriber already has is
   * dropped by position. Checkpoints only move the position.
   */
  #onPositioned(leg: Leg, result: ExecutionResult, position: bigint): void {
    if (leg === this.#next) this.#handOver(false);
    if (leg !== this.#current) return;
    if (this.#position !== undefined && position <= this.#position) return;
    this.#position = position;
    if (result.data === undefined && !result.errors?.length) return;
    leg.latest = result;
    leg.latestJson = undefined;
    this.sink.next(result);
  }

  #onError(leg: Leg, errors: readonly GraphQLError[]): void {
    const expired = errors.some((error) => error.extensions?.code === 'IDENTITY_EXPIRED');
    if (leg === this.#current && expired && this.#position !== undefined) {
      // Expired before a renewal took over (a long drop, a slow subgraph): resumed by position
      // on the next leg, or a fresh one, the subscriber misses nothing.
      if (this.#next) return this.#handOver(false);
      this.counters.renewals++;
      this.#current = this.#startLeg();
      return;
    }
    if (leg === this.#current && expired && this.#next?.dispose) return this.#handOver(true);
    if (leg === this.#next && expired) {
      // Cannot happen with a fresh identity, but the current leg still serves: renew again later.
      this.#next = undefined;
      return this.#scheduleRenewal();
    }
    this.end();
    this.sink.error(errors);
  }

  #onComplete(leg: Leg): void {
    // The source ended at the subgraph: whatever the next leg holds that was not sent goes first.
    if (leg === this.#next) this.#handOver(true);
    this.end();
    this.sink.complete();
  }

  /**
   * The next leg takes over; the current one is completed at the subgraph. With `catchUp`, the
   * next leg's held events the current one had not sent are delivered: those after the last one
   * equal to the current's latest event (all of them when there is none).
   */
  #handOver(catchUp: boolean): void {
    const current = this.#current;
    const next = this.#next;
    if (!next) return;
    this.#current = next;
    this.#next = undefined;
    const held = next.held;
    next.held = [];
    if (catchUp && held.length > 0) {
      const latest = current?.latest !== undefined ? jsonOf(current) : undefined;
      let from = 0;
      if (latest !== undefined) {
        for (let index = held.length - 1; index >= 0; index--) {
          if (JSON.stringify(held[index]) === latest) {
            from = index + 1;
            break;
          }
        }
      }
      for (const event of held.slice(from)) this.sink.next(event);
    }
    this.#stopLeg(current);
    this.#scheduleRenewal();
  }

  #stopLeg(leg: Leg | undefined): void {
    if (!leg || leg.ended) return;
    leg.ended = true;
    leg.dispose?.();
  }
}

/** When the signed identity in a subscription's extensions expires (epoch ms), if it says. */
function expiryOf(token: string | undefined): number | undefined {
  if (!token) return undefined;
  try {
    const { exp } = decodeJwt(token);
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** The leg's latest event as JSON (how two legs are compared). */
function jsonOf(leg: Leg): string | undefined {
  if (leg.latest === undefined) return undefined;
  return (leg.latestJson ??= JSON.stringify(leg.latest));
}

/** What the subscriber sees when a plugin refuses a subscription: the refusal itself, or an internal error. */
function refusalOf(error: unknown, log: Logger): GraphQLError {
  if (error instanceof GraphQLError) return error;
  log.error('decorating a subgraph subscription failed', errorFields(error));
  return new GraphQLError('The subscription could not be started', { extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } });
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
    new GraphQLError('A service this subscription depends on is unreachable and did not come back in time: the subscription ended, subscribe again', {
      extensions: { code: ErrorCode.SUBGRAPH_UNAVAILABLE, serviceName: subgraph },
    }),
  ];
}
