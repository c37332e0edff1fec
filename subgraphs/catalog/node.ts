/**
 * `Query.node` and `Query.nodes` (docs/decisions/0029): the catalog decodes global ids for the
 * whole supergraph. Its own types (Product, Category) are loaded here; the others (Customer,
 * Order) are answered as key-only references `{ __typename, id }`, and the gateway fetches their
 * fields from the subgraph that owns them, whose `__resolveReference` decides who may read them —
 * a global id opens nothing `order(id:)` would not.
 *
 * An id that is not one of ours is NOT_FOUND; one of ours that names nothing is null without an
 * error, as `product(id:)` and `order(id:)` answer (and as the owners answer a reference).
 */
import { invalidInput, notFoundError } from '../../platform/errors/domain-error.ts';
import { fromGlobalId, toGlobalId, type NodeReference, type NodeType } from '../../platform/graphql/global-ids.ts';
import type { CatalogContext } from './context.ts';

/** The most ids one `nodes` takes: what `@listSize(assumedSize:)` prices it at. */
export const maxNodeIds = 100;

type Node = Record<string, unknown> & { __typename: NodeType };

const notFound = (globalId: string) => notFoundError(`Could not resolve to a node with the global id of '${globalId.slice(0, 128)}'`);

/** The object a global id names, as the catalog can give it; a NOT_FOUND error for an id not of ours. */
async function resolveNode(globalId: string, ctx: CatalogContext): Promise<Node | Error | null> {
  const reference = fromGlobalId(globalId);
  if (!reference) return notFound(globalId);
  const local = await loadLocal(reference, ctx);
  return local === undefined ? { ...reference } : local;
}

/** Products and categories are the catalog's own: null when there is none, undefined for other types. */
async function loadLocal(reference: NodeReference, ctx: CatalogContext): Promise<Node | null | undefined> {
  switch (reference.__typename) {
    case 'Product': {
      const product = await ctx.productLoader.load(reference.id);
      return product && { ...product, __typename: 'Product' };
    }
    case 'Category': {
      const category = await ctx.categoryLoader.load(reference.id);
      return category && { ...category, __typename: 'Category' };
    }
    default:
      return undefined;
  }
}

/** A key-only reference to an entity another subgraph owns: the catalog only knows its id. */
const reference = (type: NodeType) => ({
  __resolveReference: (ref: { id: string }) => ({ id: ref.id }),
  nodeId: (entity: { id: string }) => toGlobalId(type, entity.id),
});

export const nodeResolvers = {
  Query: {
    node: async (_root: unknown, { id }: { id: string }, ctx: CatalogContext) => {
      const node = await resolveNode(id, ctx);
      if (node instanceof Error) throw node;
      return node;
    },
    // An Error in the list becomes null at its index with the error at `nodes.<index>`.
    nodes: (_root: unknown, { ids }: { ids: string[] }, ctx: CatalogContext) => {
      if (ids.length > maxNodeIds) throw invalidInput(`nodes takes at most ${maxNodeIds} ids`, 'ids');
      return Promise.all(ids.map((id) => resolveNode(id, ctx)));
    },
  },
  Node: {
    __resolveType: (node: Node) => node.__typename,
  },
  Customer: reference('Customer'),
  Order: reference('Order'),
};
