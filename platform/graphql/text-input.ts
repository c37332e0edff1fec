/**
 * Text a client sends that no database column can hold faithfully: a NUL character (PostgreSQL's
 * `text` refuses U+0000, and the client got an internal error) and lone UTF-16 surrogates (JSON
 * lets `"\ud800"` through; encoding it to UTF-8 silently turns it into U+FFFD, so what is stored
 * is not what was sent). Both are refused up front as BAD_USER_INPUT, naming the argument or
 * variable the way resolvers name fields (`input.lines[0].name`).
 *
 * Other control characters (tab, bell, escape…) are valid Unicode that PostgreSQL stores as sent;
 * refusing them is a rule of a field (a name, a SKU), not of text, so they pass here.
 *
 * Used by the gateway (gateway/plugins/text-input.ts) and, as defence in depth, by every subgraph
 * (`rejectInvalidText`, below), which the network lets others reach.
 */
import type { ApolloServerPlugin, BaseContext } from '@apollo/server';
import { GraphQLError, Kind, type ArgumentNode, type DocumentNode, type ValueNode } from 'graphql';
import { ErrorCode } from '../errors/index.ts';

export type InvalidTextProblem = 'NUL' | 'LONE_SURROGATE';

export interface InvalidText {
  /** The argument or variable, with its path inside: `email`, `input.lines[0].name`. */
  field: string;
  problem: InvalidTextProblem;
}

const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What is wrong with one string, if anything. */
export function problemOf(text: string): InvalidTextProblem | undefined {
  if (text.includes('\u0000')) return 'NUL';
  if (lone.test(text)) return 'LONE_SURROGATE';
  return undefined;
}

/** The message a client reads for it. */
export function invalidTextMessage({ field, problem }: InvalidText): string {
  return problem === 'NUL'
    ? `${field} contains a NUL character (U+0000), which text cannot hold`
    : `${field} contains a lone UTF-16 surrogate, which is not valid text`;
}

const join = (path: string, key: string) => (path ? `${path}.${key}` : key);

function inLiteral(value: ValueNode, path: string): InvalidText | undefined {
  switch (value.kind) {
    case Kind.STRING: {
      const problem = problemOf(value.value);
      return problem ? { field: path, problem } : undefined;
    }
    case Kind.LIST:
      for (const [index, item] of value.values.entries()) {
        const found = inLiteral(item, `${path}[${index}]`);
        if (found) return found;
      }
      return undefined;
    case Kind.OBJECT:
      for (const field of value.fields) {
        const found = inLiteral(field.value, join(path, field.name.value));
        if (found) return found;
      }
      return undefined;
    default:
      return undefined;
  }
}

function inValue(value: unknown, path: string, depth: number): InvalidText | undefined {
  // JSON.parse cannot nest deeper than the body limit allows; the bound keeps a hostile object graph finite.
  if (depth > 256) return undefined;
  if (typeof value === 'string') {
    const problem = problemOf(value);
    return problem ? { field: path, problem } : undefined;
  }
  if (Array.isArray(value)) {
    for (const [index, item] of value.entries()) {
      const found = inValue(item, `${path}[${index}]`, depth + 1);
      if (found) return found;
    }
    return undefined;
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      const keyProblem = problemOf(key);
      if (keyProblem) return { field: path, problem: keyProblem };
      const found = inValue(item, join(path, key), depth + 1);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * The first invalid text of an operation: in the string literals of its arguments (fields and
 * directives, in fragments too, nested input objects and lists included) and of its variables'
 * defaults, in document order, then in the variables' values (deep), in their order.
 * `undefined` when every text is valid.
 */
export function findInvalidText(document: DocumentNode, variables: Readonly<Record<string, unknown>> | null | undefined): InvalidText | undefined {
  let found: InvalidText | undefined;
  const inArguments = (nodes: readonly ArgumentNode[] | undefined) => {
    for (const argument of nodes ?? []) {
      found ??= inLiteral(argument.value, argument.name.value);
    }
  };
  // A hand-written walk rather than graphql's `visit`: it stops at the first find, and a
  // document's arguments sit only on fields, directives and variable definitions.
  const walk = (node: unknown): void => {
    if (found || node === null || typeof node !== 'object') return;
    const ast = node as { kind?: string; arguments?: readonly ArgumentNode[]; defaultValue?: ValueNode; variable?: { name: { value: string } } };
    if (ast.kind === Kind.FIELD || ast.kind === Kind.DIRECTIVE) inArguments(ast.arguments);
    if (ast.kind === Kind.VARIABLE_DEFINITION && ast.defaultValue && ast.variable) found ??= inLiteral(ast.defaultValue, ast.variable.name.value);
    for (const [key, child] of Object.entries(ast)) {
      if (key === 'loc' || key === 'arguments' || key === 'defaultValue') continue;
      if (Array.isArray(child)) child.forEach(walk);
      else if (child && typeof child === 'object') walk(child);
    }
  };
  walk(document);
  if (found) return found;
  for (const [name, value] of Object.entries(variables ?? {})) {
    found = inValue(value, name, 0);
    if (found) return found;
  }
  return undefined;
}

/** The refusal a subgraph answers with; 200, like any GraphQL error, so the gateway relays its code and field. */
export function invalidTextError(invalid: InvalidText): GraphQLError {
  return new GraphQLError(invalidTextMessage(invalid), {
    extensions: { code: ErrorCode.BAD_USER_INPUT, field: invalid.field, http: { status: 200 } },
  });
}

/**
 * The subgraphs' copy of the gateway's check, as an Apollo Server plugin: an operation carrying
 * invalid text is refused once its operation is resolved, before any resolver or SQL runs.
 */
export function rejectInvalidText<TContext extends BaseContext>(): ApolloServerPlugin<TContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ document, request }) {
          const invalid = findInvalidText(document, request.variables);
          if (invalid) throw invalidTextError(invalid);
        },
      };
    },
  };
}
