/**
 * Static cost of a GraphQL operation, from the `@cost` and `@listSize` directives of the IBM
 * GraphQL cost specification (https://ibm.github.io/graphql-specs/cost-spec.html), computed the
 * way Apollo Router's demand control computes its static estimate:
 *
 * - a field costs its weight: `@cost(weight:)` on the field, else on its type, else 1 for an
 *   object, interface or union and 0 for a scalar or enum; plus the cost of its selections;
 * - a list field multiplies that by its size: the value of a `@listSize` slicing argument
 *   (`first`, from a literal or the operation's variables), the size the parent's `@listSize`
 *   gives it as one of its `sizedFields` (a connection's `edges`), the `assumedSize`, or else
 *   `defaultListSize`; `_entities` (a subgraph's entity fetch) is as long as its `representations`;
 * - arguments with `@cost` add their weight when given;
 * - each root field of a mutation adds `mutationWeight` (Router adds it once per operation; per
 *   field, 100 aliased mutations cost 100 writes);
 * - fragments are expanded (each computed once per sizing context); `@skip`/`@include` are
 *   honoured when a literal or a variable decides them, counted otherwise;
 * - introspection (`__schema`, `__type`, `__typename`) is free: it is answered from the schema.
 *
 * The model is built from the supergraph SDL (the gateway) or from a subgraph's schema (the
 * subgraphs bound what they accept): the directives are read from the schema's AST, under the
 * names its `@link`s give them. Estimation is linear in the document (fragments memoized) and
 * stops at a ceiling, so that a hostile document cannot make it expensive.
 */
import {
  buildASTSchema,
  getNamedType,
  getNullableType,
  isCompositeType,
  isListType,
  isObjectType,
  isInterfaceType,
  Kind,
  parse,
  type ArgumentNode,
  type ConstDirectiveNode,
  type DirectiveNode,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';

export interface CostModelOptions {
  /** Size of a list that declares no `@listSize` and gets no size from a slicing argument. @default 10 */
  defaultListSize?: number;
  /** Added for each root field of a mutation (the cost specification's default for mutations). @default 10 */
  mutationWeight?: number;
  /** Estimation stops here and answers this value: any estimate this high is refused anyway. @default 1_000_000_000 */
  ceiling?: number;
  /** Selections visited (fragments counted once) before estimation stops at the ceiling. @default 100_000 */
  maxSelections?: number;
}

/** `@listSize` of one field. */
export interface ListSize {
  assumedSize: number | undefined;
  slicingArguments: readonly string[];
  sizedFields: readonly string[];
}

/** What the directives say about one field (`Type.field`). */
interface FieldCost {
  weight: number | undefined;
  listSize: ListSize | undefined;
  /** Weights of the field's arguments that have `@cost`. */
  argumentWeights: ReadonlyMap<string, number> | undefined;
}

export interface CostModel {
  readonly schema: GraphQLSchema;
  readonly options: Required<CostModelOptions>;
  /** By `Type.field`, only fields with a directive. */
  readonly fields: ReadonlyMap<string, FieldCost>;
  /** `@cost` weights of types. */
  readonly typeWeights: ReadonlyMap<string, number>;
}

const defaults: Required<CostModelOptions> = { defaultListSize: 10, mutationWeight: 10, ceiling: 1_000_000_000, maxSelections: 100_000 };

const costSpec = /^https:\/\/specs\.apollo\.dev\/cost\/v\d+\.\d+$/;
const federationSpec = /^https:\/\/specs\.apollo\.dev\/federation\/v\d+\.\d+$/;

/**
 * A cost model from a schema: the supergraph SDL, a subgraph's SDL, or a GraphQLSchema whose
 * AST nodes carry the directives (`buildSubgraphSchema`'s does; the gateway's API schema does not,
 * so give the gateway's model the supergraph SDL).
 */
export function createCostModel(schemaOrSdl: GraphQLSchema | DocumentNode | string, options: CostModelOptions = {}): CostModel {
  const schema =
    typeof schemaOrSdl === 'string' ? buildASTSchema(parse(schemaOrSdl), { assumeValidSDL: true })
    : 'kind' in schemaOrSdl ? buildASTSchema(schemaOrSdl, { assumeValidSDL: true })
    : schemaOrSdl;
  const names = directiveNames(schema);
  const fields = new Map<string, FieldCost>();
  const typeWeights = new Map<string, number>();
  for (const type of Object.values(schema.getTypeMap())) {
    if (type.name.startsWith('__')) continue;
    const typeWeight = weightOf(directivesOf(type), names.cost);
    if (typeWeight !== undefined) typeWeights.set(type.name, typeWeight);
    if (!isObjectType(type) && !isInterfaceType(type)) continue;
    for (const field of Object.values(type.getFields())) {
      const directives = directivesOf(field);
      const weight = weightOf(directives, names.cost);
      const listSize = listSizeOf(directives, names.listSize);
      const argumentWeights = new Map<string, number>();
      for (const argument of field.args) {
        const argumentWeight = weightOf(directivesOf(argument), names.cost);
        if (argumentWeight !== undefined) argumentWeights.set(argument.name, argumentWeight);
      }
      if (weight !== undefined || listSize || argumentWeights.size > 0) {
        fields.set(`${type.name}.${field.name}`, { weight, listSize, argumentWeights: argumentWeights.size > 0 ? argumentWeights : undefined });
      }
    }
  }
  const resolved = { ...defaults, ...definedOnly(options) };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isFinite(value) || value < 0) throw new Error(`cost model option ${name} must be a non-negative number, got ${value}`);
  }
  return { schema, options: resolved, fields, typeWeights };
}

