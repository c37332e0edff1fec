/**
 * Federated subscriptions, whatever the transport (graphql-ws, multipart HTTP, SSE):
 *
 *   client operation ──plan──▶ primary fetch ──graphql-ws──▶ owning subgraph
 *                                                              │ events
 *   client ◀── result shaped to the operation ◀── rest of the plan (other subgraphs)
 *
 * Sharing: identical primary fetches (same subgraph, operation and variables) of the same caller
 * share ONE upstream subscription; the callers' identities never mix, because the subgraph
 * authorizes each subscription by its caller. Identical client operations on a shared upstream
 * share the resolution of each event too, so 10,000 clients watching one order cost one upstream
 * subscription and one plan execution per event, not 10,000. The upstream ends when its last
 * client leaves.
 *
 * Late joiners: a client gets what a lone subscriber would. It joins a shared upstream directly
 * while that has sent nothing yet. Once it has, the gateway cannot tell a field that starts with
 * the current state (`orderStatusChanged`) from one that sends only later changes
 * (`myOrderUpdates`), so the joiner gets its own catch-up upstream subscription, and moves onto
 * the shared one when both have sent the same event. If the catch-up's first event is the one the
 * shared upstream had already sent, the subgraph starts that subscription with the state: later
 * joiners get its latest event at once, without a catch-up.
 *
 * Each client has its own bounded queue: one that does not read its events is let go with
 * SUBSCRIBER_TOO_SLOW rather than holding the gateway's memory for everybody.
 */
import { randomUUID } from 'node:crypto';
import { GraphQLError, type DocumentNode, type ExecutionResult, type FormattedExecutionResult } from 'graphql';
import { PushIterator } from '../../platform/async/push-iterator.ts';
import { ErrorCode } from '../../platform/errors/index.ts';
import { formatGraphQLError } from '../../platform/errors/masking.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { errorFields } from '../../platform/logging/logger.ts';
import type { GatewayContext } from '../context.ts';
import { operationRewriteOf } from '../pipeline/core.ts';
import type { OperationRewrite } from '../pipeline/plugin.ts';
import type { Federation, PlannedSubscription } from './federation.ts';
import { scopeKeyOf, type UpstreamRequest, type UpstreamSubscriptions } from './upstream.ts';

export interface SubscribeRequest {
  document: DocumentNode;
  operationName?: string | null;
  variables?: Record<string, unknown> | null;
  context: GatewayContext;
}

export type SubscriptionEvents = AsyncIterableIterator<FormattedExecutionResult>;

export interface FederatedSubscriptionsOptions {
  federation: Federation;
  upstreams: UpstreamSubscriptions;
  production: boolean;
  log: Logger;
  /** Events queued for one client before it is let go. @default 256 */
  maxQueuedEventsPerClient?: number;
}

/** One client's subscription, and where it is served: that moves when a catch-up upstream merges. */
interface Member {
  client: PushIterator<FormattedExecutionResult>;
  upstream: SharedUpstream;
  view: View;
}

/** Clients of one identical operation (same text, name, variables and caller) on one upstream. */
interface View {
  key: string;
  /** Its operation's plan: operations with the same primary fetch share an upstream, not the rest of their plans. */
  planned: PlannedSubscription;
  request: { document: DocumentNode; operationName: string | null; variables: Record<string, unknown>; context: GatewayContext };
  /** What a plugin rewrote the client's operation into (authorization): each event's result is completed by it. */
  rewrite: OperationRewrite | undefined;
  /** The clients events are delivered to. */
  clients: Set<PushIterator<FormattedExecutionResult>>;
  /** The view's members, including those about to be added to `clients`. */
  members: Set<Member>;
  /** Events are resolved and delivered in the order the subgraph sent them. */
  chain: Promise<void>;
  /** The last result delivered: replayed to clients that join, and compared after a re-subscription. */
  lastResult?: FormattedExecutionResult;
  /** After a re-subscription, an event identical to the last one delivered is not sent twice. */
  skipRepeat: boolean;
}

