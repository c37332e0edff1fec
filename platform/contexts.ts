/**
 * The bounded contexts of the platform, in one place: their names, default ports and where
 * their Prisma schema lives. Everything that iterates over contexts (start, compose, migrate,
 * tests) reads this list, so adding a context is one line here plus its folders.
 */
export const contexts = [
  { name: 'accounts', port: 4001 },
  { name: 'catalog', port: 4002 },
  { name: 'inventory', port: 4003 },
  { name: 'orders', port: 4004 },
  { name: 'payments', port: 4005 },
  { name: 'shipping', port: 4006 },
] as const;

export type ContextName = (typeof contexts)[number]['name'];

export const contextNames: readonly ContextName[] = contexts.map((c) => c.name);

export function isContextName(value: string): value is ContextName {
  return (contextNames as readonly string[]).includes(value);
}

export function defaultPortOf(name: ContextName): number {
  return contexts.find((c) => c.name === name)!.port;
}

/** The subgraph's own URL as written into the committed supergraph (local development). */
export function defaultSubgraphUrl(name: ContextName): string {
  return `http://localhost:${defaultPortOf(name)}/graphql`;
}