/**
 * The estimated cost of the operation named `operationName` (or the document's only one), with
 * the operation's variables. Answers the model's ceiling when the estimate reaches it, when the
 * document has more selections than the model allows, or when its fragments form a cycle.
 */
export function estimateCost(model: CostModel, document: DocumentNode, operationName?: string | null, variables: Record<string, unknown> = {}): number {
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operationName ? operations.find((o) => o.name?.value === operationName) : operations.length === 1 ? operations[0] : undefined;
  if (!operation) throw new Error(operationName ? `no operation named "${operationName}" in the document` : 'the document must hold exactly one operation, or name one');
  return estimateOperationCost(model, document, operation, variables);
}

/** As `estimateCost`, for an operation already picked out of its document. */
export function estimateOperationCost(model: CostModel, document: DocumentNode, operation: OperationDefinitionNode, variables: Record<string, unknown> = {}): number {
  const rootType = model.schema.getRootType(operation.operation);
  if (!rootType) return 0;
  const estimator = new Estimator(model, document, operation, variables);
  try {
    return estimator.operation(rootType);
  } catch (error) {
    if (error === ceilingReached) return model.options.ceiling;
    throw error;
  }
}

/** Thrown inside the estimator to stop at once; never leaves this module. */
const ceilingReached = Symbol('ceiling reached');

/** Sizes the parent field's `@listSize(sizedFields:)` gives its child fields, by field name. */
type SizedFields = ReadonlyMap<string, number> | undefined;

class Estimator {
  private readonly fragments = new Map<string, FragmentDefinitionNode>();
  private readonly fragmentCosts = new Map<string, number>();
  private readonly inProgress = new Set<string>();
  private selections = 0;

