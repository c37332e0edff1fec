/**
 * A client's subscription request, checked before anything is subscribed: parsed, validated
 * against the supergraph's API schema, a subscription (not a query or mutation), and its
 * variables coerced to their declared types. Every transport (graphql-ws, multipart HTTP, SSE)
 * goes through here, so all refuse the same mistakes with the same codes.
 */
import { GraphQLError, getOperationAST, parse, validate, type DocumentNode, type GraphQLSchema } from 'graphql';
import { getVariableValues } from 'graphql/execution/values.js';
import { ErrorCode } from '../../platform/errors/index.ts';

export interface SubscriptionRequest {
  query?: unknown;
  operationName?: unknown;
  variables?: unknown;
}

export interface PreparedSubscription {
  document: DocumentNode;
  operationName: string | null;
  variables: Record<string, unknown>;
}

export type Prepared = { ok: true; subscription: PreparedSubscription } | { ok: false; errors: GraphQLError[] };

const refuse = (message: string, code: string): Prepared => ({ ok: false, errors: [new GraphQLError(message, { extensions: { code } })] });

/** Whether a request's operation is a subscription (false for anything that does not parse). */
export function isSubscriptionRequest(request: SubscriptionRequest): boolean {
  if (typeof request.query !== 'string') return false;
  // Every HTTP query passes here: only a text that can be a subscription is parsed.
  if (!request.query.includes('subscription')) return false;
  try {
    const operation = getOperationAST(parse(request.query), typeof request.operationName === 'string' ? request.operationName : undefined);
    return operation?.operation === 'subscription';
  } catch {
    return false;
  }
}

/**
 * Parsed and validated documents by query text: clients send the same few subscriptions over and
 * over (every reconnect of every app), and parsing plus validating costs a third of a millisecond.
 */
const documents = new WeakMap<GraphQLSchema, Map<string, { document: DocumentNode } | { errors: GraphQLError[] }>>();
const maxCachedDocuments = 500;

function parsedAndValidated(schema: GraphQLSchema, query: string): { document: DocumentNode } | { errors: GraphQLError[] } {
  let cache = documents.get(schema);
  if (!cache) documents.set(schema, (cache = new Map()));
  const cached = cache.get(query);
  if (cached) return cached;
  let result: { document: DocumentNode } | { errors: GraphQLError[] };
  try {
    const document = parse(query, { maxTokens: 5_000 });
    const invalid = validate(schema, document);
    result =
      invalid.length > 0
        ? { errors: invalid.map((error) => new GraphQLError(error.message, { nodes: error.nodes ?? null, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })) }
        : { document };
  } catch (error) {
    // Syntax errors are not kept: they are cheap to find again, and any text can be sent.
    return { errors: [new GraphQLError((error as GraphQLError).message, { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })] };
  }
  if (cache.size >= maxCachedDocuments) cache.delete(cache.keys().next().value!);
  cache.set(query, result);
  return result;
}

export function prepareSubscription(schema: GraphQLSchema, request: SubscriptionRequest): Prepared {
  if (typeof request.query !== 'string' || request.query.trim() === '') return refuse('The request has no query', ErrorCode.BAD_REQUEST);
  if (request.operationName != null && typeof request.operationName !== 'string') return refuse('operationName must be a string', ErrorCode.BAD_REQUEST);
  if (request.variables != null && (typeof request.variables !== 'object' || Array.isArray(request.variables))) {
    return refuse('variables must be an object', ErrorCode.BAD_REQUEST);
  }
  const parsed = parsedAndValidated(schema, request.query);
  if ('errors' in parsed) return { ok: false, errors: parsed.errors };
  const { document } = parsed;
  const operationName = (request.operationName as string | null | undefined) ?? null;
  const operation = getOperationAST(document, operationName);
  if (!operation) return refuse(operationName ? `There is no operation named "${operationName}"` : 'Name the operation to run with operationName', ErrorCode.BAD_REQUEST);
  if (operation.operation !== 'subscription') {
    return refuse(`This is a ${operation.operation}: send queries and mutations as HTTP requests to /graphql`, ErrorCode.BAD_REQUEST);
  }
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], (request.variables ?? {}) as Record<string, unknown>, { maxErrors: 20 });
  if (coerced.errors) {
    return { ok: false, errors: coerced.errors.map((error) => new GraphQLError(error.message, { nodes: error.nodes ?? null, extensions: { code: ErrorCode.BAD_USER_INPUT } })) };
  }
  return { ok: true, subscription: { document, operationName, variables: coerced.coerced } };
}
