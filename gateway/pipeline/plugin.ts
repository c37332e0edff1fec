/**
 * The gateway's one extension seam. Every transport (HTTP, graphql-ws, multipart HTTP, SSE)
 * admits connections and operations through the same core (core.ts), and every call to a
 * subgraph (HTTP fetch, upstream subscription, subgraph socket) goes through the same hooks. A
 * cross-cutting concern — identity signing, limits, cost, rate limits, timeouts — is one
 * `GatewayPlugin`, never an edit in each transport.
 *
 * Order of the hooks for one operation:
 *
 *   [onHttpRequest] ─▶ authenticate ─▶ [resolveDocument] ─▶ onConnection ─▶ [onOperationReceived] ─▶ onDocument ─▶ (validation) ─▶ onOperation ─▶ wrapExecution ─▶ onSubgraphRequest ─▶ wrapSubgraphFetch
 *                   (credentials)   (persisted query)     (who, how)      (parsed AST)                  (valid, variables   (planning and  (each fetch, each       (each HTTP fetch:
 *                                                  coerced)            execution)     upstream subscription)  deadlines, retries…)
 *
 * Plugins run in the order they are given; the first that throws refuses, and the rest do not
 * run. A refusal is a `GatewayRefusal` (refusal.ts): a GraphQL error with a code, an HTTP status
 * and, for WebSockets, a close code. Wherever a transport answers one, every plugin's onRefusal
 * hears of it.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayExecutionResult } from '@apollo/server-gateway-interface';
import type { DocumentNode, OperationDefinitionNode } from 'graphql';
import type { Identity } from '../../platform/identity/identity.ts';
import type { GatewayContext } from '../context.ts';
import type { GatewayRefusal } from './refusal.ts';

/** How a client reaches the gateway. */
export type Transport = 'http' | 'graphql-ws' | 'multipart' | 'sse';

/**
 * The app a request comes from, as it names itself (Apollo's `apollographql-client-name` and
 * `-version`, checked for length and characters): what logs, rate limits and trusted documents
 * tell apps apart by. A name is a claim, not a proof (docs/decisions/0025).
 */
export interface ClientApp {
  readonly name: string | undefined;
  readonly version: string | undefined;
}

/** A client connection: one HTTP request, one WebSocket, or one multipart / SSE stream. */
export interface ClientConnection {
  readonly transport: Transport;
  /** The HTTP request, or the WebSocket's upgrade request. */
  readonly request: IncomingMessage;
  /** The app, from the request's headers (a WebSocket: its `connection_init` payload, else its upgrade request's). */
  readonly client: ClientApp;
  readonly identity: Identity;
  /** `customer:<id>` for a signed-in caller, else `address:<ip>`: what per-caller limits count. */
  readonly caller: string;
  readonly remoteAddress: string;
  /** Operations running on this connection now (subscriptions of a WebSocket; 1 for HTTP). */
  readonly activeOperations: number;
  /** How the caller proved who it is (undefined for an anonymous caller): the cookie brings CSRF rules. */
  readonly credential?: Credential;
  /** When the caller's credential expires (epoch ms): a long-lived connection ends then. */
  readonly expiresAt?: number;
  /**
   * Ends a long-lived connection before its time (its session was revoked): a WebSocket is closed
   * with the refusal's close code, a stream gets it as its last error. Undefined for a plain HTTP
   * request, which ends on its own.
   */
  end?(refusal: GatewayRefusal): void;
}

/** How a client proves who it is: a bearer token (header, `connection_init`) or the session cookie. */
export type Credential = 'token' | 'cookie';

/** What a client presented to say who it is, on any transport, before anything is verified. */
export interface Credentials {
  readonly transport: Transport;
  /** The HTTP request, or the WebSocket's upgrade request: its headers carry the cookie. */
  readonly request: IncomingMessage;
  /** An `Authorization` value: the HTTP header, or the one a `connection_init` payload carries. */
  readonly authorization: string | undefined;
}

/** Who a client is, as the plugin that recognised its credentials verified it. */
export interface Authenticated {
  readonly identity: Identity;
  /** Undefined for an anonymous caller. */
  readonly credential?: Credential;
  /** When the credential expires (epoch ms). */
  readonly expiresAt?: number;
}

/** What arrived, before it is parsed. */
export interface ReceivedOperation {
  /** Length of the document's text (UTF-16 code units): what parsing and validating it will cost. */
  readonly documentLength: number;
}