  constructor(
    private readonly model: CostModel,
    document: DocumentNode,
    private readonly operationNode: OperationDefinitionNode,
    private readonly variables: Record<string, unknown>,
  ) {
    for (const definition of document.definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) this.fragments.set(definition.name.value, definition);
    }
  }

  operation(rootType: GraphQLNamedType): number {
    if (this.operationNode.operation !== 'mutation') return this.selectionSet(rootType, this.operationNode.selectionSet, undefined);
    // Each root field of a mutation, however reached (fragments, aliases), adds the mutation weight.
    let total = 0;
    this.forEachField(rootType, this.operationNode.selectionSet, (type, field) => {
      total = this.add(total, this.model.options.mutationWeight + this.field(type, field, undefined));
    });
    return total;
  }

  private selectionSet(parentType: GraphQLNamedType, selectionSet: SelectionSetNode, sized: SizedFields): number {
    let total = 0;
    for (const selection of selectionSet.selections) {
      this.countSelection();
      if (!this.included(selection.directives)) continue;
      if (selection.kind === Kind.FIELD) {
        total = this.add(total, this.field(parentType, selection, sized?.get(selection.name.value)));
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const type = selection.typeCondition ? this.model.schema.getType(selection.typeCondition.name.value) : parentType;
        // Every branch counts, as if the object were of each type at once: an upper bound.
        if (type) total = this.add(total, this.selectionSet(type, selection.selectionSet, sized));
      } else {
        total = this.add(total, this.fragment(selection.name.value, sized));
      }
    }
    return total;
  }

  /** The root fields of a mutation, through fragments, each with the type it is selected on. */
  private forEachField(parentType: GraphQLNamedType, selectionSet: SelectionSetNode, visit: (type: GraphQLNamedType, field: FieldNode) => void, seen = new Set<string>()): void {
    for (const selection of selectionSet.selections) {
      this.countSelection();
      if (!this.included(selection.directives)) continue;
      if (selection.kind === Kind.FIELD) visit(parentType, selection);
      else if (selection.kind === Kind.INLINE_FRAGMENT) this.forEachField(parentType, selection.selectionSet, visit, seen);
      else {
        const fragment = this.fragments.get(selection.name.value);
        if (!fragment || seen.has(fragment.name.value)) throw ceilingReached;
        this.forEachField(parentType, fragment.selectionSet, visit, new Set(seen).add(fragment.name.value));
      }
    }
  }

  private fragment(name: string, sized: SizedFields): number {
    const key = sized ? `${name}|${[...sized].map(([field, size]) => `${field}=${size}`).join(',')}` : name;
    const known = this.fragmentCosts.get(key);
    if (known !== undefined) return known;
    const fragment = this.fragments.get(name);
    if (!fragment) return 0; // validation refuses unknown fragments before us
    if (this.inProgress.has(key)) throw ceilingReached; // a cycle: infinite
    this.inProgress.add(key);
    const type = this.model.schema.getType(fragment.typeCondition.name.value);
    const cost = type ? this.selectionSet(type, fragment.selectionSet, sized) : 0;
    this.inProgress.delete(key);
    this.fragmentCosts.set(key, cost);
    return cost;
  }

  private field(parentType: GraphQLNamedType, node: FieldNode, sizeFromParent: number | undefined): number {
    const name = node.name.value;
    if (name.startsWith('__')) return 0;
    const definition = isObjectType(parentType) || isInterfaceType(parentType) ? parentType.getFields()[name] : undefined;
    if (!definition) return 0; // validation refuses unknown fields before us
    const declared = this.model.fields.get(`${parentType.name}.${name}`);
    const type = getNamedType(definition.type);
    const weight = declared?.weight ?? this.model.typeWeights.get(type.name) ?? (isCompositeType(type) ? 1 : 0);
    const listSize = declared?.listSize;
    const slicedSize = listSize ? this.slicedSize(node, definition, listSize) : undefined;
    const childSizes = listSize && listSize.sizedFields.length > 0 ? new Map(listSize.sizedFields.map((field) => [field, slicedSize ?? this.model.options.defaultListSize])) : undefined;
    const selections = node.selectionSet ? this.selectionSet(type, node.selectionSet, childSizes) : 0;
    const count = this.instances(definition, node, sizeFromParent ?? (listSize?.sizedFields.length ? undefined : slicedSize));
    let cost = this.multiply(count, this.add(weight, selections));
    if (declared?.argumentWeights) {
      for (const argument of node.arguments ?? []) cost = this.add(cost, declared.argumentWeights.get(argument.name.value) ?? 0);
    }
    return cost;
  }

  /** How many of the field's values there are: 1, or a list's size at each list level. */
  private instances(definition: GraphQLField<unknown, unknown>, node: FieldNode, size: number | undefined): number {
    let count = 1;
    let type = getNullableType(definition.type);
    while (isListType(type)) {
      count = this.multiply(count, size ?? this.entitiesCount(node) ?? this.model.options.defaultListSize);
      type = getNullableType(type.ofType);
    }
    return count;
  }

  /** A slicing argument's value (the largest when several are given), else the assumed size. */
  private slicedSize(node: FieldNode, definition: GraphQLField<unknown, unknown>, listSize: ListSize): number | undefined {
    let size: number | undefined;
    for (const name of listSize.slicingArguments) {
      const argument = node.arguments?.find((a) => a.name.value === name);
      const value = argument ? this.value(argument.value) : definition.args.find((a) => a.name === name)?.defaultValue;
      if (typeof value === 'number' && Number.isFinite(value)) size = Math.max(size ?? 0, Math.max(0, Math.trunc(value)));
    }
    return size ?? listSize.assumedSize;
  }

  /** `_entities(representations:)`, the query a gateway sends a subgraph: one value per representation. */
  private entitiesCount(node: FieldNode): number | undefined {
    if (node.name.value !== '_entities') return undefined;
    const argument: ArgumentNode | undefined = node.arguments?.find((a) => a.name.value === 'representations');
    if (!argument) return undefined;
    if (argument.value.kind === Kind.LIST) return argument.value.values.length;
    const value = this.value(argument.value);
    return Array.isArray(value) ? value.length : undefined;
  }

  /** A scalar argument's value from a literal or a variable (or its default); undefined otherwise. */
  private value(node: ValueNode): unknown {
    switch (node.kind) {
      case Kind.INT:
      case Kind.FLOAT:
        return Number(node.value);
      case Kind.BOOLEAN:
        return node.value;
      case Kind.VARIABLE: {
        const name = node.name.value;
        if (Object.hasOwn(this.variables, name)) return this.variables[name];
        const definition = this.operationNode.variableDefinitions?.find((d) => d.variable.name.value === name);
        return definition?.defaultValue ? this.value(definition.defaultValue) : undefined;
      }
      default:
        return undefined;
    }
  }

  /** `@skip(if:)` / `@include(if:)`: excluded only when a literal or a given variable says so. */
  private included(directives: readonly DirectiveNode[] | undefined): boolean {
    for (const directive of directives ?? []) {
      const name = directive.name.value;
      if (name !== 'skip' && name !== 'include') continue;
      const condition = directive.arguments?.find((a) => a.name.value === 'if');
      const value = condition ? this.value(condition.value) : undefined;
      if (typeof value !== 'boolean') continue;
      if ((name === 'skip' && value) || (name === 'include' && !value)) return false;
    }
    return true;
  }

  private countSelection(): void {
    if (++this.selections > this.model.options.maxSelections) throw ceilingReached;
  }

  private add(a: number, b: number): number {
    const sum = a + b;
    if (sum >= this.model.options.ceiling) throw ceilingReached;
    return sum;
  }

  private multiply(a: number, b: number): number {
    const product = a * b;
    if (product >= this.model.options.ceiling) throw ceilingReached;
    return product;
  }
}

