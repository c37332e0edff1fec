/**
 * How the gateway calls a subgraph over HTTP: a `GraphQLDataSource` (the interface
 * @apollo/gateway's executor calls) whose every fetch goes through the plugins — their
 * `onSubgraphRequest` hooks decorate it (signed identity, request id, trace context, deadline) and
 * their `wrapSubgraphFetch` wrappers surround it (timeouts; retries and breakers later). The data
 * source itself only sends JSON and reads JSON.
 *
 * A failed call is a GraphQL error with a code a client can branch on and no internal detail:
 * SUBGRAPH_TIMEOUT when a deadline passed, SUBGRAPH_UNAVAILABLE when the subgraph could not be
 * reached or answered with an HTTP error. The subgraph's name and URL stay in the logs.
 */
import type { GraphQLDataSource, GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import type { GatewayGraphQLResponse } from '@apollo/server-gateway-interface';
import { GraphQLError } from 'graphql';
import { ErrorCode } from '../../platform/errors/index.ts';
import { anonymous } from '../../platform/identity/identity.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { errorFields } from '../../platform/logging/logger.ts';
import type { GatewayContext } from '../context.ts';
import type { GatewayCore } from './core.ts';
import type { SubgraphRequest } from './plugin.ts';

export interface PluginDataSourceOptions {
  subgraph: string;
  url: string;
  /** The core whose plugins see the call (a function: data sources are built before the core, which needs their schema). */
  core: () => GatewayCore;
  log: Logger;
}

function isTimeout(error: unknown): boolean {
  const name = (error as { name?: string } | null)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
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
    const request: SubgraphRequest = {
      kind: 'fetch',
      subgraph: this.subgraph,
      url: this.url,
      identity: context?.identity ?? anonymous,
      context,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
    };
    const core = this.#core();
    await core.decorateSubgraphRequest(request);
    const { query, operationName, variables, extensions } = options.request;
    const body = JSON.stringify({ query, ...(operationName ? { operationName } : {}), ...(variables ? { variables } : {}), ...(extensions ? { extensions } : {}) });
    const send = core.subgraphFetch(request, (init) => fetch(this.url, init));
    let response: Response;
    try {
      response = await send({ method: 'POST', headers: request.headers, body });
    } catch (error) {
      throw this.#failure(error, isTimeout(error) ? 'timeout' : 'unreachable');
    }
    const text = await response.text().catch((error: unknown) => {
      throw this.#failure(error, isTimeout(error) ? 'timeout' : 'unreachable');
    });
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    // GraphQL errors come back as JSON, whatever the status (e.g. 400 for a refused operation).
    if (parsed && typeof parsed === 'object' && ('data' in parsed || 'errors' in parsed)) return parsed as GatewayGraphQLResponse;
    throw this.#failure(new Error(`HTTP ${response.status} without a GraphQL body`), 'http', response.status);
  }

  #failure(error: unknown, why: 'timeout' | 'unreachable' | 'http', status?: number): GraphQLError {
    this.#log.warn('subgraph call failed', { subgraph: this.subgraph, why, ...(status ? { status } : {}), ...errorFields(error) });
    return why === 'timeout'
      ? new GraphQLError('A service this request depends on did not answer in time: try again', { extensions: { code: ErrorCode.SUBGRAPH_TIMEOUT } })
      : new GraphQLError('A service this request depends on is unavailable: try again', { extensions: { code: ErrorCode.SUBGRAPH_UNAVAILABLE } });
  }
}
