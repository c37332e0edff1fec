/**
 * Global ids (Relay's Global Object Identification, docs/decisions/0029): the `nodeId` of an
 * entity is `base64("<Type>:<uuid>")`, the encoding of graphql-relay's `toGlobalId`, so tools
 * that know it read ours. Clients treat it as opaque; `id` stays the entity's UUID, which every
 * argument, event and other subgraph uses.
 */
import { isUuid } from '../ids.ts';

/** The entity types with a global id, each owned by one subgraph (`@key(fields: "id")`). */
export const nodeTypes = ['Customer', 'Product', 'Category', 'Order'] as const;
export type NodeType = (typeof nodeTypes)[number];

export interface NodeReference {
  __typename: NodeType;
  /** The entity's UUID, lower case. */
  id: string;
}

const isNodeType = (value: string): value is NodeType => (nodeTypes as readonly string[]).includes(value);

export function toGlobalId(type: NodeType, id: string): string {
  return Buffer.from(`${type}:${id.toLowerCase()}`, 'utf8').toString('base64');
}

/**
 * The entity a global id names, or undefined when it is not one of ours: not canonical base64
 * (so every entity has exactly one global id), an unknown type, or an id that is not a UUID.
 */
export function fromGlobalId(globalId: string): NodeReference | undefined {
  if (globalId.length > 128) return undefined;
  const text = Buffer.from(globalId, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  const type = text.slice(0, colon);
  const id = text.slice(colon + 1);
  if (!isNodeType(type) || !isUuid(id) || toGlobalId(type, id) !== globalId) return undefined;
  return { __typename: type, id: id.toLowerCase() };
}
