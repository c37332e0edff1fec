/**
 * Federated subscriptions, whatever the transport (graphql-ws, multipart HTTP, SSE):
 *
 *   client operation ──plan──▶ primary fetch ──graphql-ws──▶ owning subgraph
 *                                                              │ events
 *   client ◀── result shaped to the operation ◀── rest of the plan (other subgraphs)
 *
 * Sharing: identical primary fetches (same subgraph, operation and variables) of the same caller
 * share ONE upstream subscription; the callers' identities never mix, because the subgraph
 * authorizes each socket by its caller. Identical client operations on a shared upstream share
 * the resolution of each event too, so 10,000 clients watching one order cost one upstream
 * subscription and one plan execution per event, not 10,000. The upstream ends when its last
 * client leaves.
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
import type { Federation, PlannedSubscription } from './federation.ts';
import { scopeKeyOf, type UpstreamSubscriptions } from './upstream.ts';

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

/** Clients of one identical operation (same text, name, variables and caller) on one upstream. */
interface View {
  request: { document: DocumentNode; operationName: string | null; variables: Record<string, unknown>; context: GatewayContext };
  clients: Set<PushIterator<FormattedExecutionResult>>;
  /** Clients of the view, including those about to be added to `clients`. */
  members: number;
  /** Events are resolved and delivered in the order the subgraph sent them. */
  chain: Promise<void>;
  /** The last result delivered: replayed to clients that join, and compared after a re-subscription. */
  lastResult?: FormattedExecutionResult;
  /** After a re-subscription, an event identical to the last one delivered is not sent twice. */
  skipRepeat: boolean;
}

interface SharedUpstream {
  planned: PlannedSubscription;
  /** The latest event, replayed (resolved for its operation) to a client that joins later. */
  latest?: ExecutionResult;
  views: Map<string, View>;
  leave: () => void;
}

export class FederatedSubscriptions {
  readonly #options: FederatedSubscriptionsOptions;
  readonly #upstreams = new Map<string, SharedUpstream>();
  #clients = 0;

  constructor(options: FederatedSubscriptionsOptions) {
    this.#options = options;
  }

  /** Client subscriptions being served. */
  get clients(): number {
    return this.#clients;
  }

  /** Distinct upstream subscriptions the clients share. */
  get sharedUpstreams(): number {
    return this.#upstreams.size;
  }

  /**
   * Starts a client subscription: its events, or a single result with errors when it cannot be
   * planned. The operation must already be validated against the API schema.
   */
  subscribe(request: SubscribeRequest): SubscriptionEvents | FormattedExecutionResult {
    const { federation, upstreams } = this.#options;
    let planned: PlannedSubscription;
    try {
      planned = federation.planSubscription(request.document, request.operationName);
    } catch (error) {
      return { errors: [this.#format(error instanceof GraphQLError ? error : new GraphQLError('The subscription could not be planned', { originalError: error as Error }))] };
    }
    const variables = request.variables ?? {};
    const primaryVariables = federation.primaryVariables(planned, variables);
    const endpoint = federation.endpoints.get(planned.primary.serviceName)!;
    const scope = scopeKeyOf(request.context.identity);
    const upstreamKey = JSON.stringify([endpoint.name, scope, planned.primary.operation, sorted(primaryVariables)]);
    const viewKey = JSON.stringify([planned.operationKey, sorted(variables)]);

    let upstream = this.#upstreams.get(upstreamKey);
    if (!upstream) {
      const shared: SharedUpstream = { planned, views: new Map(), leave: () => {} };
      this.#upstreams.set(upstreamKey, shared);
      shared.leave = upstreams.subscribe(
        {
          subgraph: endpoint.name,
          url: endpoint.url,
          identity: request.context.identity,
          query: planned.primary.operation,
          ...(planned.primary.operationName ? { operationName: planned.primary.operationName } : {}),
          variables: primaryVariables,
        },
        {
          next: (event) => {
            shared.latest = event;
            for (const view of shared.views.values()) this.#deliver(shared, view, event);
          },
          error: (errors) => this.#end(upstreamKey, shared, errors),
          complete: () => this.#end(upstreamKey, shared),
          resubscribed: () => {
            for (const view of shared.views.values()) view.skipRepeat = true;
          },
        },
      );
      upstream = shared;
    }
    let view = upstream.views.get(viewKey);
    const joinsExistingView = view !== undefined;
    if (!view) {
      view = {
        request: {
          document: request.document,
          operationName: request.operationName ?? null,
          variables,
          // Shared by the view's clients: the same caller; one id for the requests it makes.
          context: { identity: request.context.identity, requestId: `subscription:${randomUUID()}` },
        },
        clients: new Set(),
        members: 0,
        chain: Promise.resolve(),
        skipRepeat: false,
      };
      upstream.views.set(viewKey, view);
    }
    const shared = upstream;
    const owner = view;
    const client = new PushIterator<FormattedExecutionResult>(async () => {
      this.#clients--;
      owner.clients.delete(client);
      if (--owner.members > 0) return;
      shared.views.delete(viewKey);
      if (shared.views.size > 0) return;
      if (this.#upstreams.get(upstreamKey) === shared) this.#upstreams.delete(upstreamKey);
      shared.leave();
    });
    this.#clients++;
    owner.members++;
    if (joinsExistingView) {
      // After the events already on their way to the view's clients: the latest one, then live.
      owner.chain = owner.chain.then(() => {
        if (client.done) return;
        if (owner.lastResult) client.push(owner.lastResult);
        owner.clients.add(client);
      });
    } else {
      owner.clients.add(client);
      if (shared.latest) this.#deliver(shared, owner, shared.latest);
    }
    return client;
  }

  #deliver(shared: SharedUpstream, view: View, event: ExecutionResult): void {
    const { federation, log } = this.#options;
    const limit = this.#options.maxQueuedEventsPerClient ?? 256;
    view.chain = view.chain
      .then(async () => {
        if (view.clients.size === 0) return;
        const result = this.#formatResult(await federation.resolveEvent(shared.planned, view.request, event));
        if (view.skipRepeat) {
          view.skipRepeat = false;
          if (JSON.stringify(result) === JSON.stringify(view.lastResult)) return;
        }
        view.lastResult = result;
        for (const client of view.clients) {
          if (client.buffered >= limit) {
            client.push({ errors: [{ message: `More than ${limit} events were waiting for this subscriber: it was let go, subscribe again`, extensions: { code: ErrorCode.SUBSCRIBER_TOO_SLOW } }] });
            client.end();
            continue;
          }
          client.push(result);
        }
      })
      .catch((error: unknown) => log.error('could not resolve a subscription event', errorFields(error)));
  }

  /** The upstream ended: each client gets what is still being resolved, then the errors (if any), then the end. */
  #end(upstreamKey: string, shared: SharedUpstream, errors?: readonly GraphQLError[]): void {
    if (this.#upstreams.get(upstreamKey) === shared) this.#upstreams.delete(upstreamKey);
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

  #format(error: GraphQLError) {
    const shown = formatGraphQLError(error, this.#options.production);
    if (shown.extensions?.code === ErrorCode.INTERNAL_SERVER_ERROR) this.#options.log.error('internal error in a subscription', { path: error.path, ...errorFields(error.originalError ?? error) });
    return shown;
  }
}

/** Variables with sorted keys, so equal variables give equal keys. */
function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sorted((value as Record<string, unknown>)[key])]));
  }
  return value;
}
