/**
 * Removes from an operation what a caller may not see, before anything is planned — Apollo
 * Router's semantics for `@authenticated`, `@requiresScopes` and `@policy`:
 *
 * - a field is removed when its own requirement or its type's is not met; on an interface, when
 *   the field or the type of any implementation that could be returned there is not;
 * - a fragment on a type the caller may not see is removed with its fields;
 * - a field whose every selection was removed is removed too (its children carry the errors);
 * - `__typename` and introspection are never removed.
 *
 * Each removed field is kept with its response path (aliases, and `@` for list positions, as
 * Router writes them) and the nullability along it, so completion.ts can answer `null` there
 * and propagate it as GraphQL does. Named fragments are inlined: the filtered document stands
 * alone (it is only ever planned, never shown).
 */
import {
  getNamedType,
  getNullableType,
  getOperationAST,
  isInterfaceType,
  isListType,
  isNonNullType,
  isObjectType,
  isUnionType,
  Kind,
  visit,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLField,
  type GraphQLOutputType,
  type GraphQLSchema,
  type InlineFragmentNode,
  type SelectionNode,
  type SelectionSetNode,
} from 'graphql';
import { GatewayRefusal } from '../pipeline/refusal.ts';
import type { AuthorizationRules, Requirement } from './rules.ts';

/** What the caller brings: authentication, scopes, and which policies hold for it. */
export interface CallerAuthorization {
  readonly authenticated: boolean;
  readonly scopes: ReadonlySet<string>;
  /** The policies that hold for this caller (any other is refused). */
  readonly policies: ReadonlySet<string>;
}

/** One field on the way to a removed field, as the response shows it. */
export interface PathStep {
  /** Its response key: the alias, else the name. */
  readonly key: string;
  /** Whether the field's value may be null, then each list level's items, outermost first. */
  readonly nullable: readonly boolean[];
  /** Set when type conditions narrow the object holding it: the object types it applies to. */
  readonly on?: ReadonlySet<string>;
}

export interface RemovedField {
  readonly steps: readonly PathStep[];
  /** False for a field removed because everything under it was: the errors are its children's. */
  readonly reported: boolean;
}

export interface FilteredOperation {
  /** What is left to execute; null when nothing is. */
  readonly document: DocumentNode | null;
  readonly removed: readonly RemovedField[];
  /** Objects whose selections got `typenameAlias`, to tell their type apart: removed from the result again. */
  readonly typenameAt: readonly (readonly PathStep[])[];
}

/** Asked where a removed field's object must be told apart by type; no client's alias would be this. */
export const typenameAlias = '_authorization_typename';

/** Fields visited at most per operation (fragments inlined): beyond, the operation is refused. */
const maxVisitedFields = 50_000;

export function satisfies(requirement: Requirement | undefined, caller: CallerAuthorization): boolean {
  if (!requirement) return true;
  if (requirement.authenticated && !caller.authenticated) return false;
  const holds = (all: readonly (readonly (readonly string[])[])[], granted: ReadonlySet<string>) =>
    all.every((alternatives) => alternatives.some((set) => set.every((name) => granted.has(name))));
  return holds(requirement.scopes, caller.scopes) && holds(requirement.policies, caller.policies);
}

/** The operation the client named in `document`, without what `caller` may not see. */
export function filterOperation(schema: GraphQLSchema, rules: AuthorizationRules, caller: CallerAuthorization, document: DocumentNode, operationName: string | null): FilteredOperation {
  const operation = getOperationAST(document, operationName);
  const rootType = operation ? schema.getRootType(operation.operation) : undefined;
  if (!operation || !rootType) return { document, removed: [], typenameAt: [] };
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  const filter = new OperationFilter(schema, rules, caller, fragments);
  const selectionSet = filter.selectionSet(operation.selectionSet, rootType, [], new Set([rootType.name]), new Set([rootType.name]));
  if (filter.removed.length === 0) return { document, removed: [], typenameAt: [] };
  if (!selectionSet) return { document: null, removed: filter.removed, typenameAt: [] };
  const used = new Set<string>();
  visit(selectionSet, { Variable: (node) => void used.add(node.name.value) });
  const filtered: DocumentNode = {
    kind: Kind.DOCUMENT,
    definitions: [{ ...operation, variableDefinitions: operation.variableDefinitions?.filter((definition) => used.has(definition.variable.name.value)), selectionSet }],
  };
  return { document: filtered, removed: filter.removed, typenameAt: filter.typenameAt };
}

