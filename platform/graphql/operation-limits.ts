/**
 * Structural limits of a GraphQL document, checked on the parsed AST before validation and
 * planning, so that a few hundred bytes cannot buy seconds of CPU or gigabytes of memory (query
 * planning and validation are synchronous and grow with the operation *as executed*).
 *
 * The analyzer is safe on documents that validation would refuse: unknown fragments count as
 * empty, a fragment that spreads itself is refused as FRAGMENT_CYCLE instead of being followed,
 * and fragments are measured once each, so a "fragment bomb" — each fragment spreading the
 * previous one ten times — is counted as expanded (10^n fields) in time linear in the size of
 * the document. Nothing here allocates in proportion to the expanded operation. Parsing itself
 * is bounded by `parseWithLimits` (size, bracket nesting, tokens).
 *
 * What counts (docs/decisions/0009-operation-limits.md says why):
 * - depth: fields nested in fields, fragments expanded; inline fragments and spreads add no level.
 *   `__typename` and introspection fields (`__schema`, `__type`) count like any field.
 * - aliases, fields: every field selection as executed, i.e. multiplied by how often its
 *   fragment is spread.
 * - root fields: the operation's top-level fields, fragments expanded.
 * - directives: every directive written anywhere in the document (what the parser, validation and
 *   the planner read), not expanded.
 */
import {
  Kind,
  parse,
  type DocumentNode,
  type FragmentDefinitionNode,
  type OperationDefinitionNode,
  type ParseOptions,
  type SelectionSetNode,
} from 'graphql';

export interface OperationLimits {
  /**
   * Fields nested in fields, fragments expanded (`{ a { b } }` is 2). The deepest operation of
   * our README and tests is 7; graphql-js's `getIntrospectionQuery()` (what Sandbox and most
   * tools send) is 15.
   * @default 20
   */
  maxDepth: number;
  /**
   * Aliased fields, counted as executed (an alias in a fragment spread 3 times counts 3). Each
   * alias of a field owned by another subgraph is planned separately: 30 such aliases took ~35 ms
   * of synchronous planning here, 100 took ~160 ms.
   * @default 20
   */
  maxAliases: number;
  /** Top-level fields of the operation, fragments expanded. @default 20 */
  maxRootFields: number;
  /** Directives written anywhere in the document (`@include`, `@skip`, `@defer`, …). @default 50 */
  maxDirectives: number;
  /** Lexical tokens of the document, as graphql-js's parser counts them (punctuators, names, values). @default 5_000 */
  maxTokens: number;
  /** Size of the document's text in UTF-8 bytes. @default 32_768 (32 KiB) */
  maxDocumentBytes: number;
  /**
   * Field selections as executed: every field, fragments expanded as many times as they are
   * spread (a selection, not a result: a list's items are the cost limit's business).
   * `getIntrospectionQuery()` with every option selects 230; our largest operation 24.
   * @default 500
   */
  maxFields: number;
}

/** The gateway's limits: every legitimate operation of our schema, README and tests fits with margin. */
export const defaultOperationLimits: Readonly<OperationLimits> = Object.freeze({
  maxDepth: 20,
  maxAliases: 20,
  maxRootFields: 20,
  maxDirectives: 50,
  maxTokens: 5_000,
  maxDocumentBytes: 32_768,
  maxFields: 500,
});

/**
 * What a subgraph accepts: looser than the gateway, because a query plan adds an `_entities`
 * level, `__typename` and key fields to each fetch, and may alias fields whose types conflict
 * between subgraphs; a subgraph is never stricter than the gateway in front of it.
 */
export const subgraphOperationLimits: Readonly<OperationLimits> = Object.freeze({
  maxDepth: 25,
  maxAliases: 100,
  maxRootFields: 30,
  maxDirectives: 100,
  maxTokens: 15_000,
  maxDocumentBytes: 131_072,
  maxFields: 1_500,
});

/**
 * `base` with `overrides` applied, each a positive integer: a limit of 0 or NaN would refuse
 * everything, so it fails at start-up, not on the first request. `what` names the limits in the error.
 */
export function operationLimitsWith(base: Readonly<OperationLimits>, overrides: Partial<OperationLimits> = {}, what = 'operation limit'): OperationLimits {
  const merged = { ...base, ...overrides };
  for (const [name, value] of Object.entries(merged)) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`${what} ${name} must be a positive integer, got ${value}`);
  }
  return merged;
}

export type OperationLimitCode =
  | 'OPERATION_TOO_DEEP'
  | 'TOO_MANY_ALIASES'
  | 'TOO_MANY_ROOT_FIELDS'
  | 'TOO_MANY_DIRECTIVES'
  | 'TOO_MANY_TOKENS'
  | 'DOCUMENT_TOO_LARGE'
  | 'OPERATION_TOO_LARGE'
  | 'FRAGMENT_CYCLE';