interface SharedUpstream {
  key: string;
  /** The latest event the subgraph sent. */
  latest?: ExecutionResult;
  /** `latest` as JSON, computed when compared. */
  latestJson?: string;
  /** Events the subgraph sent so far. */
  received: number;
  /**
   * Proven to start with the current state (a catch-up upstream's first event was the event this
   * one had already sent): a client that joins gets the latest event, resolved for its operation.
   */
  startsWithState: boolean;
  /** Set on a catch-up upstream: the shared upstream it merges into, and how far that was when it started. */
  catchingUp?: { target: SharedUpstream; targetReceived: number };
  /** Catch-up upstreams that will merge into this one. */
  catchUps: Set<SharedUpstream>;
  views: Map<string, View>;
  leave: () => void;
  /** Left, ended or merged: nothing more is delivered from it. */
  closed: boolean;
}

export class FederatedSubscriptions {
  readonly #options: FederatedSubscriptionsOptions;
  readonly #upstreams = new Map<string, SharedUpstream>();
  /** Per upstream key, the catch-up upstream that has sent nothing yet: later late joiners share it. */
  readonly #joinableCatchUps = new Map<string, SharedUpstream>();
  #clients = 0;
  #eventsPushed = 0;
  #slowSubscribersDropped = 0;

  constructor(options: FederatedSubscriptionsOptions) {
    this.#options = options;
  }

  /** Client subscriptions being served. */
  get clients(): number {
    return this.#clients;
  }

  /** Events handed to client subscriptions since start (a joiner's replay of the latest included): what /metrics counts. */
  get eventsPushed(): number {
    return this.#eventsPushed;
  }

  /** Client subscriptions let go since start because too many events waited for them (SUBSCRIBER_TOO_SLOW). */
  get slowSubscribersDropped(): number {
    return this.#slowSubscribersDropped;
  }

  /** Distinct upstream subscriptions the clients share (catch-up upstreams not counted). */
  get sharedUpstreams(): number {
    return this.#upstreams.size;
  }

  /**
   * Starts a client subscription: its events, or a single result with errors when it cannot be
   * planned. The operation must already be validated against the API schema.
   */
  subscribe(request: SubscribeRequest): SubscriptionEvents | FormattedExecutionResult {
    const { federation } = this.#options;
    // Authorization may have removed fields (the subscription's own: nothing left, no subgraph is called).
    const rewrite = operationRewriteOf(request.context);
    if (rewrite && !rewrite.document) return this.#formatResult(rewrite.complete({ data: {} }) as ExecutionResult);
    const document = rewrite?.document ?? request.document;
    let planned: PlannedSubscription;
    try {
      planned = federation.planSubscription(document, request.operationName);
    } catch (error) {
      return { errors: [this.#format(error instanceof GraphQLError ? error : new GraphQLError('The subscription could not be planned', { originalError: error as Error }))] };
    }
    const variables = request.variables ?? {};
    const primaryVariables = federation.primaryVariables(planned, variables);
    const endpoint = federation.endpoints.get(planned.primary.serviceName)!;
    const scope = scopeKeyOf(request.context.identity);
    const upstreamKey = JSON.stringify([endpoint.name, scope, planned.primary.operation, sorted(primaryVariables)]);
    const viewKey = JSON.stringify([planned.operationKey, rewrite?.key ?? null, sorted(variables)]);
    const open = () =>
      this.#open(upstreamKey, {
        subgraph: endpoint.name,
        url: endpoint.url,
        identity: request.context.identity,
        query: planned.primary.operation,
        ...(planned.primary.operationName ? { operationName: planned.primary.operationName } : {}),
        variables: primaryVariables,
      });

    let upstream = this.#upstreams.get(upstreamKey);
    if (!upstream) {
      upstream = open();
      this.#upstreams.set(upstreamKey, upstream);
    } else if (upstream.latest !== undefined && !upstream.startsWithState) {
      // A late joiner, and whether the subgraph would start it with the current state (then the
      // latest event is its first) or only with later changes (then the latest event is the past)
      // is not known: it gets its own upstream subscription, which merges into the shared one as
      // soon as both have sent the same event (docs/decisions/0007).
      const target = upstream;
      upstream = this.#joinableCatchUps.get(upstreamKey);
      if (!upstream) {
        upstream = open();
        upstream.catchingUp = { target, targetReceived: target.received };
        target.catchUps.add(upstream);
        this.#joinableCatchUps.set(upstreamKey, upstream);
      }
    }
    let view = upstream.views.get(viewKey);
    const joinsExistingView = view !== undefined;
    if (!view) {
      view = {
        key: viewKey,
        planned,
        rewrite,
        request: {
          document,
          operationName: request.operationName ?? null,
          variables,
          // Shared by the view's clients: the same caller; one id for the requests it makes.
          context: { identity: request.context.identity, requestId: `subscription:${randomUUID()}` },
        },
        clients: new Set(),
        members: new Set(),
        chain: Promise.resolve(),
        skipRepeat: false,
      };
      upstream.views.set(viewKey, view);
    }
    const member: Member = { client: new PushIterator<FormattedExecutionResult>(), upstream, view };
    const client = member.client;
    client.setCleanup(async () => {
      this.#clients--;
      this.#leave(member);
    });
    this.#clients++;
    view.members.add(member);
    if (joinsExistingView) {
      // After the events already on their way to the view's clients: the latest one, then live.
      // (Only an upstream that has sent nothing yet, or that starts with the state, is joined.)
      const owner = view;
      owner.chain = owner.chain.then(() => {
        if (client.done) return;
        if (owner.lastResult) {
          client.push(owner.lastResult);
          this.#eventsPushed++;
        }
        owner.clients.add(client);
      });
    } else {
      view.clients.add(client);
      if (upstream.latest) this.#deliver(view, upstream.latest);
    }
    return client;
  }

