/** The gateway's per-request context: who is calling and the id that follows the request downstream. */
import type { ServerResponse } from 'node:http';
import type { OperationTypeNode } from 'graphql';
import type { Identity } from '../platform/identity/identity.ts';

export interface GatewayContext {
  identity: Identity;
  requestId: string;
  /** The app the request comes from (`apollographql-client-name` / `-version`), set by the core at admission. */
  client?: { name: string | undefined; version: string | undefined };
  /** The client's W3C trace context, when it sent a well-formed one. */
  traceparent?: string;
  /** The client's network address (of its HTTP request or WebSocket), sent to subgraphs for their per-address limits. */
  clientAddress?: string;
  /**
   * The HTTP response of an HTTP request (undefined on a WebSocket): where a plugin sets response
   * headers (`Set-Cookie` after a sign-in) before the result is written.
   */
  httpResponse?: ServerResponse;
  /** Added to the response's `extensions` by plugins (e.g. the estimated cost), on every transport. */
  responseExtensions?: Record<string, unknown>;
  /**
   * The kind of the client's operation, set by the core once it is admitted: what tells a fetch
   * of a mutation (never retried, never shared) from a fetch of a query.
   */
  operationType?: OperationTypeNode;
  /**
   * When the whole query or mutation must be done at the subgraphs (epoch ms), set by the
   * subgraph-timeout plugin. A property, not a map keyed by the context: Apollo Server executes
   * on a shallow copy of the context admission saw.
   */
  deadline?: number;
}