/** The first limit a document exceeds, worded for the client developer who must change it. */
export interface LimitViolation {
  readonly code: OperationLimitCode;
  readonly message: string;
  /** The limit exceeded; for FRAGMENT_CYCLE, 0 (no cycle is allowed). */
  readonly limit: number;
  /**
   * The measured value. For TOO_MANY_TOKENS the parser stops counting past the limit, so this is
   * `limit + 1`, a lower bound; for FRAGMENT_CYCLE, the number of fragments in the cycle.
   */
  readonly actual: number;
}

export interface OperationMeasure {
  readonly depth: number;
  readonly aliases: number;
  readonly rootFields: number;
  readonly directives: number;
  readonly fields: number;
  /** Fragment names of the first cycle found (`['A', 'B', 'A']`), if any fragment spreads itself. */
  readonly fragmentCycle: readonly string[] | undefined;
}

/** Counts of one selection set, fragments expanded. Counts saturate at MAX_SAFE_INTEGER. */
interface SelectionStats {
  depth: number;
  fields: number;
  aliases: number;
  topLevelFields: number;
}

const saturated = Number.MAX_SAFE_INTEGER;
const add = (a: number, b: number) => Math.min(a + b, saturated);
const empty: Readonly<SelectionStats> = Object.freeze({ depth: 0, fields: 0, aliases: 0, topLevelFields: 0 });

/**
 * Measures every fragment once, each after the fragments it spreads. The walk over fragments is
 * iterative, because a chain of fragments each spreading the next, thousands long, fits in a few
 * kilobytes and would overflow the stack if followed by recursion. Recursion is left to the
 * nesting of one selection set, which the parser has already recursed through
 * (`parseWithLimits` bounds it).
 */
class DocumentAnalyzer {
  private readonly fragments = new Map<string, FragmentDefinitionNode[]>();
  private readonly measured = new Map<string, SelectionStats>();

  constructor(document: DocumentNode) {
    for (const definition of document.definitions) {
      if (definition.kind !== Kind.FRAGMENT_DEFINITION) continue;
      const name = definition.name.value;
      // Validation refuses duplicate names later; until then, measure the worst of them.
      this.fragments.set(name, [...(this.fragments.get(name) ?? []), definition]);
    }
  }

  /**
   * Measures every fragment, used or not (a cycle anywhere is refused, so nothing after us has to
   * meet one). Returns the first cycle found, as fragment names from the first back to itself.
   */
  measureFragments(): string[] | undefined {
    const state = new Map<string, 'open' | 'done'>();
    for (const root of this.fragments.keys()) {
      if (state.has(root)) continue;
      state.set(root, 'open');
      const path = [{ name: root, pending: this.spreadsOf(root) }];
      while (path.length > 0) {
        const top = path[path.length - 1]!;
        const next = top.pending.pop();
        if (next === undefined) {
          this.measure(top.name);
          state.set(top.name, 'done');
          path.pop();
        } else if (state.get(next) === 'open') {
          return [...path.slice(path.findIndex((entry) => entry.name === next)).map((entry) => entry.name), next];
        } else if (!state.has(next) && this.fragments.has(next)) {
          state.set(next, 'open');
          path.push({ name: next, pending: this.spreadsOf(next) });
        }
      }
    }
    return undefined;
  }

  /** Once every fragment it spreads is measured (measureFragments). An unknown one counts as empty: validation answers it. */
  selectionSet(selectionSet: SelectionSetNode): SelectionStats {
    const total: SelectionStats = { depth: 0, fields: 0, aliases: 0, topLevelFields: 0 };
    for (const selection of selectionSet.selections) {
      let stats: SelectionStats;
      if (selection.kind === Kind.FIELD) {
        const inner = selection.selectionSet ? this.selectionSet(selection.selectionSet) : empty;
        stats = { depth: inner.depth + 1, fields: add(inner.fields, 1), aliases: add(inner.aliases, selection.alias ? 1 : 0), topLevelFields: 1 };
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        stats = this.selectionSet(selection.selectionSet);
      } else {
        stats = this.measured.get(selection.name.value) ?? empty;
      }
      total.depth = Math.max(total.depth, stats.depth);
      total.fields = add(total.fields, stats.fields);
      total.aliases = add(total.aliases, stats.aliases);
      total.topLevelFields = add(total.topLevelFields, stats.topLevelFields);
    }
    return total;
  }

  private measure(name: string): void {
    let stats: SelectionStats = empty;
    for (const definition of this.fragments.get(name)!) stats = worst(stats, this.selectionSet(definition.selectionSet));
    this.measured.set(name, stats);
  }

