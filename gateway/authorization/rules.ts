/**
 * The authorization rules a supergraph carries: `@authenticated`, `@requiresScopes` and `@policy`
 * as composition writes them (each linked `for: SECURITY` to its spec at specs.apollo.dev), read
 * once into requirements per type and per field.
 *
 * @apollo/gateway refuses a supergraph with SECURITY features it does not enforce, rightly: it
 * would serve every field to everybody. The gateway enforces them (plugins/authorization.ts)
 * before planning, so it hands @apollo/gateway the same supergraph without them
 * (`withoutAuthorizationDirectives`); nothing else in the supergraph changes.
 */
import { DEFAULT_SUPPORTED_SUPERGRAPH_FEATURES } from '@apollo/federation-internals';
import { Kind, parse, print, visit, type ConstDirectiveNode, type ConstValueNode, type DocumentNode } from 'graphql';

/** The specs of the authorization directives, by kind. */
const specs = {
  authenticated: 'https://specs.apollo.dev/authenticated/v0.1',
  requiresScopes: 'https://specs.apollo.dev/requiresScopes/v0.1',
  policy: 'https://specs.apollo.dev/policy/v0.1',
} as const;
type Kind3 = keyof typeof specs;

/** What a supergraph with authorization directives needs of a reader: the default features and these. */
export const supportedSupergraphFeatures: Set<string> = new Set([...DEFAULT_SUPPORTED_SUPERGRAPH_FEATURES, ...Object.values(specs)]);

/**
 * What one type or field asks of a caller, all of it together (AND). Scopes and policies are
 * lists of alternatives (OR) of sets that must all hold (AND), as the directives write them; a
 * field and its type each add theirs.
 */
export interface Requirement {
  authenticated: boolean;
  scopes: readonly (readonly (readonly string[])[])[];
  policies: readonly (readonly (readonly string[])[])[];
}

export interface AuthorizationRules {
  /** By type name: what every field returning the type (or a fragment on it) needs. */
  readonly types: ReadonlyMap<string, Requirement>;
  /** By `Type.field`. */
  readonly fields: ReadonlyMap<string, Requirement>;
  /** Every policy name the supergraph uses. */
  readonly policies: ReadonlySet<string>;
}

/** The directive names the supergraph uses for each spec (`@link(url:, as:)`), absent when it does not link it. */
function linkedNames(document: DocumentNode): Map<string, Kind3> {
  const names = new Map<string, Kind3>();
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.SCHEMA_DEFINITION && definition.kind !== Kind.SCHEMA_EXTENSION) continue;
    for (const directive of definition.directives ?? []) {
      if (directive.name.value !== 'link') continue;
      const url = stringArgument(directive, 'url');
      const kind = (Object.keys(specs) as Kind3[]).find((name) => url === specs[name]);
      if (kind) names.set(stringArgument(directive, 'as') ?? kind, kind);
    }
  }
  return names;
}

function stringArgument(directive: ConstDirectiveNode, name: string): string | undefined {
  const value = directive.arguments?.find((argument) => argument.name.value === name)?.value;
  return value?.kind === Kind.STRING ? value.value : undefined;
}

/** `[["a", "b"], ["c"]]` as lists of strings. */
function nestedStrings(value: ConstValueNode | undefined): string[][] {
  if (value?.kind !== Kind.LIST) return [];
  return value.values.map((inner) => (inner.kind === Kind.LIST ? inner.values.flatMap((item) => (item.kind === Kind.STRING ? [item.value] : [])) : []));
}

/** What these directives (of one type or field) ask, or undefined when none is an authorization directive. */
function requirementOf(directives: readonly ConstDirectiveNode[] | undefined, names: Map<string, Kind3>): Requirement | undefined {
  let requirement: Requirement | undefined;
  for (const directive of directives ?? []) {
    const kind = names.get(directive.name.value);
    if (!kind) continue;
    requirement ??= { authenticated: false, scopes: [], policies: [] };
    if (kind === 'authenticated') requirement.authenticated = true;
    const argument = directive.arguments?.find((candidate) => candidate.name.value === (kind === 'requiresScopes' ? 'scopes' : 'policies'))?.value;
    if (kind === 'requiresScopes') requirement = { ...requirement, scopes: [...requirement.scopes, nestedStrings(argument)] };
    if (kind === 'policy') requirement = { ...requirement, policies: [...requirement.policies, nestedStrings(argument)] };
  }
  return requirement;
}

/** Reads the authorization rules of a supergraph (SDL text). */
export function authorizationRulesOf(supergraphSdl: string): AuthorizationRules {
  const document = parse(supergraphSdl);
  const names = linkedNames(document);
  const types = new Map<string, Requirement>();
  const fields = new Map<string, Requirement>();
  const policies = new Set<string>();
  if (names.size === 0) return { types, fields, policies };
  const remember = (map: Map<string, Requirement>, key: string, requirement: Requirement | undefined) => {
    if (!requirement) return;
    map.set(key, requirement);
    for (const alternatives of requirement.policies) for (const set of alternatives) for (const policy of set) policies.add(policy);
  };
  for (const definition of document.definitions) {
    if (!('name' in definition) || !definition.name || !('directives' in definition)) continue;
    const typeName = definition.name.value;
    remember(types, typeName, requirementOf(definition.directives as readonly ConstDirectiveNode[] | undefined, names));
    if (!('fields' in definition)) continue;
    for (const field of definition.fields ?? []) {
      if (field.kind === Kind.FIELD_DEFINITION) remember(fields, `${typeName}.${field.name.value}`, requirementOf(field.directives, names));
    }
  }
  return { types, fields, policies };
}

/**
 * The supergraph without its authorization directives, their definitions, scalars and links:
 * what @apollo/gateway plans with, once the gateway itself enforces them.
 */
export function withoutAuthorizationDirectives(supergraphSdl: string): string {
  const document = parse(supergraphSdl);
  const names = linkedNames(document);
  if (names.size === 0) return supergraphSdl;
  const scalars = new Set([...names].flatMap(([name, kind]) => (kind === 'requiresScopes' ? [`${name}__Scope`] : kind === 'policy' ? [`${name}__Policy`] : [])));
  const linked = new Set<string>(Object.values(specs));
  const stripped = visit(document, {
    Directive(node) {
      if (names.has(node.name.value)) return null;
      if (node.name.value === 'link' && linked.has(stringArgument(node as ConstDirectiveNode, 'url') ?? '')) return null;
      return undefined;
    },
    DirectiveDefinition(node) {
      return names.has(node.name.value) ? null : undefined;
    },
    ScalarTypeDefinition(node) {
      return scalars.has(node.name.value) ? null : undefined;
    },
  });
  return `${print(stripped)}\n`;
}
