/**
 * What a failed subgraph fetch leaves missing, as response paths: the executor of
 * @apollo/gateway records an error thrown by a data source with no path at all, but maps the paths
 * of the errors a data source returns into the client's response (`_entities` indexes become the
 * entities' own paths, e.g. `["products", "edges", 3, "node", "stock"]`). So a failed fetch is
 * answered as a subgraph would answer it: one error per field the fetch would have filled.
 *
 * - a root fetch (`{ me { … } products { … } }`): one path per top-level response key;
 * - an entity fetch (`_entities(representations: …) { … on Product { stock } }`): one path per
 *   entity and field selected for that entity's type.
 */
import { Kind, type DocumentNode, type FragmentDefinitionNode, type SelectionSetNode } from 'graphql';

export type ResponsePath = (string | number)[];

/**
 * At most this many paths for one failed fetch: a list of a hundred entities with several fields
 * each would otherwise answer with hundreds of identical errors. @default 100
 */
export const maxPathsPerFailedFetch = 100;

export function missingPaths(document: DocumentNode, variables: Record<string, unknown> | undefined, limit = maxPathsPerFailedFetch): ResponsePath[] {
  const operation = document.definitions.find((definition) => definition.kind === Kind.OPERATION_DEFINITION);
  if (!operation || operation.kind !== Kind.OPERATION_DEFINITION) return [];
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  const entities = operation.selectionSet.selections.find((selection) => selection.kind === Kind.FIELD && selection.name.value === '_entities');
  if (!entities || entities.kind !== Kind.FIELD || !entities.selectionSet) {
    return responseKeys(operation.selectionSet, undefined, fragments)
      .slice(0, limit)
      .map((key) => [key]);
  }
  const representations = Array.isArray(variables?.representations) ? (variables.representations as unknown[]) : [];
  const paths: ResponsePath[] = [];
  for (const [index, representation] of representations.entries()) {
    const typename = (representation as { __typename?: unknown } | null)?.__typename;
    for (const key of responseKeys(entities.selectionSet, typeof typename === 'string' ? typename : undefined, fragments)) {
      if (paths.length >= limit) return paths;
      paths.push(['_entities', index, key]);
    }
  }
  return paths;
}

/** The response keys a selection set fills for an object of `typename` (any type when undefined); `__typename` excluded. */
function responseKeys(selectionSet: SelectionSetNode, typename: string | undefined, fragments: ReadonlyMap<string, FragmentDefinitionNode>, keys = new Set<string>()): string[] {
  const applies = (condition: string | undefined) => condition === undefined || typename === undefined || condition === typename;
  for (const selection of selectionSet.selections) {
    if (selection.kind === Kind.FIELD) {
      if (selection.name.value !== '__typename') keys.add(selection.alias?.value ?? selection.name.value);
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      if (applies(selection.typeCondition?.name.value)) responseKeys(selection.selectionSet, typename, fragments, keys);
    } else {
      const fragment = fragments.get(selection.name.value);
      if (fragment && applies(fragment.typeCondition.name.value)) responseKeys(fragment.selectionSet, typename, fragments, keys);
    }
  }
  return [...keys];
}
