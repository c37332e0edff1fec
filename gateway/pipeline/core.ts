/**
 * The one admission core every transport goes through. A transport (HTTP, graphql-ws, multipart,
 * SSE) knows how to read a request and how to answer; everything between — parsing, the plugins'
 * connection and operation hooks, validation, variable coercion — happens here, once:
 *
 *   authenticate (plugins: token or cookie) ─▶ parse (bounded, cached) ─▶ admitConnection (plugins) ─▶ admitOperation:
 *     onDocument (plugins) ─▶ validate (cached) ─▶ pick the operation ─▶ coerce variables ─▶ onOperation (plugins)
 *
 * Refusals are GatewayRefusal errors (a code, an HTTP status, a WebSocket close code). A transport
 * that answers one says so (`refused`, or `sendRefusal` for HTTP), so that the plugins' onRefusal
 * sees every refusal of every transport once.
 *
 * Memory: the document cache is bounded by bytes and holds only documents that parsed and
 * validated; nothing a client sends outlives its request otherwise.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import {
  GraphQLError,
  getOperationAST,
  validate,
  type DocumentNode,
  type GraphQLFormattedError,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql';
import { getVariableValues } from 'graphql/execution/values.js';
import { LRUCache } from 'lru-cache';
import { ErrorCode } from '../../platform/errors/index.ts';
import { formatGraphQLError, invalidVariableField, withoutSuggestions } from '../../platform/errors/masking.ts';
import { anonymous, type Identity } from '../../platform/identity/identity.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { errorFields } from '../../platform/logging/logger.ts';
import type { GatewayContext } from '../context.ts';
import { clientAppOf } from '../plugins/client-awareness.ts';
import type {
  AdmittedOperation,
  Authenticated,
  ClientApp,
  ClientConnection,
  Credential,
  Credentials,
  ExecutionResult,
  GatewayPlugin,
  HttpExchange,
  OperationExecution,
  OperationRewrite,
  ParsedDocument,
  SubgraphFetch,
  SubgraphHealth,
  SubgraphRequest,
  Transport,
} from './plugin.ts';
import { GatewayRefusal, isRefusal, sendRefusal } from './refusal.ts';

/** What a client sent as its GraphQL request, on any transport. */
export interface OperationParams {
  query?: unknown;
  operationName?: unknown;
  variables?: unknown;
  extensions?: unknown;
}

/** A document that parsed: what the transport needs to choose its path before admission. */
export interface ParsedRequest {
  source: string;
  document: DocumentNode;
  operationName: string | null;
  /** The operation that will run, when the document names it unambiguously (else refused at admission). */
  operation: OperationDefinitionNode | undefined;
  /** Its kind: what the transport chooses its path by. */
  kind: OperationDefinitionNode['operation'] | undefined;
  variables: Record<string, unknown>;
  /** Known valid against the schema (from the cache): validation is skipped. */
  validated: boolean;
}

export interface CoreOptions {
  /** The API schema clients' operations are validated against. */
  schema: GraphQLSchema;
  plugins: readonly GatewayPlugin[];
  production: boolean;
  log: Logger;
  /** Parses a document within the gateway's limits (size, tokens); throws a GatewayRefusal over them. */
  parse: (source: string) => DocumentNode;
  /** Bytes of documents kept parsed and validated (least recently used goes first). @default 32 MiB */
  documentCacheBytes?: number;
  /** A document larger than this is never cached. @default 256 KiB */
  maxCachedDocumentBytes?: number;
}

export interface ConnectionInit {
  transport: Transport;
  request: IncomingMessage;
  identity: Identity;
  /** Operations running on the connection now (a WebSocket's subscriptions). @default 1 */
  activeOperations?: () => number;
  /** A WebSocket's `connection_init` payload: where a browser app names itself (client awareness). */
  connectionParams?: Record<string, unknown>;
  /** The calling app, when the transport read it already (HTTP reads it to resolve the document first). */
  client?: ClientApp;
  /** How the caller authenticated, and until when (from `authenticate`). */
  credential?: Credential;
  expiresAt?: number;
  /** Ends the connection early (a long-lived one whose session was revoked). */
  end?: (refusal: GatewayRefusal) => void;
}

