/**
 * How the gateway calls a subgraph over HTTP: a `GraphQLDataSource` (the interface
 * @apollo/gateway's executor calls) whose every fetch goes through the plugins — their
 * `onSubgraphRequest` hooks decorate it (signed identity, request id, trace context, deadline) and
 * their `wrapSubgraphFetch` wrappers surround it (deadlines, de-duplication, retries, breakers,
 * bulkheads). The data source itself only sends JSON and reads JSON.
 *
 * A failed fetch is answered the way a subgraph answers an error: a result with one error per
 * field the fetch would have filled, each with its `path` (fetch-error-paths.ts) and a code a
 * client can branch on — SUBGRAPH_TIMEOUT when a deadline passed, SUBGRAPH_UNAVAILABLE when the
 * subgraph could not be reached, answered with an HTTP error or its breaker is open,
 * SERVICE_OVERLOADED when its bulkhead shed the fetch. The rest of the operation goes on: the
 * client gets a partial result. The subgraph's name, URL and the cause stay in the logs.
 */
import type { GraphQLDataSource, GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import type { GatewayGraphQLResponse } from '@apollo/server-gateway-interface';
import { parse, type DocumentNode } from 'graphql';
import { anonymous } from '../../platform/identity/identity.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { errorFields } from '../../platform/logging/logger.ts';
import type { GatewayContext } from '../context.ts';
import type { GatewayCore } from './core.ts';
import { missingPaths } from './fetch-error-paths.ts';
import type { SubgraphRequest } from './plugin.ts';
import { failureAnswers, isAbort, SubgraphFailure } from './subgraph-failure.ts';

export interface PluginDataSourceOptions {
  subgraph: string;
  url: string;
  /** The core whose plugins see the call (a function: data sources are built before the core, which needs their schema). */
  core: () => GatewayCore;
  log: Logger;
}

export class PluginDataSource implements GraphQLDataSource<GatewayContext> {
  readonly subgraph: string;
  readonly url: string;
  readonly #core: () => GatewayCore;
  readonly #log: Logger;

  constructor(options: PluginDataSourceOptions) {
    this.subgraph = options.subgraph;
    this.url = options.url;
    this.#core = options.core;
    this.#log = options.log;
  }

  async process(options: GraphQLDataSourceProcessOptions<GatewayContext>): Promise<GatewayGraphQLResponse> {
    // Calls the gateway makes on its own (no client request) go out as anonymous.
    const context = (options.context as Partial<GatewayContext> | undefined)?.identity ? (options.context as GatewayContext) : undefined;
    // The client's operation, not the fetch's (the entity fetches of a mutation are queries), as
    // the core recorded it on admission; the gateway's own calls have none.
    const operationType = context?.operationType;
    const request: SubgraphRequest = {
      kind: 'fetch',
      subgraph: this.subgraph,
      url: this.url,
      identity: context?.identity ?? anonymous,
      context,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      idempotent: operationType === 'query' || operationType === 'subscription',
    };
    const core = this.#core();
    await core.decorateSubgraphRequest(request);
    const { query, operationName, variables, extensions } = options.request;
    const body = JSON.stringify({ query, ...(operationName ? { operationName } : {}), ...(variables ? { variables } : {}), ...(extensions ? { extensions } : {}) });
    const send = core.subgraphFetch(request, (init) => fetch(this.url, init));
    try {
      const response = await send({ method: 'POST', headers: request.headers, body });
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      // GraphQL errors come back as JSON, whatever the status (e.g. 400 for a refused operation).
      if (parsed && typeof parsed === 'object' && ('data' in parsed || 'errors' in parsed)) return parsed as GatewayGraphQLResponse;
      throw new SubgraphFailure('unavailable', `HTTP ${response.status} without a GraphQL body`, { cause: new Error(`HTTP ${response.status}`) });
    } catch (error) {
      const document = ('document' in options ? options.document : undefined) ?? documentOf(query);
      return this.#failed(error, document, variables);
    }
  }

  /** The error result of a failed fetch: its code, once per missing field, each with its path. */
  #failed(error: unknown, document: DocumentNode | undefined, variables: Record<string, unknown> | undefined): GatewayGraphQLResponse {
    const reason = error instanceof SubgraphFailure ? error.reason : isAbort(error) ? 'timeout' : 'unavailable';
    // Fast failures (breaker open, load shed) say nothing new each time: their cause-less failure
    // is logged once, where the breaker or the bulkhead changed state.
    const quiet = error instanceof SubgraphFailure && error.cause === undefined;
    this.#log[quiet ? 'debug' : 'warn']('subgraph fetch failed', { subgraph: this.subgraph, reason, ...errorFields(error instanceof SubgraphFailure && error.cause ? error.cause : error) });
    const { code, message, extensions } = failureAnswers[reason];
    const paths = document ? missingPaths(document, variables) : [];
    if (paths.length === 0) return { errors: [{ message, extensions: { code, ...extensions } }] } as GatewayGraphQLResponse;
    return { errors: paths.map((path) => ({ message, path, extensions: { code, ...extensions } })) } as GatewayGraphQLResponse;
  }
}

function documentOf(query: string | undefined): DocumentNode | undefined {
  if (!query) return undefined;
  try {
    return parse(query);
  } catch {
    return undefined;
  }
}
