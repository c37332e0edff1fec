/**
 * The SQL that takes a migrations folder to a schema, from Prisma 6.19's wasm schema engine
 * (`prisma migrate diff --from-migrations … --to-schema-datamodel … --script --exit-code`).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureMigrationLock } from './migration-files.ts';
import { engineStub, prisma6Config, prismaCliOf, repoRoot } from './paths.ts';
import { withPrisma6Schema } from './prisma6-schema.ts';
import { runNode, UsageError } from './run.ts';
import { withShadowDatabase } from './shadow.ts';

export interface DiffOptions {
  migrationsDir: string;
  schemaPath: string;
  /** Server on which the shadow database is created. */
  serverUrl: string;
}

export interface Diff {
  /** Whether the migrations fall short of the schema. */
  changed: boolean;
  /** The missing SQL (Prisma's "-- This is an empty migration." when unchanged). */
  sql: string;
}

/** Diffs the migrations of `migrationsDir` against `schemaPath`. */
export async function diffMigrations(options: DiffOptions): Promise<Diff> {
  return withPrisma6Schema(options.schemaPath, async (schemaCopy, scratch) => {
    const migrationsDir = await migrationsToReplay(options.migrationsDir, scratch);
    const args = ['--from-migrations', migrationsDir, '--to-schema-datamodel', schemaCopy];
    return withShadowDatabase(options.serverUrl, (shadowUrl) => runDiff(args, shadowUrl));
  });
}

/**
 * The context's folder, or an empty one in scratch space when it has no migrations yet:
 * Prisma rejects a folder without migration_lock.toml, and `--from-empty` would start from a
 * database without even the `public` schema (adding a `CREATE SCHEMA "public"` step that
 * `prisma migrate dev` never writes).
 */
async function migrationsToReplay(migrationsDir: string, scratch: string): Promise<string> {
  if (await hasMigrations(migrationsDir)) return migrationsDir;
  const empty = join(scratch, 'migrations');
  await ensureMigrationLock(empty);
  return empty;
}

async function hasMigrations(migrationsDir: string): Promise<boolean> {
  const entries = await readdir(migrationsDir, { withFileTypes: true }).catch(() => []);
  return entries.some((e) => e.isDirectory());
}

async function runDiff(args: string[], shadowUrl: string): Promise<Diff> {
  const cliArgs = ['migrate', 'diff', '--config', prisma6Config, ...args, '--script', '--exit-code'];
  const { code, stdout, stderr } = await runNode(prismaCliOf('prisma6'), cliArgs, cliEnv(shadowUrl), repoRoot);
  // --exit-code: 0 empty diff, 2 non-empty diff, anything else an error.
  if (code === 0 || code === 2) return { changed: code === 2, sql: stdout.trimStart() };
  throw new UsageError(`prisma migrate diff failed (exit ${code}):\n${withoutNoise(stdout + stderr)}`);
}

/**
 * Both of the engine's connections go to the throwaway shadow database: the diff needs no
 * other, and nothing else can then be touched. The Prisma 6 CLI downloads a query-engine
 * library at startup unless one is named; the stub is never loaded by `migrate diff`.
 */
function cliEnv(shadowUrl: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    CHECKPOINT_DISABLE: '1',
    PRISMA_QUERY_ENGINE_LIBRARY: engineStub,
    DATABASE_URL: shadowUrl,
    MIGRATE_DATABASE_URL: shadowUrl,
    MIGRATE_SHADOW_DATABASE_URL: shadowUrl,
  };
}

function withoutNoise(output: string): string {
  return output
    .split('\n')
    .filter((line) => !line.startsWith('Loaded Prisma config from'))
    .join('\n')
    .trim();
}