  /** The fragments spread anywhere in the definitions of `name`, each once. */
  private spreadsOf(name: string): string[] {
    const spreads = new Set<string>();
    for (const definition of this.fragments.get(name) ?? []) collectSpreads(definition.selectionSet, spreads);
    return [...spreads];
  }
}

// Module-level functions rather than closures: tsx wraps every closure it creates in a naming
// helper, which cost a third of the time on a chain of 600 fragments.
function collectSpreads(selectionSet: SelectionSetNode, spreads: Set<string>): void {
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FRAGMENT_SPREAD) spreads.add(selection.name.value);
    else if (selection.selectionSet) collectSpreads(selection.selectionSet, spreads);
  }
}

function worst(a: SelectionStats, b: SelectionStats): SelectionStats {
  return {
    depth: Math.max(a.depth, b.depth),
    fields: Math.max(a.fields, b.fields),
    aliases: Math.max(a.aliases, b.aliases),
    topLevelFields: Math.max(a.topLevelFields, b.topLevelFields),
  };
}

function countDirectives(document: DocumentNode): number {
  let count = 0;
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION && definition.kind !== Kind.FRAGMENT_DEFINITION) {
      // Type system definitions: executable documents have none, and validation refuses them.
      continue;
    }
    count += definition.directives?.length ?? 0;
    for (const variable of definition.variableDefinitions ?? []) count += variable.directives?.length ?? 0;
    count += directivesIn(definition.selectionSet);
  }
  return count;
}

function directivesIn(selectionSet: SelectionSetNode): number {
  let count = 0;
  for (const selection of selectionSet.selections) {
    count += selection.directives?.length ?? 0;
    if (selection.kind !== Kind.FRAGMENT_SPREAD && selection.selectionSet) count += directivesIn(selection.selectionSet);
  }
  return count;
}

/**
 * The operation that will run: the one named `operationName`, or the only one. With several
 * operations and no name, or a name that matches none, the request fails later; until then every
 * operation is measured and the worst figures are kept, so no choice of name escapes the limits.
 */
function operationsToMeasure(document: DocumentNode, operationName: string | null | undefined): OperationDefinitionNode[] {
  const operations = document.definitions.filter((definition): definition is OperationDefinitionNode => definition.kind === Kind.OPERATION_DEFINITION);
  if (operationName) {
    const named = operations.find((operation) => operation.name?.value === operationName);
    if (named) return [named];
  }
  return operations;
}

/** Measures the operation that will run (see operationsToMeasure), fragments expanded, in time linear in the document. */
export function measureOperation(document: DocumentNode, operationName?: string | null): OperationMeasure {
  const analyzer = new DocumentAnalyzer(document);
  const directives = countDirectives(document);
  const fragmentCycle = analyzer.measureFragments();
  if (fragmentCycle) return { depth: 0, aliases: 0, rootFields: 0, directives, fields: 0, fragmentCycle };
  let stats: SelectionStats = empty;
  for (const operation of operationsToMeasure(document, operationName)) stats = worst(stats, analyzer.selectionSet(operation.selectionSet));
  return { depth: stats.depth, aliases: stats.aliases, rootFields: stats.topLevelFields, directives, fields: stats.fields, fragmentCycle: undefined };
}

const counted = (value: number) => (value >= saturated ? `more than ${saturated.toLocaleString('en')}` : value.toLocaleString('en'));

/**
 * The first limit the operation exceeds, in this order: a fragment cycle, depth, aliases, root
 * fields, expanded fields, directives. `undefined` when it is within every limit.
 */
export function checkOperationLimits(document: DocumentNode, operationName: string | null | undefined, limits: OperationLimits = defaultOperationLimits): LimitViolation | undefined {
  const measure = measureOperation(document, operationName);
  if (measure.fragmentCycle) {
    return {
      code: 'FRAGMENT_CYCLE',
      message: `Fragment ${measure.fragmentCycle[0]} spreads itself (${measure.fragmentCycle.join(' → ')}); fragments must not form a cycle`,
      limit: 0,
      actual: measure.fragmentCycle.length - 1,
    };
  }
  const checks: [OperationLimitCode, number, number, (actual: string, limit: string) => string][] = [
    ['OPERATION_TOO_DEEP', measure.depth, limits.maxDepth, (actual, limit) => `The operation is nested ${actual} levels deep; the limit is ${limit}`],
    ['TOO_MANY_ALIASES', measure.aliases, limits.maxAliases, (actual, limit) => `The operation uses ${actual} aliases (fragments expanded); the limit is ${limit}`],
    ['TOO_MANY_ROOT_FIELDS', measure.rootFields, limits.maxRootFields, (actual, limit) => `The operation selects ${actual} root fields; the limit is ${limit}`],
    ['OPERATION_TOO_LARGE', measure.fields, limits.maxFields, (actual, limit) => `The operation selects ${actual} fields once its fragments are expanded; the limit is ${limit}`],
    ['TOO_MANY_DIRECTIVES', measure.directives, limits.maxDirectives, (actual, limit) => `The document uses ${actual} directives; the limit is ${limit}`],
  ];
  for (const [code, actual, limit, message] of checks) {
    if (actual > limit) return { code, message: message(counted(actual), counted(limit)), limit, actual };
  }
  return undefined;
}