/**
 * A request's document as it arrived, before it is parsed: its text, or only a persisted query's
 * hash (`extensions.persistedQuery.sha256Hash`), or both (an APQ registration).
 */
export interface DocumentRequest {
  /** The HTTP request, or the WebSocket's upgrade request. */
  readonly request: IncomingMessage;
  readonly client: ClientApp;
  /** The text sent, when it was. */
  readonly query: string | undefined;
  readonly extensions: Readonly<Record<string, unknown>> | undefined;
}

/** A document as parsed, not yet validated: the place for cheap structural checks. */
export interface ParsedDocument {
  readonly connection: ClientConnection;
  readonly source: string;
  readonly document: DocumentNode;
  readonly operationName: string | null;
}

/** An operation that parsed, validated, and whose variables are coerced: nothing planned or called yet. */
export interface AdmittedOperation {
  readonly connection: ClientConnection;
  readonly source: string;
  readonly document: DocumentNode;
  readonly operation: OperationDefinitionNode;
  readonly operationName: string | null;
  /** The variables, coerced to their declared types. */
  readonly variables: Record<string, unknown>;
  readonly context: GatewayContext;
  /** The request's headers (HTTP) or the upgrade request's (WebSocket). */
  readonly headers: IncomingHttpHeaders;
  /** Added to the response's `extensions` (e.g. the estimated cost), on every transport. */
  readonly responseExtensions: Record<string, unknown>;
}

/** What a subgraph call is. */
export type SubgraphCallKind =
  /** An HTTP fetch of a query plan (queries, mutations, the rest of a subscription event's plan). */
  | 'fetch'
  /** A subscription started (or re-sent after a reconnect) on a subgraph socket. */
  | 'subscription'
  /** A subgraph socket being opened (its `connection_init` payload). */
  | 'socket';

export interface SubgraphRequest {
  readonly kind: SubgraphCallKind;
  readonly subgraph: string;
  readonly url: string;
  /** Whose call this is (anonymous for a socket, which carries many callers' subscriptions). */
  readonly identity: Identity;
  /** The client request behind it; undefined for sockets and calls the gateway makes on its own. */
  readonly context: GatewayContext | undefined;
  /**
   * Sent with the call: HTTP headers of a fetch, `extensions` of a subscription, the
   * `connection_init` payload of a socket. Names are lower case.
   */
  readonly headers: Record<string, string>;
  /**
   * Whether sending this fetch twice leaves the platform as sending it once: true for every fetch
   * of a query or of a subscription's event (entity fetches included), false for every fetch of a
   * mutation, its entity fetches included, and when the operation is not known. Only idempotent
   * fetches are retried or shared. Undefined for subscriptions and sockets (never wrapped).
   */
  readonly idempotent?: boolean;
}

/** A query or mutation admitted over HTTP, about to be planned and executed. */
export interface OperationExecution {
  readonly context: GatewayContext;
  readonly operationType: 'query' | 'mutation';
  readonly source: string;
  readonly operationName: string | null;
  readonly variables: Readonly<Record<string, unknown>>;
  /**
   * The key of the OperationRewrite it runs as (authorization removed fields), when one did: two
   * executions of one text by one caller are the same only with the same rewrite.
   */
  readonly rewriteKey?: string;
}

/** The executor's result: data and errors, before masking. */
export type ExecutionResult = GatewayExecutionResult;

/**
 * What an onOperation hook may return: a document for the gateway to plan and execute instead of
 * the client's (authorization removes what the caller may not see), on every transport, and how
 * each result is completed for the operation the client sent. At most one plugin rewrites.
 */
export interface OperationRewrite {
  /** Planned and executed in place of the client's document; null when nothing is left to execute (no subgraph is called). */
  readonly document: DocumentNode | null;
  /** Equal keys mean equal documents and equal completions: the plan cache and shared subscription results go by it. */
  readonly key: string;
  /**
   * The client's result, from one of the rewritten document (a query's or mutation's, or each
   * subscription event's); `{ data: {} }` when there was nothing to execute.
   */
  complete(result: ExecutionResult): ExecutionResult;
}

/**
 * A subgraph's health as one plugin sees it (e.g. its circuit breaker): `up` takes calls,
 * `degraded` is being probed back, `down` fails calls fast.
 */
export interface SubgraphHealth {
  readonly status: 'up' | 'degraded' | 'down';
  /** What `/ready` shows beside it, e.g. `{ breaker: 'open' }`. */
  readonly details?: Readonly<Record<string, unknown>>;
}

