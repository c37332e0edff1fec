/**
 * Counts the SQL statements a Prisma client sends. It is how we prove, in tests and in
 * benchmarks, that an entity fetch costs one statement whatever the list length.
 */
export interface StatementCounter {
  /** Statements sent since the client was created. */
  readonly count: number;
}

interface QueryEventSource {
  $on(event: 'query', listener: (event: { query: string }) => void): void;
}

export function countStatements(client: QueryEventSource): StatementCounter {
  const counter = { count: 0 };
  client.$on('query', () => {
    counter.count += 1;
  });
  return counter;
}