/**
 * Brackets (`{`, `(`, `[`) nested deeper than this are refused before parsing: graphql-js's
 * parser recurses once per level and overflows the stack at ~2,000 levels, which 5,000 tokens
 * can reach. Selection depth is bounded far lower by maxDepth; arguments and input values add a
 * few levels at most.
 */
export const maxBracketNesting = 500;

/**
 * How deep the document's brackets nest, strings and comments skipped as graphql-js's lexer
 * skips them. One pass over the characters: lexing the document twice would double the parse.
 */
function bracketNesting(source: string): number {
  let depth = 0;
  let deepest = 0;
  const length = source.length;
  for (let i = 0; i < length; i++) {
    const code = source.charCodeAt(i);
    if (code === 0x7b || code === 0x28 || code === 0x5b) {
      if (++depth > deepest) deepest = depth;
    } else if (code === 0x7d || code === 0x29 || code === 0x5d) {
      depth--;
    } else if (code === 0x23) {
      // A comment runs to the end of the line.
      while (i + 1 < length && source.charCodeAt(i + 1) !== 0x0a && source.charCodeAt(i + 1) !== 0x0d) i++;
    } else if (code === 0x22 && source.startsWith('"""', i)) {
      // A block string ends at the next """ not escaped as \""".
      i += 3;
      while (i < length && !source.startsWith('"""', i)) i += source.startsWith('\\"""', i) ? 4 : 1;
      i += 2;
    } else if (code === 0x22) {
      // A string ends at the next unescaped quote (or, invalid, at the end of the line).
      i++;
      while (i < length) {
        const inString = source.charCodeAt(i);
        if (inString === 0x5c) i += 2;
        else if (inString === 0x22 || inString === 0x0a || inString === 0x0d) break;
        else i++;
      }
    }
  }
  return deepest;
}

/** graphql-js 16 words it "more that N tokens"; later versions may fix the typo. */
const tooManyTokens = /^Syntax Error: Document contains more tha[nt] \d+ tokens/;

/**
 * Parses like graphql-js's `parse` (a syntax error is thrown as its GraphQLError), but refuses,
 * as a violation: a document larger than `maxDocumentBytes` before reading it, brackets nested
 * deeper than `maxBracketNesting` (OPERATION_TOO_DEEP) before the parser's recursion overflows
 * the stack, and more than `maxTokens` tokens, where the parser stops. `options` are passed on to `parse` (its `maxTokens` is replaced).
 */
export function parseWithLimits(
  source: string,
  limits: Pick<OperationLimits, 'maxTokens' | 'maxDocumentBytes'> = defaultOperationLimits,
  options: ParseOptions = {},
): { document: DocumentNode; violation?: undefined } | { violation: LimitViolation; document?: undefined } {
  // UTF-8 takes at most 3 bytes per UTF-16 code unit, so most documents need no count.
  const bytes = source.length * 3 > limits.maxDocumentBytes ? Buffer.byteLength(source, 'utf8') : 0;
  if (bytes > limits.maxDocumentBytes) {
    return {
      violation: {
        code: 'DOCUMENT_TOO_LARGE',
        message: `The document is ${counted(bytes)} bytes long; the limit is ${counted(limits.maxDocumentBytes)}`,
        limit: limits.maxDocumentBytes,
        actual: bytes,
      },
    };
  }
  const nesting = bracketNesting(source);
  if (nesting > maxBracketNesting) {
    return {
      violation: {
        code: 'OPERATION_TOO_DEEP',
        message: `The document nests brackets ${counted(nesting)} levels deep; the limit is ${maxBracketNesting}`,
        limit: maxBracketNesting,
        actual: nesting,
      },
    };
  }
  try {
    return { document: parse(source, { ...options, maxTokens: limits.maxTokens }) };
  } catch (error) {
    if (!(error instanceof Error) || !tooManyTokens.test(error.message)) throw error;
    return {
      violation: {
        code: 'TOO_MANY_TOKENS',
        message: `The document has more than ${counted(limits.maxTokens)} tokens; the limit is ${counted(limits.maxTokens)}`,
        limit: limits.maxTokens,
        actual: limits.maxTokens + 1,
      },
    };
  }
}
