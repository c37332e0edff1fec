/**
 * One `debug` line per request a subgraph served, with no request id of its own: the log scope
 * adds it (request-scope.ts). With `LOG_LEVEL=debug` a request's id then finds its line in every
 * subgraph it reached, beside the gateway's access log line; at `info` it costs a level check.
 */
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import type { Logger } from './logger.ts';

export function requestServedLogging<TContext extends BaseContext>(log: Logger): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      const startedAt = performance.now();
      let errorCount = 0;
      return {
        async didEncounterErrors({ errors }) {
          errorCount += errors.length;
        },
        async willSendResponse(requestContext) {
          log.debug('request served', {
            operationName: requestContext.operationName ?? requestContext.request.operationName ?? null,
            ...(requestContext.operation ? { operationType: requestContext.operation.operation } : {}),
            durationMs: Math.round((performance.now() - startedAt) * 10) / 10,
            ...(errorCount > 0 ? { errorCount } : {}),
          });
        },
      };
    },
  };
}
