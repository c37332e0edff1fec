/** The shipping context's own database, reached only through its own Prisma client. */
import { PrismaClient } from '../../../prisma/shipping/client/client.ts';
import { prismaClientOptions } from '../../../platform/database/prisma.ts';
import { countStatements, type StatementCounter } from '../../../platform/database/statements.ts';

export type ShippingDatabase = PrismaClient<'query'>;

export function connectShippingDatabase(databaseUrl: string): { db: ShippingDatabase; statements: StatementCounter } {
  const db = new PrismaClient(prismaClientOptions(databaseUrl));
  return { db, statements: countStatements(db) };
}
