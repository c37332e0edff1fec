/** The inventory context's own database, reached only through its own Prisma client. */
import { PrismaClient, type Prisma } from '../../../prisma/inventory/client/client.ts';
import { prismaClientOptions } from '../../../platform/database/prisma.ts';
import { countStatements, type StatementCounter } from '../../../platform/database/statements.ts';

export type InventoryDatabase = PrismaClient<'query'>;

/** The `tx` of `db.$transaction(async (tx) => …)`, e.g. the inbox's. */
export type InventoryTransaction = Prisma.TransactionClient;

export function connectInventoryDatabase(databaseUrl: string, poolSize?: number): { db: InventoryDatabase; statements: StatementCounter } {
  const db = new PrismaClient(prismaClientOptions(databaseUrl, poolSize));
  return { db, statements: countStatements(db) };
}
