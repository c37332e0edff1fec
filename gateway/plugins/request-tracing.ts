/**
 * Request id and W3C trace context travel with every subgraph call: the request id the gateway
 * chose (or the client's, when harmless) as `x-request-id`, and the client's `traceparent`.
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
