/**
 * Bounds on long-lived connections:
 * - connections per caller: a caller's WebSockets and multipart / SSE streams together
 *   (docs/decisions/0007); a caller is the signed-in customer, or the address of an anonymous one.
 *   Over the bound: TOO_MANY_CONNECTIONS, HTTP 429 or WebSocket close 4429.
 * - operations per WebSocket: TOO_MANY_SUBSCRIPTIONS on the operation.
 * - operations a caller may send over its WebSockets per time window, counted before they are
 *   parsed, each weighed by its size (parsing and validating a document costs in proportion to
 *   its length: a 30 KiB document ~7 ms here): TOO_MANY_OPERATIONS, retryable.
 * Plain HTTP requests are not connections here: rate limits bound them.
 */
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { ErrorCode } from '../../platform/errors/index.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';

export interface ConnectionLimitsOptions {
  /** WebSockets and HTTP streams one caller may hold open at once. @default 20 */
  maxConnectionsPerCaller?: number;
  /** Subscriptions running at once on one WebSocket. @default 100 */
  maxSubscriptionsPerConnection?: number;
  /**
   * Operation points one caller may spend over its WebSockets per `operationWindowSeconds`: an
   * operation costs 1 point, plus 1 per KiB of its document. @default 200
   */
  maxOperationsPerWindow?: number;
  /** @default 10 */
  operationWindowSeconds?: number;
}

export function connectionLimits(options: ConnectionLimitsOptions = {}): GatewayPlugin {
  const maxPerCaller = options.maxConnectionsPerCaller ?? 20;
  const maxSubscriptions = options.maxSubscriptionsPerConnection ?? 100;
  const open = new Map<string, number>();
  // Per caller, in this process: the sockets it counts live here too (Redis-shared rates are issue 11's).
  const operations = new RateLimiterMemory({
    keyPrefix: 'ws-operations',
    points: options.maxOperationsPerWindow ?? 200,
    duration: options.operationWindowSeconds ?? 10,
  });
  const openOf = (caller: string) => open.get(caller) ?? 0;
  return {
    name: 'connection-limits',
    onConnection(connection) {
      if (connection.transport === 'http') return;
      const { caller } = connection;
      if (openOf(caller) >= maxPerCaller) {
        throw new GatewayRefusal(ErrorCode.TOO_MANY_CONNECTIONS, `Too many connections: at most ${maxPerCaller} per caller, WebSockets and HTTP streams together`, {
          status: 429,
          closeCode: 4429,
          retryAfterSeconds: 5,
        });
      }
      open.set(caller, openOf(caller) + 1);
      return () => {
        const left = openOf(caller) - 1;
        if (left > 0) open.set(caller, left);
        else open.delete(caller);
      };
    },
    async onOperationReceived(connection, received) {
      try {
        await operations.consume(connection.caller, 1 + Math.floor(received.documentLength / 1024));
      } catch (rejection) {
        if (!(rejection instanceof RateLimiterRes)) throw rejection;
        const retryAfterSeconds = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
        throw new GatewayRefusal('TOO_MANY_OPERATIONS', `Too many operations from this caller: try again in ${retryAfterSeconds} s`, { status: 429, retryAfterSeconds });
      }
    },
    onOperation(operation) {
      if (operation.connection.transport !== 'graphql-ws') return;
      // The operation being admitted is already counted.
      if (operation.connection.activeOperations > maxSubscriptions) {
        throw new GatewayRefusal(ErrorCode.TOO_MANY_SUBSCRIPTIONS, `At most ${maxSubscriptions} subscriptions per connection: complete one first`, { status: 429 });
      }
    },
  };
}