  #open(key: string, request: UpstreamRequest): SharedUpstream {
    const shared: SharedUpstream = { key, received: 0, startsWithState: false, catchUps: new Set(), views: new Map(), leave: () => {}, closed: false };
    shared.leave = this.#options.upstreams.subscribe(request, {
      next: (event) => {
        if (shared.closed) return;
        shared.latest = event;
        shared.latestJson = undefined;
        shared.received++;
        for (const view of shared.views.values()) this.#deliver(view, event);
        // Started: a client joining now would be given this event, which may be the past.
        if (this.#joinableCatchUps.get(key) === shared) this.#joinableCatchUps.delete(key);
        const catching = shared.catchingUp;
        if (catching && jsonOf(shared) === jsonOf(catching.target)) {
          // Its first event is the one the shared upstream had sent before it started: the
          // subgraph starts this subscription with the current state.
          this.#merge(shared, catching.target, shared.received === 1 && catching.target.received === catching.targetReceived);
        }
        if (shared.catchUps.size === 0) return;
        for (const catchUp of [...shared.catchUps]) {
          if (catchUp.latest !== undefined && jsonOf(catchUp) === jsonOf(shared)) this.#merge(catchUp, shared, false);
        }
      },
      error: (errors) => this.#end(shared, errors),
      complete: () => this.#end(shared),
      resubscribed: () => {
        for (const view of shared.views.values()) view.skipRepeat = true;
      },
    });
    return shared;
  }

  /**
   * A catch-up upstream caught up: it has sent the event `target` sent last, so from here on the
   * target's events are the ones its clients would get. They move over (after whatever is still
   * on its way to them) and the catch-up subscription ends at the subgraph.
   */
  #merge(catchUp: SharedUpstream, target: SharedUpstream, startsWithState: boolean): void {
    if (startsWithState) target.startsWithState = true;
    const views = [...catchUp.views.values()];
    catchUp.views.clear();
    this.#forget(catchUp);
    catchUp.leave();
    for (const view of views) {
      const into = target.views.get(view.key);
      if (!into) {
        // The view moves as it is: the target's next events are resolved after its own.
        target.views.set(view.key, view);
        for (const member of view.members) member.upstream = target;
        continue;
      }
      const moved = [...view.members];
      for (const member of moved) {
        member.upstream = target;
        member.view = into;
        into.members.add(member);
      }
      // After what is on its way to them from both sides: the target's events already resolving
      // are ones they got from the catch-up.
      into.chain = Promise.all([into.chain, view.chain]).then(() => {
        for (const member of moved) if (!member.client.done && member.view === into) into.clients.add(member.client);
      });
    }
  }

  /** A client left: the last one of an upstream ends it at the subgraph. */
  #leave(member: Member): void {
    const { upstream, view } = member;
    view.clients.delete(member.client);
    view.members.delete(member);
    if (view.members.size > 0) return;
    if (upstream.views.get(view.key) === view) upstream.views.delete(view.key);
    if (upstream.views.size > 0 || upstream.closed) return;
    this.#forget(upstream);
    upstream.leave();
  }

  /** The upstream delivers nothing more: no client can join it, and its catch-ups go on alone. */
  #forget(upstream: SharedUpstream): void {
    upstream.closed = true;
    const { key } = upstream;
    if (this.#upstreams.get(key) === upstream) this.#upstreams.delete(key);
    if (this.#joinableCatchUps.get(key) === upstream) this.#joinableCatchUps.delete(key);
    upstream.catchingUp?.target.catchUps.delete(upstream);
    upstream.catchingUp = undefined;
    for (const catchUp of upstream.catchUps) {
      catchUp.catchingUp = undefined;
      if (this.#joinableCatchUps.get(key) === catchUp) this.#joinableCatchUps.delete(key);
      if (!this.#upstreams.has(key)) this.#upstreams.set(key, catchUp);
    }
    upstream.catchUps.clear();
  }

  #deliver(view: View, event: ExecutionResult): void {
    const { federation, log } = this.#options;
    const limit = this.#options.maxQueuedEventsPerClient ?? 256;
    view.chain = view.chain
      .then(async () => {
        if (view.clients.size === 0) return;
        const resolved = await federation.resolveEvent(view.planned, view.request, event);
        const result = this.#formatResult(view.rewrite ? (view.rewrite.complete(resolved as never) as ExecutionResult) : resolved);
        if (view.skipRepeat) {
          view.skipRepeat = false;
          if (JSON.stringify(result) === JSON.stringify(view.lastResult)) return;
        }
        view.lastResult = result;
        for (const client of view.clients) {
          if (client.buffered >= limit) {
            client.push({ errors: [{ message: `More than ${limit} events were waiting for this subscriber: it was let go, subscribe again`, extensions: { code: ErrorCode.SUBSCRIBER_TOO_SLOW } }] });
            client.end();
            this.#slowSubscribersDropped++;
            continue;
          }
          client.push(result);
          this.#eventsPushed++;
        }
      })
      .catch((error: unknown) => log.error('could not resolve a subscription event', errorFields(error)));
  }

  /** The upstream ended: each client gets what is still being resolved, then the errors (if any), then the end. */
  #end(shared: SharedUpstream, errors?: readonly GraphQLError[]): void {
    if (shared.closed) return;
    this.#forget(shared);
    for (const view of shared.views.values()) {
      view.chain = view.chain.then(() => {
        for (const client of view.clients) {
          if (errors?.length) client.push({ errors: errors.map((error) => this.#format(error)) });
          client.end();
        }
      });
    }
  }

  #formatResult(result: ExecutionResult): FormattedExecutionResult {
    return {
      ...(result.errors?.length ? { errors: result.errors.map((error) => this.#format(error)) } : {}),
      ...(result.data !== undefined ? { data: result.data } : {}),
      ...(result.extensions ? { extensions: result.extensions } : {}),
    };
  }

  #format(reported: GraphQLError) {
    // A subgraph's error as it arrived (a plain `{ message, extensions, path }`), when a plan
    // step passes it on unwrapped.
    const error =
      reported instanceof GraphQLError
        ? reported
        : new GraphQLError(String((reported as { message?: unknown }).message ?? 'Internal server error'), {
            path: (reported as { path?: readonly (string | number)[] }).path ?? null,
            extensions: (reported as { extensions?: Record<string, unknown> }).extensions ?? {},
          });
    const shown = formatGraphQLError(error, this.#options.production);
    if (shown.extensions?.code === ErrorCode.INTERNAL_SERVER_ERROR) this.#options.log.error('internal error in a subscription', { path: error.path, ...errorFields(error.originalError ?? error) });
    return shown;
  }
}

/** The upstream's latest event as JSON (how a catch-up upstream is compared with its target). */
function jsonOf(upstream: SharedUpstream): string | undefined {
  if (upstream.latest === undefined) return undefined;
  return (upstream.latestJson ??= JSON.stringify(upstream.latest));
}

/** Variables with sorted keys, so equal variables give equal keys. */
function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sorted((value as Record<string, unknown>)[key])]));
  }
  return value;
}