/** A connection the plugins let in; `release` runs their end-of-connection functions once. */
export interface Admission {
  connection: ClientConnection;
  release(): void;
}

/** The caller a per-caller limit counts: the signed-in customer, else the client's address. */
export function callerOf(identity: Identity, remoteAddress: string | undefined): string {
  return identity.customerId ? `customer:${identity.customerId}` : `address:${remoteAddress ?? 'unknown'}`;
}

export class GatewayCore {
  readonly schema: GraphQLSchema;
  readonly plugins: readonly GatewayPlugin[];
  readonly #options: CoreOptions;
  readonly #parse: (source: string) => DocumentNode;
  readonly #valid: LRUCache<string, DocumentNode>;
  readonly #maxCachedBytes: number;
  /** The plugins that wrap subgraph fetches, innermost first. */
  readonly #fetchWrappers: readonly GatewayPlugin[];
  /** The plugins that wrap executions, innermost first. */
  readonly #executionWrappers: readonly GatewayPlugin[];

  constructor(options: CoreOptions) {
    this.#options = options;
    this.schema = options.schema;
    this.plugins = options.plugins;
    this.#parse = options.parse;
    this.#fetchWrappers = options.plugins.filter((plugin) => plugin.wrapSubgraphFetch).reverse();
    this.#executionWrappers = options.plugins.filter((plugin) => plugin.wrapExecution).reverse();
    this.#maxCachedBytes = options.maxCachedDocumentBytes ?? 256 * 1024;
    // A document's AST takes several times its text; the text itself is the key.
    this.#valid = new LRUCache<string, DocumentNode>({ maxSize: options.documentCacheBytes ?? 32 * 1024 * 1024, sizeCalculation: (_document, source) => source.length * 8 });
  }

