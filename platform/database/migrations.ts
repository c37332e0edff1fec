/**
 * The runtime migration runner. Prisma 7's CLI cannot apply migrations on machines without its
 * native engine, so this applies the committed `prisma/<context>/migrations` itself and records
 * them in Prisma's own ledger (`_prisma_migrations`): a real `prisma migrate status/deploy`
 * elsewhere agrees with what it did.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { withTransaction } from './transaction.ts';
import type { ContextName } from '../contexts.ts';

/**
 * Prisma Migrate's own advisory-lock key: sharing it means this runner and a real
 * `prisma migrate deploy` on the same database also exclude each other.
 */
export const MIGRATION_LOCK_KEY = 72707369;

/** Prisma's ledger, column for column as its schema engine creates it on PostgreSQL. */
const CREATE_LEDGER = `
  CREATE TABLE IF NOT EXISTS _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
  )`;

/** An expected failure (edited or failed migration, bad folder): its message says what to do. */
export class MigrationError extends Error {
  override name = 'MigrationError';
}

export interface Migration {
  /** The folder name, `<yyyyMMddHHmmss>_<name>`. */
  name: string;
  sql: string;
  /** sha256 of the file's bytes, lower-case hex, as Prisma records it. */
  checksum: string;
}

interface LedgerRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

export interface ApplyMigrationsOptions {
  databaseUrl: string;
  migrationsDir: string;
  log?: (message: string) => void;
}

/** Absolute path of a context's committed migrations, wherever the process was started. */
export function migrationsDirOf(context: ContextName): string {
  return fileURLToPath(new URL(`../../prisma/${context}/migrations`, import.meta.url));
}

/** sha256 hex of a migration file, as Prisma's schema engine computes it. */
export function checksumOf(content: string | Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

/**
 * Whether a file matches a checksum in the ledger, with Prisma's tolerances: line endings
 * rewritten by git, and the checksums without zero padding written by old Prisma versions.
 */
export function checksumMatches(content: string, recorded: string): boolean {
  const variants = [content, content.replace(/\r\n/g, '\n'), content.replace(/\n/g, '\r\n')];
  return variants.some((variant) => {
    const digest = createHash('sha256').update(variant).digest();
    const rendered =
      recorded.length === 64 ? digest.toString('hex') : [...digest].map((b) => b.toString(16)).join('');
    return rendered === recorded;
  });
}

/** The migrations of a folder, in name (= timestamp) order. */
export async function readMigrations(migrationsDir: string): Promise<Migration[]> {
  const entries = await readdir(migrationsDir, { withFileTypes: true }).catch((error: unknown) => {
    if ((error as { code?: unknown }).code === 'ENOENT') {
      throw new MigrationError(`No migrations folder at ${migrationsDir}`);
    }
    throw error;
  });
  const names = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  return Promise.all(names.map((name) => readMigration(migrationsDir, name)));
}

async function readMigration(migrationsDir: string, name: string): Promise<Migration> {
  const file = join(migrationsDir, name, 'migration.sql');
  const bytes = await readFile(file).catch(() => {
    throw new MigrationError(`Migration ${name} has no migration.sql (${file})`);
  });
  return { name, sql: bytes.toString('utf8'), checksum: checksumOf(bytes) };
}

/**
 * Applies the pending migrations of `migrationsDir` to `databaseUrl`, all in one transaction
 * under Prisma's advisory lock, so concurrent callers (several replicas starting) apply each
 * migration exactly once and a failure leaves nothing half-applied. Refuses to run when an
 * applied migration's file was edited since, or a migration failed under Prisma earlier.
 */
export async function applyMigrations(options: ApplyMigrationsOptions): Promise<{ applied: string[] }> {
  const { databaseUrl, migrationsDir, log = () => {} } = options;
  const migrations = await readMigrations(migrationsDir);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const applied = await inLockedTransaction(client, async () => {
      await client.query(CREATE_LEDGER);
      const pending = pendingMigrations(migrations, await readLedger(client), log);
      for (const migration of pending) {
        await applyOne(client, migration);
        log(`applied ${migration.name}`);
      }
      return pending.map((m) => m.name);
    });
    return { applied };
  } finally {
    await client.end();
  }
}

/**
 * READ COMMITTED explicitly: each statement after the lock must see what the previous lock
 * holder committed. Under a server default of REPEATABLE READ the snapshot would predate it.
 */
async function inLockedTransaction<T>(client: pg.Client, work: () => Promise<T>): Promise<T> {
  return withTransaction(
    client,
    async () => {
      // Taken before the ledger is even created: concurrent CREATE TABLE IF NOT EXISTS races.
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      return work();
    },
    'BEGIN ISOLATION LEVEL READ COMMITTED',
  );
}

async function readLedger(client: pg.Client): Promise<LedgerRow[]> {
  const { rows } = await client.query<LedgerRow>(
    'SELECT migration_name, checksum, finished_at, rolled_back_at FROM _prisma_migrations ORDER BY started_at',
  );
  return rows;
}

/** The migrations not yet applied, after checking the ledger against the files. */
function pendingMigrations(migrations: Migration[], ledger: LedgerRow[], log: (m: string) => void): Migration[] {
  refuseFailed(ledger);
  // Rolled-back rows (`prisma migrate resolve --rolled-back`) mean "apply again", as in Prisma.
  const applied = ledger.filter((row) => row.finished_at !== null && row.rolled_back_at === null);
  refuseEdited(migrations, applied);
  const known = new Set(migrations.map((m) => m.name));
  for (const row of applied) {
    if (!known.has(row.migration_name)) log(`warning: ${row.migration_name} is applied but has no folder here`);
  }
  const appliedNames = new Set(applied.map((row) => row.migration_name));
  return migrations.filter((m) => !appliedNames.has(m.name));
}

/** A row without finished_at nor rolled_back_at is a migration Prisma's engine left failed. */
function refuseFailed(ledger: LedgerRow[]): void {
  const failed = ledger.filter((row) => row.finished_at === null && row.rolled_back_at === null);
  if (failed.length === 0) return;
  throw new MigrationError(
    `Migration(s) ${failed.map((r) => r.migration_name).join(', ')} failed earlier and were never ` +
      'resolved. Repair the database, then mark them with `prisma migrate resolve`.',
  );
}

function refuseEdited(migrations: Migration[], applied: LedgerRow[]): void {
  const byName = new Map(migrations.map((m) => [m.name, m]));
  const edited = applied
    .filter((row) => {
      const migration = byName.get(row.migration_name);
      return migration !== undefined && !checksumMatches(migration.sql, row.checksum);
    })
    .map((row) => row.migration_name);
  if (edited.length === 0) return;
  throw new MigrationError(
    `Applied migration(s) ${edited.join(', ')} were edited after being applied (checksum differs ` +
      'from _prisma_migrations). Committed migrations must not change: revert the edit and put ' +
      'the change in a new migration.',
  );
}

/** Records the migration as Prisma does: a started row, the script, then finished. */
async function applyOne(client: pg.Client, migration: Migration): Promise<void> {
  const id = randomUUID();
  await client.query(
    'INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at) VALUES ($1, $2, $3, clock_timestamp())',
    [id, migration.checksum, migration.name],
  );
  try {
    // No parameters: the simple query protocol runs the file's statements in one call.
    await client.query(migration.sql);
  } catch (error) {
    throw new MigrationError(`Migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
  }
  await client.query(
    'UPDATE _prisma_migrations SET finished_at = clock_timestamp(), applied_steps_count = 1 WHERE id = $1',
    [id],
  );
}
