/**
 * Throwaway Prisma 6.19 copies of our Prisma 7 schemas: 6.19 requires `url` in the datasource,
 * which 7 forbids. Copies live under the git-ignored prisma/.migrate/, one folder per call so
 * that concurrent checks never overwrite each other's.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { scratchDir } from './paths.ts';
import { UsageError } from './run.ts';

const DATASOURCE = /^(\s*datasource\s+\w+\s*\{)/m;

/** The schema text with `url = env("DATABASE_URL")` added to its datasource block. */
export function toPrisma6Schema(schema: string, sourcePath: string): string {
  if (!DATASOURCE.test(schema)) throw new UsageError(`No datasource block in ${sourcePath}`);
  return schema.replace(DATASOURCE, '$1\n  url = env("DATABASE_URL")');
}

/**
 * Runs `work` with the path of a Prisma 6 copy of `schemaPath` and the scratch folder holding
 * it, both removed afterwards.
 */
export async function withPrisma6Schema<T>(
  schemaPath: string,
  work: (copyPath: string, scratch: string) => Promise<T>,
): Promise<T> {
  const schema = await readFile(schemaPath, 'utf8').catch(() => {
    throw new UsageError(`Cannot read schema ${schemaPath}`);
  });
  const dir = join(scratchDir, randomBytes(6).toString('hex'));
  await mkdir(dir, { recursive: true });
  try {
    const copyPath = join(dir, 'schema.prisma');
    await writeFile(copyPath, toPrisma6Schema(schema, schemaPath));
    return await work(copyPath, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
