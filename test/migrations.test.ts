/**
 * Migrations: the committed SQL matches the Prisma schemas, and the runtime runner applies it
 * exactly once per database, as Prisma's own ledger records it. Runs against a real PostgreSQL
 * (the one global setup found or started); every database it creates is dropped afterwards.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { withDatabase } from '../platform/config.ts';
import { contextNames } from '../platform/contexts.ts';
import { applyMigrations, migrationsDirOf } from '../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../platform/database/provision.ts';
import { diffMigrations } from '../scripts/prisma/diff.ts';
import { writeMigration } from '../scripts/prisma/migration-files.ts';

const serverUrl = inject('testServerUrl');
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const created: string[] = [];
const tempDirs: string[] = [];

/** A fresh database with a unique name, dropped in afterAll. */
async function freshDatabase(): Promise<string> {
  // The run's prefix: global teardown drops it even if this file is killed before afterAll.
  const url = withDatabase(serverUrl, `${inject('runPrefix')}_migrations_${randomBytes(6).toString('hex')}`);
  created.push(url);
  await ensureDatabase(url);
  return url;
}

/** A temporary migrations folder holding the given `<name>: sql` migrations. */
async function migrationsFolder(migrations: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'migrations-'));
  tempDirs.push(dir);
  for (const [name, sql] of Object.entries(migrations)) {
    await mkdir(join(dir, name));
    await writeFile(join(dir, name, 'migration.sql'), sql);
  }
  return dir;
}

async function query<R extends pg.QueryResultRow>(databaseUrl: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

interface Run {
  code: number;
  output: string;
}

/** Runs `npm run migrate -- <args>` (without npm) against the test server. */
function migrate(args: string[]): Promise<Run> {
  const tsx = join(repoRoot, 'node_modules', '.bin', 'tsx');
  const env = { ...process.env, MIGRATE_SERVER_URL: serverUrl };
  return new Promise((resolve) => {
    execFile(tsx, ['scripts/prisma/migrate.ts', ...args], { cwd: repoRoot, env }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, output: stdout + stderr });
    });
  });
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

