/** The accounts context's own database, reached only through its own Prisma client. */
import { PrismaClient } from '../../../prisma/accounts/client/client.ts';
import { prismaClientOptions } from '../../../platform/database/prisma.ts';
import { countStatements, type StatementCounter } from '../../../platform/database/statements.ts';

export type AccountsDatabase = PrismaClient<'query'>;

export function connectAccountsDatabase(databaseUrl: string): { db: AccountsDatabase; statements: StatementCounter } {
  const db = new PrismaClient(prismaClientOptions(databaseUrl));
  return { db, statements: countStatements(db) };
}

/** The client inside an interactive transaction: repositories take it to write in one. */
export type AccountsTransaction = Parameters<Parameters<AccountsDatabase['$transaction']>[0]>[0];

/** Runs `work` in one transaction of the accounts database. */
export type InTransaction = <T>(work: (tx: AccountsTransaction) => Promise<T>) => Promise<T>;

export function transactionsOf(db: AccountsDatabase): InTransaction {
  return (work) => db.$transaction(work);
}
