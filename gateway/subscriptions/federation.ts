/**
 * The federation machinery the subscription path shares with @apollo/gateway, built from the
 * same supergraph: its API schema (what clients validate against), the query planner, and
 * `executeQueryPlan` with the gateway's own subgraph data sources.
 *
 * @apollo/gateway plans a subscription as `Subscription { primary: Fetch, rest }` and then
 * refuses to execute it. We execute it in two halves: the primary fetch becomes a graphql-ws
 * subscription at the owning subgraph (upstream.ts), and each event it yields is run through
 * `Sequence [primary, rest]` by executeQueryPlan, with the primary's data source answering that
 * one fetch with the event. So every other field of the event (entities of other subgraphs,
 * @requires, aliases, fragments, errors with paths, result shaping to the API schema) is
 * resolved by the very code that resolves queries.
 */
import { createHash } from 'node:crypto';
import { buildOperationContext, executeQueryPlan, type GraphQLDataSource, type ServiceMap } from '@apollo/gateway';
import { operationFromDocument, Supergraph } from '@apollo/federation-internals';
import { QueryPlanner, type FetchNode, type PlanNode, type QueryPlan } from '@apollo/query-planner';
import { LRUCache } from 'lru-cache';
import { GraphQLError, print, type DocumentNode, type ExecutionResult, type GraphQLSchema } from 'graphql';
import type { GatewayContext } from '../context.ts';

export interface SubgraphEndpoint {
  name: string;
  /** The subgraph's HTTP GraphQL URL; its WebSocket URL is the same with ws(s). */
  url: string;
}

export interface PlannedSubscription {
  plan: QueryPlan;
  primary: FetchNode;
  rest?: PlanNode;
  /** The whole operation, keyed for sharing: the same text and name plan the same way. */
  operationKey: string;
}

export interface FederationOptions {
  supergraphSdl: string;
  subgraphUrls?: Record<string, string>;
  /** The data source of each subgraph: the same class the gateway uses for queries. */
  buildService: (endpoint: SubgraphEndpoint) => GraphQLDataSource<GatewayContext>;
  /** Bytes of subscription plans kept in memory (least recently used goes first). @default 16 MiB */
  planCacheBytes?: number;
}

const noMetrics = () => ({});

export class Federation {
  /** What clients' operations are validated against: the supergraph minus its join machinery. */
  readonly apiSchema: GraphQLSchema;
  readonly endpoints: ReadonlyMap<string, SubgraphEndpoint>;
  readonly #supergraphSchema: GraphQLSchema;
  readonly #federationApiSchema: ReturnType<Supergraph['apiSchema']>;
  readonly #planner: QueryPlanner;
  readonly #services: ServiceMap;
  readonly #plans: LRUCache<string, PlannedSubscription>;
  /** Documents are parsed once per query text and reused (prepare.ts): printed once each. */
  readonly #printed = new WeakMap<DocumentNode, string>();

  constructor(options: FederationOptions) {
    const supergraph = Supergraph.build(options.supergraphSdl);
    this.#federationApiSchema = supergraph.apiSchema();
    this.apiSchema = this.#federationApiSchema.toGraphQLJSSchema();
    this.#supergraphSchema = supergraph.schema.toGraphQLJSSchema();
    this.#planner = new QueryPlanner(supergraph);
    // A plan's size is taken as its JSON's, counted once when it is kept.
    this.#plans = new LRUCache<string, PlannedSubscription>({ maxSize: options.planCacheBytes ?? 16 * 1024 * 1024, sizeCalculation: (planned) => JSON.stringify(planned.plan).length * 2 });
    const endpoints = new Map<string, SubgraphEndpoint>();
    const services: ServiceMap = Object.create(null);
    for (const { name, url } of supergraph.subgraphsMetadata()) {
      const endpoint = { name, url: options.subgraphUrls?.[name] ?? url };
      endpoints.set(name, endpoint);
      services[name] = options.buildService(endpoint);
    }
    this.endpoints = endpoints;
    this.#services = services;
  }

  /**
   * Plans a validated subscription operation (cached by its text and name). A plan whose root is
   * not a subscription is a caller's mistake: BAD_REQUEST.
   */
  planSubscription(document: DocumentNode, operationName: string | null | undefined): PlannedSubscription {
    let text = this.#printed.get(document);
    if (text === undefined) this.#printed.set(document, (text = print(document)));
    const operationKey = createHash('sha256').update(text).update('\0').update(operationName ?? '').digest('base64url');
    const cached = this.#plans.get(operationKey);
    if (cached) return cached;
    const operation = operationFromDocument(this.#federationApiSchema, document, { ...(operationName ? { operationName } : {}), validate: false });
    const plan = this.#planner.buildQueryPlan(operation);
    if (plan.node?.kind !== 'Subscription') {
      throw new GraphQLError('Only subscription operations are served here: send queries and mutations over HTTP', { extensions: { code: 'BAD_REQUEST' } });
    }
    const planned: PlannedSubscription = {
      plan,
      primary: plan.node.primary,
      ...(plan.node.rest ? { rest: plan.node.rest } : {}),
      operationKey,
    };
    this.#plans.set(operationKey, planned);
    return planned;
  }

  /** The variables of the client's operation that the primary fetch uses, by name. */
  primaryVariables(planned: PlannedSubscription, variables: Record<string, unknown>): Record<string, unknown> {
    const picked: Record<string, unknown> = {};
    for (const name of planned.primary.variableUsages ?? []) {
      if (name in variables) picked[name] = variables[name];
    }
    return picked;
  }

  /**
   * One event of a subscription, resolved through the rest of its plan: `event` is what the
   * owning subgraph sent for the primary fetch; the result is shaped to the client's operation.
   */
  async resolveEvent(
    planned: PlannedSubscription,
    request: { document: DocumentNode; operationName?: string | null; variables: Record<string, unknown>; context: GatewayContext },
    event: ExecutionResult,
  ): Promise<ExecutionResult> {
    const primaryService = this.#services[planned.primary.serviceName]!;
    const answering: GraphQLDataSource<GatewayContext> = {
      process: (options) => {
        // The primary fetch is answered with the event; anything else goes to the subgraph. With a
        // copy: executeQueryPlan merges the other subgraphs' fields into the data it is given, and
        // one event is resolved for every view of its upstream, replayed to joiners, and compared.
        if ('request' in options && options.request.query === planned.primary.operation) {
          return Promise.resolve({ ...(event.data !== undefined ? { data: structuredClone(event.data) as Record<string, unknown> } : {}), ...(event.errors ? { errors: [...event.errors] } : {}) });
        }
        return primaryService.process(options);
      },
    };
    const plan: QueryPlan = {
      kind: 'QueryPlan',
      node: planned.rest ? { kind: 'Sequence', nodes: [planned.primary, planned.rest] } : planned.primary,
    };
    const operationContext = buildOperationContext({
      schema: this.apiSchema,
      operationDocument: request.document,
      ...(request.operationName ? { operationName: request.operationName } : {}),
    });
    const requestContext = {
      request: { variables: request.variables },
      context: request.context,
      logger: silentLogger,
      metrics: noMetrics(),
    };
    const result = await executeQueryPlan(
      plan,
      { ...this.#services, [planned.primary.serviceName]: answering },
      requestContext as never,
      operationContext,
      this.#supergraphSchema,
      this.#federationApiSchema,
      undefined,
    );
    return result as ExecutionResult;
  }
}

/** executeQueryPlan logs through this; its errors reach the client through the result instead. */
const silentLogger = { debug() {}, info() {}, warn() {}, error() {} };
