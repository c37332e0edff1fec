/** The payments context's own database, reached only through its own Prisma client. */
import { PrismaClient } from '../../../prisma/payments/client/client.ts';
import { prismaClientOptions } from '../../../platform/database/prisma.ts';
import { countStatements, type StatementCounter } from '../../../platform/database/statements.ts';

export type PaymentsDatabase = PrismaClient<'query'>;

export function connectPaymentsDatabase(databaseUrl: string): { db: PaymentsDatabase; statements: StatementCounter } {
  const db = new PrismaClient(prismaClientOptions(databaseUrl));
  return { db, statements: countStatements(db) };
}