  /** Documents held parsed and validated, and their accounted size in bytes. */
  get documentCache(): { entries: number; bytes: number } {
    return { entries: this.#valid.size, bytes: this.#valid.calculatedSize };
  }

  /**
   * The request with its document's text: the plugins' `resolveDocument` may find it by a
   * persisted query's hash, or refuse a document this client may not run. The returned request
   * has no `persistedQuery` left (it is dealt with), so nothing after the core sees a hash.
   * Throws a GatewayRefusal; a hash no plugin resolves is PERSISTED_QUERY_NOT_SUPPORTED.
   */
  async resolveDocument(params: OperationParams, from: { request: IncomingMessage; client?: ClientApp; connectionParams?: Record<string, unknown> }): Promise<OperationParams> {
    const extensions = params.extensions && typeof params.extensions === 'object' && !Array.isArray(params.extensions) ? (params.extensions as Record<string, unknown>) : undefined;
    // graphql-ws requires a `query` string: a client sending only a hash sends ''.
    const query = typeof params.query === 'string' && params.query !== '' ? params.query : undefined;
    let resolved: string | undefined;
    try {
      const client = from.client ?? clientAppOf(from.request.headers, from.connectionParams);
      for (const plugin of this.plugins) {
        resolved = await plugin.resolveDocument?.({ request: from.request, client, query, extensions });
        if (resolved !== undefined) break;
      }
    } catch (error) {
      throw this.#refusalOf(error);
    }
    if (!extensions || !('persistedQuery' in extensions)) return resolved === undefined ? params : { ...params, query: resolved };
    if (resolved === undefined && query === undefined) {
      throw new GatewayRefusal('PERSISTED_QUERY_NOT_SUPPORTED', 'PersistedQueryNotSupported', { status: 200 });
    }
    const { persistedQuery: _dealtWith, ...rest } = extensions;
    return { ...params, query: resolved ?? query, extensions: rest };
  }

  /** Checks the request's shape and parses its document. Throws a GatewayRefusal. */
  parse(params: OperationParams): ParsedRequest {
    if (params.query === undefined && params.extensions && typeof params.extensions === 'object' && 'persistedQuery' in params.extensions) {
      throw new GatewayRefusal('PERSISTED_QUERY_NOT_SUPPORTED', 'Persisted queries are not supported: send the query text', { status: 400 });
    }
    if (typeof params.query !== 'string' || params.query.trim() === '') throw new GatewayRefusal(ErrorCode.BAD_REQUEST, 'The request has no query', { status: 400 });
    if (params.operationName != null && typeof params.operationName !== 'string') throw new GatewayRefusal(ErrorCode.BAD_REQUEST, 'operationName must be a string', { status: 400 });
    if (params.variables != null && (typeof params.variables !== 'object' || Array.isArray(params.variables))) {
      throw new GatewayRefusal(ErrorCode.BAD_REQUEST, 'variables must be an object', { status: 400 });
    }
    const source = params.query;
    const operationName = (params.operationName as string | null | undefined) || null;
    const variables = (params.variables ?? {}) as Record<string, unknown>;
    const cached = this.#valid.get(source);
    let document: DocumentNode;
    if (cached) document = cached;
    else {
      try {
        document = this.#parse(source);
      } catch (error) {
        if (isRefusal(error)) throw error;
        throw new GatewayRefusal('GRAPHQL_PARSE_FAILED', (error as Error).message, { status: 400 });
      }
    }
    const operation = getOperationAST(document, operationName) ?? undefined;
    return { source, document, operationName, operation, kind: operation?.operation, variables, validated: cached !== undefined };
  }

  /**
   * Runs the plugins' HTTP hooks on a request to the GraphQL endpoint: true when one of them
   * answered it (a preflight, a refusal), and nothing else may.
   */
  async handleHttpRequest(exchange: HttpExchange): Promise<boolean> {
    try {
      for (const plugin of this.plugins) {
        if ((await plugin.onHttpRequest?.(exchange)) === 'handled') return true;
      }
    } catch (error) {
      this.sendRefusal(exchange.response, this.#refusalOf(error), 'http');
      return true;
    }
    return false;
  }

  /**
   * Who the credentials say the caller is: the first plugin that recognises them answers; none
   * recognising any is anonymous, but an `Authorization` no plugin can verify is refused (401),
   * never taken as anonymous. Throws a GatewayRefusal.
   */
  async authenticate(credentials: Credentials): Promise<Authenticated> {
    try {
      for (const plugin of this.plugins) {
        const authenticated = await plugin.authenticate?.(credentials);
        if (authenticated) return authenticated;
      }
    } catch (error) {
      throw this.#refusalOf(error);
    }
    if (credentials.authorization) throw new GatewayRefusal(ErrorCode.UNAUTHENTICATED, 'This gateway is not configured to accept tokens', { status: 401 });
    return { identity: anonymous };
  }

  /** Runs the plugins' connection hooks. Throws the first refusal (having released what was taken). */
  async admitConnection(init: ConnectionInit): Promise<Admission> {
    const remoteAddress = init.request.socket.remoteAddress ?? 'unknown';
    const active = init.activeOperations ?? (() => 1);
    const client = init.client ?? clientAppOf(init.request.headers, init.connectionParams);
    const connection: ClientConnection = {
      transport: init.transport,
      request: init.request,
      client,
      identity: init.identity,
      caller: callerOf(init.identity, remoteAddress),
      remoteAddress,
      get activeOperations() {
        return active();
      },
      ...(init.credential ? { credential: init.credential } : {}),
      ...(init.expiresAt !== undefined ? { expiresAt: init.expiresAt } : {}),
      // A long-lived connection ended early (its session revoked) is refused too.
      ...(init.end
        ? {
            end: (refusal: GatewayRefusal) => {
              this.refused(refusal, init.transport);
              init.end!(refusal);
            },
          }
        : {}),
    };
    const releases: (() => void)[] = [];
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      for (const end of releases.reverse()) {
        try {
          end();
        } catch (error) {
          this.#options.log.error('a plugin failed to release a connection', errorFields(error));
        }
      }
    };
    try {
      for (const plugin of this.plugins) {
        const end = await plugin.onConnection?.(connection);
        if (typeof end === 'function') releases.push(end);
      }
    } catch (error) {
      release();
      throw this.#refusalOf(error);
    }
    return { connection, release };
  }

  /** An operation arrived on an admitted long-lived connection: the plugins' rate checks, before parsing. */
  async receiveOperation(connection: ClientConnection, params: OperationParams): Promise<void> {
    const received = { documentLength: typeof params.query === 'string' ? params.query.length : 0 };
    try {
      for (const plugin of this.plugins) await plugin.onOperationReceived?.(connection, received);
    } catch (error) {
      throw this.#refusalOf(error);
    }
  }

  /** Validates the parsed request and runs the plugins' document and operation hooks. */
  async admitOperation(parsed: ParsedRequest, connection: ClientConnection, context: GatewayContext, headers: IncomingHttpHeaders): Promise<AdmittedOperation> {
    const parsedDocument: ParsedDocument = { connection, source: parsed.source, document: parsed.document, operationName: parsed.operationName };
    try {
      for (const plugin of this.plugins) plugin.onDocument?.(parsedDocument);
    } catch (error) {
      throw this.#refusalOf(error);
    }
    if (!parsed.validated) {
      const errors = validate(this.schema, parsed.document, undefined, { maxErrors: 20 });
      if (errors.length > 0) {
        const [first, ...rest] = errors;
        const message = (error: GraphQLError) => (this.#options.production ? withoutSuggestions(error.message) : error.message);
        throw new GatewayRefusal('GRAPHQL_VALIDATION_FAILED', message(first!), {
          status: 400,
          ...(rest.length > 0 ? { details: { more: rest.map((error) => message(error)) } } : {}),
        });
      }
      if (parsed.source.length <= this.#maxCachedBytes) this.#valid.set(parsed.source, parsed.document);
    }
    const { operation } = parsed;
    if (!operation) {
      throw new GatewayRefusal(
        ErrorCode.BAD_REQUEST,
        parsed.operationName ? `There is no operation named "${parsed.operationName}" in the document` : 'The document has several operations: name the one to run with operationName',
        { status: 400 },
      );
    }
    const coerced = getVariableValues(this.schema, operation.variableDefinitions ?? [], parsed.variables, { maxErrors: 20 });
    if (coerced.errors) {
      const first = coerced.errors[0]!;
      // Named the way resolvers name fields (`input.price`), like every other BAD_USER_INPUT.
      const field = invalidVariableField(first.message);
      throw new GatewayRefusal(ErrorCode.BAD_USER_INPUT, this.#options.production ? withoutSuggestions(first.message) : first.message, {
        status: 400,
        ...(field ? { details: { field } } : {}),
      });
    }
    context.responseExtensions ??= {};
    context.operationType = operation.operation;
    context.client = connection.client;
    const admitted: AdmittedOperation = {
      connection,
      source: parsed.source,
      document: parsed.document,
      operation,
      operationName: parsed.operationName,
      variables: coerced.coerced,
      context,
      headers,
      responseExtensions: context.responseExtensions,
    };
    try {
      let rewrite: OperationRewrite | undefined;
      for (const plugin of this.plugins) {
        const returned = await plugin.onOperation?.(admitted);
        if (!returned) continue;
        // Two rewrites of one operation would each complete results of a document they did not make.
        if (rewrite) throw new Error(`a second plugin (${plugin.name}) rewrote the operation`);
        rewrite = returned;
      }
      if (rewrite) (context as RewrittenContext)[rewriteKey] = rewrite;
    } catch (error) {
      throw this.#refusalOf(error);
    }
    return admitted;
  }

  /** Runs every plugin's subgraph-request hook (headers, extensions, connection_init payload). */
  async decorateSubgraphRequest(request: SubgraphRequest): Promise<void> {
    for (const plugin of this.plugins) await plugin.onSubgraphRequest?.(request);
  }

  /** The HTTP fetch of a subgraph request, through every plugin's wrapper (outermost first). */
  subgraphFetch(request: SubgraphRequest, send: SubgraphFetch): SubgraphFetch {
    let next = send;
    for (const plugin of this.#fetchWrappers) {
      const inner = next;
      next = (init) => plugin.wrapSubgraphFetch!(request, init, inner);
    }
    return next;
  }

  /** Executes a query or mutation through every plugin's execution wrapper (outermost first). */
  execute(execution: OperationExecution, run: () => Promise<ExecutionResult>): Promise<ExecutionResult> {
    let next = run;
    for (const plugin of this.#executionWrappers) {
      const inner = next;
      next = () => plugin.wrapExecution!(execution, inner);
    }
    return next();
  }

  /** Each subgraph's health as the plugins report it: the worst report wins. */
  subgraphHealth(): Map<string, SubgraphHealth> {
    const rank = { up: 0, degraded: 1, down: 2 } as const;
    const health = new Map<string, SubgraphHealth>();
    for (const plugin of this.plugins) {
      for (const [subgraph, report] of Object.entries(plugin.subgraphHealth?.() ?? {})) {
        const known = health.get(subgraph);
        if (!known || rank[report.status] > rank[known.status]) health.set(subgraph, { status: report.status, details: { ...known?.details, ...report.details } });
        else health.set(subgraph, { status: known.status, details: { ...report.details, ...known.details } });
      }
    }
    return health;
  }

  /**
   * A transport is answering with this refusal (a response, a close, an operation's error, a
   * stream's last event): the plugins' onRefusal hooks hear of it, once per refusal answered.
   */
  refused(refusal: GatewayRefusal, transport: Transport): void {
    for (const plugin of this.plugins) {
      try {
        plugin.onRefusal?.(refusal, transport);
      } catch (error) {
        this.#options.log.error('a gateway plugin failed to observe a refusal', errorFields(error));
      }
    }
  }

  /** Answers an HTTP request (a plain request, or a multipart or SSE stream not yet started) with the refusal, and tells the plugins. */
  sendRefusal(response: ServerResponse, refusal: GatewayRefusal, transport: Transport): void {
    this.refused(refusal, transport);
    sendRefusal(response, refusal);
  }

  /** An error as a client of any transport reads it: refusals as they are, others masked. */
  clientError(error: unknown): GraphQLFormattedError {
    if (isRefusal(error)) return error.toClient();
    if (error instanceof GraphQLError) return formatGraphQLError(error, this.#options.production);
    return { message: 'Internal server error', extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR } };
  }

  async stop(): Promise<void> {
    for (const plugin of this.plugins) await plugin.stop?.();
  }

  #refusalOf(error: unknown): GatewayRefusal {
    if (isRefusal(error)) return error;
    // A plugin that fails (rather than refuses) must not let the operation through.
    this.#options.log.error('a gateway plugin failed', errorFields(error));
    return new GatewayRefusal('SERVICE_UNAVAILABLE', 'The gateway could not admit the request: try again', { status: 503, retryAfterSeconds: 1 });
  }
}

/**
 * The rewrite a plugin returned for the operation of this context (operationRewriteOf). It is kept
 * on the context, under a key of the core's own, because the context is what reaches both the
 * executor (Apollo Server hands it a copy, own properties included) and the subscription path.
 */
const rewriteKey = Symbol('gateway.operationRewrite');
type RewrittenContext = GatewayContext & { [rewriteKey]?: OperationRewrite };

/** What the gateway executes for the operation admitted with this context, when a plugin rewrote it. */
export function operationRewriteOf(context: GatewayContext): OperationRewrite | undefined {
  return (context as RewrittenContext)[rewriteKey];
}

/** A result with the plugins' response extensions (e.g. the estimated cost) added, on any transport. */
export function withResponseExtensions<T extends { extensions?: unknown }>(result: T, extensions: Record<string, unknown> | undefined): T {
  if (!extensions || Object.keys(extensions).length === 0) return result;
  return { ...result, extensions: { ...(result.extensions as Record<string, unknown> | undefined), ...extensions } };
}
