/**
 * Database errors arrive wrapped: a GraphQL error around a Prisma error around the driver
 * adapter's error around node-postgres's. What classifies them (connection-loss.ts, overload.ts)
 * looks at each link of the chain with the same walk.
 */

/** The fields of any link that tell what went wrong. */
export interface DatabaseErrorShape {
  name?: unknown;
  code?: unknown;
  kind?: unknown;
  originalCode?: unknown;
  message?: unknown;
  cause?: unknown;
  originalError?: unknown;
  meta?: { driverAdapterError?: unknown };
}

/** The first link of `error`'s chain (itself included) that `matches`, breadth first. */
export function findInErrorChain(error: unknown, matches: (link: DatabaseErrorShape) => boolean): DatabaseErrorShape | undefined {
  const seen = new Set<unknown>();
  const pending: unknown[] = [error];
  // A handful of wrappers at most; bounded anyway, since `cause` chains are anyone's to build.
  while (pending.length > 0 && seen.size < 16) {
    const current = pending.shift();
    if (!current || typeof current !== 'object' || seen.has(current)) continue;
    seen.add(current);
    const link = current as DatabaseErrorShape;
    if (matches(link)) return link;
    pending.push(link.cause, link.originalError, link.meta?.driverAdapterError);
    if (current instanceof AggregateError) pending.push(...current.errors);
  }
  return undefined;
}