/** The names under which the schema's `@link`s put `@cost` and `@listSize`. */
function directiveNames(schema: GraphQLSchema): { cost: Set<string>; listSize: Set<string> } {
  const cost = new Set<string>();
  const listSize = new Set<string>();
  const schemaDirectives = [schema.astNode, ...schema.extensionASTNodes].flatMap((node) => node?.directives ?? []);
  for (const link of schemaDirectives.filter((d) => d.name.value === 'link')) {
    const url = stringArgument(link, 'url');
    if (!url) continue;
    const isCost = costSpec.test(url);
    if (!isCost && !federationSpec.test(url)) continue;
    const prefix = stringArgument(link, 'as') ?? (isCost ? 'cost' : 'federation');
    const imports = importsOf(link);
    // The spec's own-named directive is `@<prefix>` (`@cost`); the others `@<prefix>__<name>` unless imported.
    cost.add(imports.get('cost') ?? (isCost ? prefix : `${prefix}__cost`));
    listSize.add(imports.get('listSize') ?? `${prefix}__listSize`);
  }
  if (cost.size === 0) cost.add('cost');
  if (listSize.size === 0) listSize.add('listSize');
  return { cost, listSize };
}

/** `import: ["@cost", { name: "@listSize", as: "@size" }]` → cost → cost, listSize → size. */
function importsOf(link: ConstDirectiveNode | DirectiveNode): Map<string, string> {
  const imports = new Map<string, string>();
  const value = link.arguments?.find((a) => a.name.value === 'import')?.value;
  if (value?.kind !== Kind.LIST) return imports;
  for (const item of value.values) {
    if (item.kind === Kind.STRING) imports.set(item.value.replace(/^@/, ''), item.value.replace(/^@/, ''));
    if (item.kind === Kind.OBJECT) {
      const name = item.fields.find((f) => f.name.value === 'name')?.value;
      const as = item.fields.find((f) => f.name.value === 'as')?.value;
      if (name?.kind === Kind.STRING) imports.set(name.value.replace(/^@/, ''), (as?.kind === Kind.STRING ? as.value : name.value).replace(/^@/, ''));
    }
  }
  return imports;
}

