/**
 * Every mutation of a context waits its turn in the context's write queue
 * (platform/database/write-queue.ts, docs/decisions/0016): once, here, for every context and every
 * mutation, rather than in each resolver. Queries do not wait: they are short, and the queue
 * leaves them a connection of the pool.
 *
 * A mutation refused by the queue has not started; its error (ServiceOverloaded) reaches the
 * client as SERVICE_OVERLOADED with HTTP 503 and `Retry-After` (errors/masking.ts,
 * graphql/overload-status.ts). The request's deadline (`x-request-deadline`, deadline.ts) bounds
 * how long it may wait.
 */
import type { GraphQLFieldResolver } from 'graphql';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import type { WriteQueue } from '../database/write-queue.ts';
import { deadlineOf } from './deadline.ts';

type FieldResolver = GraphQLFieldResolver<unknown, object>;
type FieldConfig = FieldResolver | { resolve?: FieldResolver };

/** The resolvers, with each Mutation field's resolver run in its turn of `queue`. */
export function queueMutations<TContext>(resolvers: GraphQLResolverMap<TContext>, queue: WriteQueue): GraphQLResolverMap<TContext> {
  const mutation = resolvers.Mutation as Record<string, FieldConfig> | undefined;
  if (!mutation) return resolvers;
  const inTurn = (resolve: FieldResolver): FieldResolver => (root, args, context, info) =>
    queue.run(async () => resolve(root, args, context, info), { deadline: deadlineOf(context) });
  const queued = Object.fromEntries(
    Object.entries(mutation).map(([field, config]) => {
      if (typeof config === 'function') return [field, inTurn(config)];
      return [field, config.resolve ? { ...config, resolve: inTurn(config.resolve) } : config];
    }),
  );
  return { ...resolvers, Mutation: queued } as GraphQLResolverMap<TContext>;
}