class OperationFilter {
  readonly removed: RemovedField[] = [];
  readonly typenameAt: PathStep[][] = [];
  #visited = 0;

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly rules: AuthorizationRules,
    private readonly caller: CallerAuthorization,
    private readonly fragments: ReadonlyMap<string, FragmentDefinitionNode>,
  ) {}

  /**
   * The selections of `set` the caller may see, or null when none is left. `possible` are the
   * object types the selections may apply to here (narrowed by type conditions), `level` those
   * of the field that holds them.
   */
  selectionSet(set: SelectionSetNode, parent: GraphQLCompositeType, path: PathStep[], possible: ReadonlySet<string>, level: ReadonlySet<string>): SelectionSetNode | null {
    const kept: SelectionNode[] = [];
    let changed = false;
    for (const selection of set.selections) {
      const filtered = selection.kind === Kind.FIELD ? this.#field(selection, parent, path, possible, level) : this.#fragment(selection, parent, path, possible, level);
      if (filtered !== selection) changed = true;
      if (filtered) kept.push(filtered);
    }
    if (kept.length === 0) return null;
    return changed ? { ...set, selections: kept } : set;
  }

  #field(node: FieldNode, parent: GraphQLCompositeType, path: PathStep[], possible: ReadonlySet<string>, level: ReadonlySet<string>): FieldNode | null {
    if (++this.#visited > maxVisitedFields) throw new GatewayRefusal('OPERATION_TOO_LARGE', `The operation has more than ${maxVisitedFields} fields once its fragments are expanded`, { status: 400 });
    const name = node.name.value;
    // __typename, and introspection (__schema, __type): authorization does not apply (as Router).
    if (name.startsWith('__') || isUnionType(parent)) return node;
    const definition = parent.getFields()[name];
    if (!definition) return node;
    const step: PathStep = { key: node.alias?.value ?? name, nullable: nullabilityOf(definition.type), ...(possible.size < level.size ? { on: possible } : {}) };
    const steps = [...path, step];
    if (!this.#mayRead(parent, definition, possible)) return this.#remove(steps, true);
    if (!node.selectionSet) return node;
    const type = getNamedType(definition.type) as GraphQLCompositeType;
    const types = this.#possibleTypes(type);
    const inner = this.selectionSet(node.selectionSet, type, steps, types, types);
    if (!inner) return this.#remove(steps, false);
    // A removal under a narrowing type condition at this level: its objects must say their type.
    const needsTypename = this.removed.some((removed) => removed.steps.length === steps.length + 1 && removed.steps.at(-1)!.on && sameSteps(removed.steps, steps));
    if (needsTypename) {
      this.typenameAt.push(steps);
      const typename: FieldNode = { kind: Kind.FIELD, alias: { kind: Kind.NAME, value: typenameAlias }, name: { kind: Kind.NAME, value: '__typename' } };
      return { ...node, selectionSet: { ...inner, selections: [...inner.selections, typename] } };
    }
    return inner === node.selectionSet ? node : { ...node, selectionSet: inner };
  }

  #fragment(selection: Exclude<SelectionNode, FieldNode>, parent: GraphQLCompositeType, path: PathStep[], possible: ReadonlySet<string>, level: ReadonlySet<string>): InlineFragmentNode | null {
    const fragment = selection.kind === Kind.FRAGMENT_SPREAD ? this.fragments.get(selection.name.value) : selection;
    if (!fragment) return null;
    const conditionName = fragment.typeCondition?.name.value;
    const condition = (conditionName ? this.schema.getType(conditionName) : parent) as GraphQLCompositeType | undefined;
    if (!condition) return null;
    const narrowed = new Set([...this.#possibleTypes(condition)].filter((type) => possible.has(type)));
    // A fragment on a type the caller may not see: its fields are removed with it.
    if (isObjectType(condition) && !satisfies(this.rules.types.get(condition.name), this.caller)) {
      for (const field of fragment.selectionSet.selections) {
        if (field.kind !== Kind.FIELD || field.name.value.startsWith('__')) continue;
        const definition = condition.getFields()[field.name.value];
        if (definition) this.removed.push({ steps: [...path, { key: field.alias?.value ?? field.name.value, nullable: nullabilityOf(definition.type), ...(narrowed.size < level.size ? { on: narrowed } : {}) }], reported: true });
      }
      return null;
    }
    const inner = this.selectionSet(fragment.selectionSet, condition, path, narrowed, level);
    if (!inner) return null;
    // Inlined: the filtered document has no fragment definitions to keep in step.
    const inline: InlineFragmentNode = {
      kind: Kind.INLINE_FRAGMENT,
      ...(fragment.typeCondition ? { typeCondition: fragment.typeCondition } : {}),
      ...(selection.directives?.length ? { directives: selection.directives } : {}),
      selectionSet: inner,
    };
    return selection.kind === Kind.INLINE_FRAGMENT && inner === selection.selectionSet ? selection : inline;
  }

  /** The field's own requirement and its type's; on an interface, those of every implementation possible here. */
  #mayRead(parent: GraphQLCompositeType, definition: GraphQLField<unknown, unknown>, possible: ReadonlySet<string>): boolean {
    const { rules, caller } = this;
    if (!satisfies(rules.fields.get(`${parent.name}.${definition.name}`), caller)) return false;
    if (!satisfies(rules.types.get(getNamedType(definition.type).name), caller)) return false;
    if (!isInterfaceType(parent)) return true;
    for (const type of possible) {
      if (!satisfies(rules.types.get(type), caller) || !satisfies(rules.fields.get(`${type}.${definition.name}`), caller)) return false;
    }
    return true;
  }

  #remove(steps: PathStep[], reported: boolean): null {
    this.removed.push({ steps, reported });
    return null;
  }

  #possibleTypes(type: GraphQLCompositeType): ReadonlySet<string> {
    return new Set(isObjectType(type) ? [type.name] : this.schema.getPossibleTypes(type).map((possible) => possible.name));
  }
}

/** Nullability of a field's value, then of each list level's items. */
function nullabilityOf(type: GraphQLOutputType): boolean[] {
  const nullable: boolean[] = [];
  let current: GraphQLOutputType = type;
  for (;;) {
    nullable.push(!isNonNullType(current));
    const inner = getNullableType(current);
    if (!isListType(inner)) return nullable;
    current = inner.ofType as GraphQLOutputType;
  }
}

function sameSteps(longer: readonly PathStep[], prefix: readonly PathStep[]): boolean {
  return prefix.every((step, index) => longer[index] === step);
}

/** The path of a removed field in the response, as Router writes it: `@` for each list position. */
export function responsePathOf(steps: readonly PathStep[]): string[] {
  return steps.flatMap((step, index) => (index === steps.length - 1 ? [step.key] : [step.key, ...Array<string>(step.nullable.length - 1).fill('@')]));
}