function stringArgument(directive: ConstDirectiveNode | DirectiveNode, name: string): string | undefined {
  const value = directive.arguments?.find((a) => a.name.value === name)?.value;
  return value?.kind === Kind.STRING ? value.value : undefined;
}

interface WithAst {
  astNode?: { directives?: readonly ConstDirectiveNode[] } | null | undefined;
  extensionASTNodes?: readonly { directives?: readonly ConstDirectiveNode[] }[];
}

function directivesOf(element: WithAst): ConstDirectiveNode[] {
  return [element.astNode, ...(element.extensionASTNodes ?? [])].flatMap((node) => node?.directives ?? []);
}

function weightOf(directives: readonly ConstDirectiveNode[], names: ReadonlySet<string>): number | undefined {
  const directive = directives.find((d) => names.has(d.name.value));
  const value = directive?.arguments?.find((a) => a.name.value === 'weight')?.value;
  // The spec's weight is an Int; a String ("2.5") is what its first draft used.
  if (value?.kind === Kind.INT || value?.kind === Kind.FLOAT || value?.kind === Kind.STRING) {
    const weight = Number(value.value);
    if (Number.isFinite(weight) && weight >= 0) return weight;
  }
  return undefined;
}

function listSizeOf(directives: readonly ConstDirectiveNode[], names: ReadonlySet<string>): ListSize | undefined {
  const directive = directives.find((d) => names.has(d.name.value));
  if (!directive) return undefined;
  const argument = (name: string) => directive.arguments?.find((a) => a.name.value === name)?.value;
  const strings = (name: string) => {
    const value = argument(name);
    if (value?.kind === Kind.STRING) return [value.value];
    return value?.kind === Kind.LIST ? value.values.flatMap((v) => (v.kind === Kind.STRING ? [v.value] : [])) : [];
  };
  const assumed = argument('assumedSize');
  return {
    assumedSize: assumed?.kind === Kind.INT ? Math.max(0, Number(assumed.value)) : undefined,
    slicingArguments: strings('slicingArguments'),
    sizedFields: strings('sizedFields'),
  };
}

function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}
