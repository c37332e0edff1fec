/**
 * One access log line per HTTP request to the GraphQL endpoint, when its response is done: the
 * method, the operation's name and type, the app that sent it, the HTTP status, how long it took,
 * the request id, and the error codes it ended with (a refusal's, or those of its result). A
 * request refused before anything ran (401, a rate limit, an operation too deep) gets its line
 * too: the line is written when the response closes, whoever answered it.
 *
 * It also gives the request its id: the client's `x-request-id` when well-formed, else a new one,
 * sent back in the response's `x-request-id` and bound to the request's log scope, so that every
 * line the request causes — here and, through request-tracing's header, in each subgraph it
 * reaches — carries it (platform/logging/request-scope.ts). First among the plugins, so that no
 * hook runs before the id is known.
 *
 * Never the variables, the document or the caller's identity: an access log is kept long and read
 * widely. WebSocket operations are not HTTP requests and have no line here.
 */
import type { IncomingMessage } from 'node:http';
import { getOperationAST } from 'graphql';
import { createLogger, type Logger } from '../../platform/logging/logger.ts';
import { bindLogScope, currentLogScope, requestIdFrom, runInLogScope, type LogScope } from '../../platform/logging/request-scope.ts';
import type { ExecutionResult, GatewayPlugin } from '../pipeline/plugin.ts';
import { clientAppOf } from './client-awareness.ts';

export interface AccessLogOptions {
  /** @default createLogger('gateway.access') */
  log?: Logger;
}

/** What one request's line says, gathered by the hooks it went through. */
interface AccessEntry {
  readonly startedAt: number;
  operationName?: string | null;
  operationType?: string;
  /** Distinct codes, in the order met. */
  readonly codes: Set<string>;
}

/** A line names a handful of codes at most: a query of 1,000 failing aliases has few distinct codes, but no bound is no bound. */
const maxCodes = 10;

function addCode(entry: AccessEntry, code: unknown): void {
  if (typeof code === 'string' && entry.codes.size < maxCodes) entry.codes.add(code);
}

function addResultCodes(entry: AccessEntry, result: ExecutionResult): void {
  for (const error of result.errors ?? []) addCode(entry, (error as { extensions?: Record<string, unknown> }).extensions?.code ?? 'INTERNAL_SERVER_ERROR');
}

/** The app as it named itself; a name the client-awareness plugin refuses is not repeated here. */
function clientOf(request: IncomingMessage): { clientName?: string; clientVersion?: string } {
  try {
    const { name, version } = clientAppOf(request.headers);
    return { ...(name ? { clientName: name } : {}), ...(version ? { clientVersion: version } : {}) };
  } catch {
    return {};
  }
}

const header = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

export function accessLog(options: AccessLogOptions = {}): GatewayPlugin {
  const log = options.log ?? createLogger('gateway.access');
  // Keyed by the request's log scope: the one object every hook of a request can reach.
  const entries = new WeakMap<LogScope, AccessEntry>();
  const entryOf = () => {
    const scope = currentLogScope();
    return scope ? entries.get(scope) : undefined;
  };
  return {
    name: 'access-log',
    onHttpRequest({ request, response }) {
      const requestId = requestIdFrom(request.headers['x-request-id']);
      // The gateway's context takes the request id from this header (authentication.ts): the one
      // chosen here is the request's id everywhere, in its context, its logs and its subgraph calls.
      request.headers['x-request-id'] = requestId;
      response.setHeader('x-request-id', requestId);
      bindLogScope({ requestId, traceparent: header(request.headers.traceparent) });
      const scope = currentLogScope();
      const entry: AccessEntry = { startedAt: performance.now(), codes: new Set() };
      if (scope) entries.set(scope, entry);
      // 'close' comes after 'finish' for an answered request, and alone for one the client gave up on.
      response.once('close', () => {
        // `requestId` (and `traceId`) come from the scope the line is written in.
        const line = {
          method: request.method,
          operationName: entry.operationName ?? null,
          ...(entry.operationType ? { operationType: entry.operationType } : {}),
          ...clientOf(request),
          status: response.statusCode,
          durationMs: Math.round((performance.now() - entry.startedAt) * 10) / 10,
          ...(entry.codes.size > 0 ? { errorCodes: [...entry.codes] } : {}),
          ...(response.writableFinished ? {} : { aborted: true }),
        };
        // Written in the request's own scope, whichever context closes the response.
        runInLogScope(scope ?? { requestId }, () => log.info('request', line));
      });
    },
    onDocument({ document, operationName }) {
      const entry = entryOf();
      if (!entry) return;
      entry.operationName = operationName;
      const operation = getOperationAST(document, operationName);
      if (operation) entry.operationType = operation.operation;
    },
    onOperation({ operation, operationName }) {
      const entry = entryOf();
      if (!entry) return;
      entry.operationName = operationName;
      entry.operationType = operation.operation;
    },
    async wrapExecution(execution, next) {
      const entry = entryOf();
      if (entry) {
        entry.operationName = execution.operationName;
        entry.operationType = execution.operationType;
      }
      try {
        const result = await next();
        if (entry) addResultCodes(entry, result);
        return result;
      } catch (error) {
        if (entry) addCode(entry, (error as { code?: unknown }).code ?? 'INTERNAL_SERVER_ERROR');
        throw error;
      }
    },
    onRefusal(refusal) {
      const entry = entryOf();
      if (entry) addCode(entry, refusal.extensions.code);
    },
  };
}
