/**
 * Request id and W3C trace context travel with every subgraph call: the request id the gateway
 * chose (or the client's, when harmless; plugins/access-log.ts) as `x-request-id`, and the
 * client's `traceparent`. A subgraph binds the id to its log scope, so its lines for this call
 * carry the same `requestId` as the gateway's (platform/logging/request-scope.ts). With tracing
 * on, the tracing plugin replaces that `traceparent` on each fetch with its own span's (tracing.ts).
 */
import type { GatewayPlugin } from '../pipeline/plugin.ts';

export function requestTracing(): GatewayPlugin {
  return {
    name: 'request-tracing',
    onSubgraphRequest(request) {
      if (request.kind === 'socket' || !request.context) return;
      request.headers['x-request-id'] = request.context.requestId;
      if (request.context.traceparent) request.headers.traceparent = request.context.traceparent;
    },
  };
}
