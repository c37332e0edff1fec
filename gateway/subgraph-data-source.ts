/**
 * How the gateway calls a subgraph: with the caller's identity signed by the gateway (subgraphs
 * refuse anything else), the request id, and a deadline so one slow subgraph cannot hold a
 * client request forever.
 */
import { RemoteGraphQLDataSource, type GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import type { GatewayIdentitySigner } from '../platform/identity/gateway-identity.ts';
import { gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import { anonymous } from '../platform/identity/identity.ts';
import type { GatewayContext } from './context.ts';

export interface SubgraphDataSourceOptions {
  url: string;
  signer: GatewayIdentitySigner;
  /** Abort a subgraph request after this long. @default 10_000 */
  timeoutMs?: number;
}

export class SignedIdentityDataSource extends RemoteGraphQLDataSource<GatewayContext> {
  private readonly signer: GatewayIdentitySigner;

  constructor(options: SubgraphDataSourceOptions) {
    const timeoutMs = options.timeoutMs ?? 10_000;
    super({
      url: options.url,
      fetcher: ((url: string, init: RequestInit) => fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) })) as never,
    });
    this.signer = options.signer;
  }

  override async willSendRequest({ request, context }: GraphQLDataSourceProcessOptions<GatewayContext>): Promise<void> {
    // Calls the gateway makes on its own (no client request) go out as anonymous.
    const identity = (context as Partial<GatewayContext>).identity ?? anonymous;
    request.http?.headers.set(gatewayIdentityHeader, await this.signer.sign(identity));
    const { requestId, traceparent } = context as Partial<GatewayContext>;
    if (requestId) request.http?.headers.set('x-request-id', requestId);
    if (traceparent) request.http?.headers.set('traceparent', traceparent);
  }
}
