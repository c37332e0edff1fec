/**
 * Defence in depth: a subgraph bounds what it accepts as the gateway does, because it is
 * reachable inside the network without the gateway in front (a compromised neighbour, a
 * captured identity). The same limits as the gateway's (platform/graphql/operation-limits.ts),
 * looser (`subgraphOperationLimits`: query plans add `_entities`, key fields and aliases), and the
 * same static cost (platform/graphql/cost.ts) against a higher maximum. Refusals carry the
 * gateway's codes (OPERATION_TOO_DEEP, TOO_MANY_TOKENS, OPERATION_TOO_COSTLY, …) and HTTP 400, on
 * HTTP (an Apollo Server plugin) and on the subgraph's WebSocket (`admit`).
 */
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { GraphQLError, type DocumentNode, type GraphQLSchema } from 'graphql';
import { createCostModel, estimateCost, type CostModelOptions } from '../graphql/cost.ts';
import { checkOperationLimits, operationLimitsWith, parseWithLimits, subgraphOperationLimits, type LimitViolation, type OperationLimits } from '../graphql/operation-limits.ts';

export interface SubgraphAdmissionOptions {
  /** Limits of documents. @default subgraphOperationLimits */
  limits?: Partial<OperationLimits>;
  /**
   * Operations estimated above this are refused with OPERATION_TOO_COSTLY. Ten times the
   * gateway's `GATEWAY_MAX_COST` default (10_000): the gateway estimates a list by its declared
   * size, the subgraph an `_entities` fetch by its actual representations, so what the gateway
   * admitted must never be refused here; what it would never admit is.
   * @default 100_000
   */
  maxCost?: number;
  /** How the cost model sizes lists. @default the cost model's defaults */
  costModel?: CostModelOptions;
}

export interface SubgraphAdmission {
  readonly limits: Readonly<OperationLimits>;
  /** Parses within `maxDocumentBytes` and `maxTokens`; a violation or a syntax error is returned as the error to answer. */
  parse(source: string): DocumentNode | GraphQLError;
  /** The refusal of a parsed operation over a structural limit, if any: before validation. */
  checkLimits(document: DocumentNode, operationName: string | null | undefined): GraphQLError | undefined;
  /** The refusal of a valid operation over the maximum cost, if any: after validation. */
  checkCost(document: DocumentNode, operationName: string | null | undefined, variables: Record<string, unknown> | undefined): GraphQLError | undefined;
  /**
   * The structural limits of a document's text, before validation (validating a fragment bomb
   * is itself the attack): the refusal, if any. Syntax errors are left to Apollo Server.
   */
  precheck(source: string, operationName: string | null | undefined): GraphQLError | undefined;
  /** The cost check on HTTP, for the subgraph's Apollo Server (structure is `precheck`'s, before validation). */
  plugin<TContext extends BaseContext>(): ApolloServerPlugin<TContext>;
}

const OPERATION_TOO_COSTLY = 'OPERATION_TOO_COSTLY';

function refusalOf(violation: LimitViolation): GraphQLError {
  return new GraphQLError(violation.message, { extensions: { code: violation.code, limit: violation.limit, actual: violation.actual, http: { status: 400 } } });
}

export function createSubgraphAdmission(schema: GraphQLSchema, options: SubgraphAdmissionOptions = {}): SubgraphAdmission {
  const limits = operationLimitsWith(subgraphOperationLimits, options.limits, 'subgraph operation limit');
  const maxCost = options.maxCost ?? 100_000;
  if (!Number.isInteger(maxCost) || maxCost < 1) throw new Error(`subgraph maxCost must be a positive integer, got ${maxCost}`);
  const model = createCostModel(schema, options.costModel);

  const parse = (source: string): DocumentNode | GraphQLError => {
    try {
      const parsed = parseWithLimits(source, limits);
      return parsed.violation ? refusalOf(parsed.violation) : parsed.document;
    } catch (error) {
      if (error instanceof GraphQLError) return error;
      throw error;
    }
  };

  const limitsRefusal = (document: DocumentNode, operationName: string | null | undefined): GraphQLError | undefined => {
    const violation = checkOperationLimits(document, operationName, limits);
    return violation ? refusalOf(violation) : undefined;
  };

  const costRefusal = (document: DocumentNode, operationName: string | null | undefined, variables: Record<string, unknown> | undefined): GraphQLError | undefined => {
    const cost = estimateCost(model, document, operationName, variables ?? {});
    if (cost > maxCost) {
      return new GraphQLError(`The operation's estimated cost is ${cost.toLocaleString('en')}, above this service's limit of ${maxCost.toLocaleString('en')}`, {
        extensions: { code: OPERATION_TOO_COSTLY, cost, maxCost, http: { status: 400 } },
      });
    }
    return undefined;
  };

  const precheck: SubgraphAdmission['precheck'] = (source, operationName) => {
    const parsed = parse(source);
    if (parsed instanceof GraphQLError) return parsed.extensions?.code ? parsed : undefined;
    return limitsRefusal(parsed, operationName);
  };

  return {
    limits,
    parse,
    checkLimits: limitsRefusal,
    checkCost: costRefusal,
    precheck,
    plugin<TContext extends BaseContext>(): ApolloServerPlugin<TContext> {
      return {
        async requestDidStart() {
          return {
            // Size, tokens and structure were checked before Apollo Server parsed the document
            // (`precheck`, from the HTTP server's intercept); the cost needs the variables and a
            // valid document: here, after validation, before anything runs.
            async didResolveOperation({ document, operationName, request }) {
              const refusal = costRefusal(document, operationName, request.variables);
              if (refusal) throw refusal;
            },
          };
        },
      };
    },
  };
}
