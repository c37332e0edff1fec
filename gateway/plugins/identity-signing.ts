/**
 * The caller's identity, signed by the gateway, on every subgraph call: an HTTP header on fetches,
 * the `extensions` of each subscription, the `connection_init` payload of a subgraph socket (as
 * the anonymous gateway). Each signature is bound to the subgraph it is sent to (its audience),
 * so an identity captured at one subgraph is worthless at another, and is short-lived.
 */
import { gatewayIdentityHeader, type GatewayIdentitySigner } from '../../platform/identity/gateway-identity.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';

export interface IdentitySigningOptions {
  signer: GatewayIdentitySigner;
}

export function identitySigning(options: IdentitySigningOptions): GatewayPlugin {
  const { signer } = options;
  return {
    name: 'identity-signing',
    async onSubgraphRequest(request) {
      request.headers[gatewayIdentityHeader] = await signer.sign(request.identity, request.subgraph, request.kind === 'subscription' ? 'subscription' : 'call');
    },
  };
}
