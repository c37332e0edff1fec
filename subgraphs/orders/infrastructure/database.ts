/** The orders context's own database, reached only through its own Prisma client. */
import { PrismaClient, type Prisma } from '../../../prisma/orders/client/client.ts';
import { prismaClientOptions } from '../../../platform/database/prisma.ts';
import { countStatements, type StatementCounter } from '../../../platform/database/statements.ts';

export type OrdersDatabase = PrismaClient<'query'>;

/** An interactive transaction of the orders database (`db.$transaction(async (tx) => …)`). */
export type OrdersTransaction = Prisma.TransactionClient;

export function connectOrdersDatabase(databaseUrl: string, poolSize?: number): { db: OrdersDatabase; statements: StatementCounter } {
  const db = new PrismaClient(prismaClientOptions(databaseUrl, poolSize));
  return { db, statements: countStatements(db) };
}