/**
 * An HTTP request to the GraphQL endpoint as it arrives, before its body is read: preflights,
 * GETs, POSTs, and streams alike (not WebSocket upgrades: those are connections, seen by
 * onConnection with their upgrade request).
 */
export interface HttpExchange {
  readonly request: IncomingMessage;
  /** Headers set here (e.g. `Access-Control-Allow-Origin`) are sent with whatever answers the request. */
  readonly response: ServerResponse;
}

/** An HTTP fetch to a subgraph, as the next step of the chain sends it. */
export type SubgraphFetch = (init: RequestInit) => Promise<Response>;

export interface GatewayPlugin {
  /** Shown in logs. */
  readonly name: string;
  /**
   * Who presented these credentials: undefined when they are none of this plugin's kind (the next
   * plugin is asked; when none recognises any, the caller is anonymous); a GatewayRefusal (401)
   * when they are of its kind and do not verify (never anonymous). Run for every HTTP request and
   * every WebSocket's `connection_init`, before anything else looks at the caller.
   */
  authenticate?(credentials: Credentials): Authenticated | undefined | Promise<Authenticated | undefined>;
  /**
   * An HTTP request arrived at the GraphQL endpoint, before anything is read: set response headers
   * (CORS), answer it yourself (a preflight) and return `'handled'`, or throw a GatewayRefusal
   * (an origin not allowed). Later hooks reach the same response through `context.httpResponse`.
   */
  onHttpRequest?(exchange: HttpExchange): void | 'handled' | Promise<void | 'handled'>;
  /**
   * A client connection is being admitted: an HTTP request once its operation is parsed (so that
   * the transport is known), a WebSocket at `connection_init`, a multipart or SSE stream before it
   * starts. Throw a GatewayRefusal to refuse it; return a function to run when it ends.
   */
  onConnection?(connection: ClientConnection): void | (() => void) | Promise<void | (() => void)>;
  /**
   * An operation arrived on a connection admitted earlier (each graphql-ws `subscribe`), before
   * anything is parsed: the place for per-connection or per-caller message rates. An HTTP request
   * is its own connection: bound it in onConnection.
   */
  onOperationReceived?(connection: ClientConnection, received: ReceivedOperation): void | Promise<void>;
  /**
   * The request's document, before it is parsed (every transport): return the text to run (a
   * persisted query's, found by its hash), nothing to leave the request as it is, or throw a
   * GatewayRefusal (a document this client may not run). The first plugin that returns a text wins.
   */
  resolveDocument?(request: DocumentRequest): string | undefined | Promise<string | undefined>;
  /** A parsed document, before validation: bounded, synchronous checks only. */
  onDocument?(document: ParsedDocument): void;
  /**
   * A valid operation, before planning. Throw a GatewayRefusal to refuse it, or return an
   * OperationRewrite to have the gateway execute another document in its place.
   */
  onOperation?(operation: AdmittedOperation): void | OperationRewrite | Promise<void | OperationRewrite>;
  /** Decorates each subgraph call (headers, extensions, connection_init payload); may refuse it. */
  onSubgraphRequest?(request: SubgraphRequest): void | Promise<void>;
  /**
   * Wraps each HTTP fetch to a subgraph (deadlines, retries, breakers); call `next` to go on. A
   * wrapper that gives up throws a `SubgraphFailure` (subgraph-failure.ts): the client gets its
   * code, with the path of every field the fetch would have filled.
   */
  wrapSubgraphFetch?(request: SubgraphRequest, init: RequestInit, next: SubgraphFetch): Promise<Response>;
  /**
   * Wraps the execution (planning and every subgraph fetch) of a query or mutation admitted over
   * HTTP; call `next` to run it. What it returns is the client's result before masking.
   */
  wrapExecution?(execution: OperationExecution, next: () => Promise<ExecutionResult>): Promise<ExecutionResult>;
  /**
   * The gateway is answering with a refusal, on any transport: an HTTP response (its status), a
   * WebSocket closed at `connection_init` (its close code), an operation's `error` message, a
   * stream's last event. Seen once per refusal answered, whichever plugin (or the core) refused;
   * for counting and logging only: what is sent is already decided. Must not throw.
   */
  onRefusal?(refusal: GatewayRefusal, transport: Transport): void;
  /** What this plugin knows of subgraphs' health, by subgraph name: `/ready` reports the worst. */
  subgraphHealth?(): Readonly<Record<string, SubgraphHealth>>;
  /** The gateway is stopping: release timers, connections. */
  stop?(): void | Promise<void>;
}
