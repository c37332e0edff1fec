/**
 * Options every context's Prisma client is built with: the pg driver adapter (Prisma 7 needs no
 * native engine with it) and query events, which the statement counter listens to.
 */
import { PrismaPg } from '@prisma/adapter-pg';

/** Connections per context's Prisma client: `DATABASE_POOL_SIZE`, default 10. */
export function defaultPoolSize(): number {
  const configured = Number(process.env.DATABASE_POOL_SIZE);
  return Number.isInteger(configured) && configured > 0 ? configured : 10;
}

export function prismaClientOptions(databaseUrl: string, poolSize = defaultPoolSize()) {
  return {
    adapter: new PrismaPg({ connectionString: databaseUrl, max: poolSize }),
    log: [{ emit: 'event' as const, level: 'query' as const }],
  };
}
