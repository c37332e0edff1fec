/** The catalog context's own database, reached only through its own Prisma client. */
import { PrismaClient } from '../../../prisma/catalog/client/client.ts';
import { prismaClientOptions } from '../../../platform/database/prisma.ts';
import { countStatements, type StatementCounter } from '../../../platform/database/statements.ts';

export type CatalogDatabase = PrismaClient<'query'>;

export function connectCatalogDatabase(databaseUrl: string): { db: CatalogDatabase; statements: StatementCounter } {
  const db = new PrismaClient(prismaClientOptions(databaseUrl));
  return { db, statements: countStatements(db) };
}
