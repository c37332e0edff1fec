/**
 * A context's database pool (issue 13): connections in use and idle, and statements waiting for
 * one, read from node-postgres' pool when Prometheus scrapes. Waiting statements that stay above
 * zero mean the pool is too small for the load (or a statement holds its connection too long);
 * past `DATABASE_CONNECTION_WAIT_MS` they fail as SERVICE_OVERLOADED (docs/decisions/0016).
 */
import client from 'prom-client';

/** What node-postgres' `pg.Pool` tells of itself. */
export interface PoolCounts {
  readonly totalCount: number;
  readonly idleCount: number;
  readonly waitingCount: number;
}

/** Registers the pool gauges of this process's context; `pools` are its database's pools now (usually one). */
export function createPoolMetrics(registry: client.Registry, pools: () => readonly PoolCounts[]): void {
  const sum = (count: (pool: PoolCounts) => number) => pools().reduce((total, pool) => total + count(pool), 0);
  new client.Gauge({
    name: 'database_pool_connections',
    help: 'Connections of this context’s database pool, by state: in_use (held by a statement or transaction) or idle.',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      const idle = sum((pool) => pool.idleCount);
      this.set({ state: 'in_use' }, sum((pool) => pool.totalCount) - idle);
      this.set({ state: 'idle' }, idle);
    },
  });
  new client.Gauge({
    name: 'database_pool_waiting_requests',
    help: 'Statements of this context waiting for a connection of its database pool.',
    registers: [registry],
    collect() {
      this.set(sum((pool) => pool.waitingCount));
    },
  });
}