afterAll(async () => {
  await Promise.all(created.map((url) => dropDatabase(url)));
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('writing a migration from a schema change', () => {
  it('writes the SQL that makes the migrations produce the changed schema, and the runner applies it', async () => {
    const schema = await readFile(join(repoRoot, 'prisma/accounts/schema.prisma'), 'utf8');
    const grown = schema.replace(/^model Customer \{$/m, '$&\n  nickname String? @db.VarChar(40)');
    const dir = await mkdtemp(join(tmpdir(), 'migrate-new-'));
    tempDirs.push(dir);
    const schemaPath = join(dir, 'schema.prisma');
    await writeFile(schemaPath, grown);
    const migrationsDir = join(dir, 'migrations');
    await cp(migrationsDirOf('accounts'), migrationsDir, { recursive: true });

    // What `npm run migrate -- new accounts add_nickname` does, on copies of the files.
    const diff = await diffMigrations({ migrationsDir, schemaPath, serverUrl });
    expect(diff.changed).toBe(true);
    const written = await writeMigration(migrationsDir, 'add nickname', diff.sql);

    expect(written).toMatch(/\d{14}_add_nickname$/);
    expect((await readdir(migrationsDir)).filter((name) => name.endsWith('_add_nickname'))).toHaveLength(1);
    expect(await diffMigrations({ migrationsDir, schemaPath, serverUrl })).toMatchObject({ changed: false });
    const databaseUrl = await freshDatabase();
    await applyMigrations({ databaseUrl, migrationsDir });
    expect(await query(databaseUrl, `SELECT column_name FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'nickname'`)).toHaveLength(1);
  }, 120_000);
});

describe('migration check', () => {
  it('the committed migrations of every context produce exactly its Prisma schema', { timeout: 180_000 }, async () => {
    const run = await migrate(['check']);
    expect(run.output).not.toMatch(/do NOT produce/);
    expect(run.code, run.output).toBe(0);
  });

  it('the migration check fails when a schema gains a field its migrations lack', async () => {
    const schema = await readFile(join(repoRoot, 'prisma/accounts/schema.prisma'), 'utf8');
    const grown = schema.replace(/^model Customer \{$/m, '$&\n  nickname String? @db.VarChar(40)');
    expect(grown).not.toBe(schema);
    const dir = await mkdtemp(join(tmpdir(), 'schema-'));
    tempDirs.push(dir);
    await writeFile(join(dir, 'schema.prisma'), grown);

    const run = await migrate(['check', 'accounts', '--schema', join(dir, 'schema.prisma')]);

    expect(run.code, run.output).toBe(2);
    expect(run.output).toMatch(/accounts: migrations do NOT produce the schema/);
    expect(run.output).toMatch(/ADD COLUMN\s+"nickname" VARCHAR\(40\)/);
  }, 120_000);
});

describe('migration runner', () => {
  it('the runner applies every migration once and records it in Prisma\'s ledger', async () => {
    for (const context of contextNames) {
      const databaseUrl = await freshDatabase();
      const migrationsDir = migrationsDirOf(context);

      const first = await applyMigrations({ databaseUrl, migrationsDir });
      const second = await applyMigrations({ databaseUrl, migrationsDir });

      expect(first.applied.length).toBeGreaterThan(0);
      expect(second.applied).toEqual([]);
      const ledger = await query<{ migration_name: string; checksum: string; finished: boolean; steps: number }>(
        databaseUrl,
        `SELECT migration_name, checksum, finished_at IS NOT NULL AS finished,
                applied_steps_count AS steps FROM _prisma_migrations ORDER BY migration_name`,
      );
      const expected = await Promise.all(
        first.applied.map(async (name) => ({
          migration_name: name,
          checksum: sha256(await readFile(join(migrationsDir, name, 'migration.sql'), 'utf8')),
          finished: true,
          steps: 1,
        })),
      );
      expect(ledger).toEqual(expected);
    }
  }, 120_000);

  it('concurrent runners apply each migration exactly once', async () => {
    const databaseUrl = await freshDatabase();
    // Plain CREATE TABLEs: applying any of them twice would fail.
    const migrationsDir = await migrationsFolder({
      '20250101000000_a': 'CREATE TABLE a (id int PRIMARY KEY);',
      '20250101000001_b': 'CREATE TABLE b (id int PRIMARY KEY);\nINSERT INTO b VALUES (1);',
      '20250101000002_c': 'CREATE TABLE c (id int PRIMARY KEY REFERENCES b);',
    });

    const results = await Promise.all(
      Array.from({ length: 5 }, () => applyMigrations({ databaseUrl, migrationsDir })),
    );

    expect(results.flatMap((r) => r.applied).sort()).toEqual(['20250101000000_a', '20250101000001_b', '20250101000002_c']);
    const [{ count }] = (await query<{ count: string }>(databaseUrl, 'SELECT count(*) FROM _prisma_migrations')) as [
      { count: string },
    ];
    expect(Number(count)).toBe(3);
  }, 120_000);

  it('the runner refuses to start when an applied migration was edited', async () => {
    const databaseUrl = await freshDatabase();
    const migrationsDir = await migrationsFolder({ '20250101000000_a': 'CREATE TABLE a (id int PRIMARY KEY);' });
    await applyMigrations({ databaseUrl, migrationsDir });
    await writeFile(join(migrationsDir, '20250101000000_a', 'migration.sql'), 'CREATE TABLE a (id bigint PRIMARY KEY);');
    await mkdir(join(migrationsDir, '20250101000001_b'));
    await writeFile(join(migrationsDir, '20250101000001_b', 'migration.sql'), 'CREATE TABLE b (id int);');

    await expect(applyMigrations({ databaseUrl, migrationsDir })).rejects.toThrow(
      /20250101000000_a were edited after being applied/,
    );
    // Nothing after the edited migration ran either.
    const tables = await query<{ tablename: string }>(
      databaseUrl,
      "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = 'b'",
    );
    expect(tables).toEqual([]);
  }, 120_000);
});
