/**
 * `npm run migrate -- <command>`: migrations without Prisma's native engine.
 *
 *   new <context> <name>             write the migration that takes the context's migrations
 *                                    to its schema (prints "no changes" if there is none)
 *   check [context…] [--schema <p>]  exit 2 naming every context whose migrations do not
 *                                    produce its schema (--schema: diff against another file,
 *                                    one context only); 0 when all match, 1 on errors
 *   deploy [context…]                create each context's database if missing and apply its
 *                                    pending migrations (DATABASE_URL / <CONTEXT>_DATABASE_URL)
 *
 * Shadow databases go to MIGRATE_SERVER_URL, else TEST_DATABASE_URL, else DATABASE_URL's
 * server, else postgres://postgres@127.0.0.1:5432.
 */
import { relative } from 'node:path';
import { parseArgs } from 'node:util';
import { databaseUrlFor } from '../../platform/config.ts';
import type { ContextName } from '../../platform/contexts.ts';
import { applyMigrations, migrationsDirOf } from '../../platform/database/migrations.ts';
import { ensureDatabase, redact } from '../../platform/database/provision.ts';
import { diffMigrations } from './diff.ts';
import { ensureMigrationLock, migrationSlug, writeMigration } from './migration-files.ts';
import { prismaContexts, repoRoot, schemaPathOf } from './paths.ts';
import { runMain, UsageError } from './run.ts';
import { migrateServerUrl } from './shadow.ts';

const USAGE = `usage: npm run migrate -- new <context> <name>
       npm run migrate -- check [context...] [--schema <path>]
       npm run migrate -- deploy [context...]
contexts: ${prismaContexts().join(', ')}`;

/** Exit code of `check` when a schema is ahead of its migrations (as `migrate diff --exit-code`). */
const EXIT_DRIFT = 2;

function contextsFrom(names: string[]): ContextName[] {
  const known = prismaContexts();
  for (const name of names) {
    if (!(known as string[]).includes(name)) throw new UsageError(`unknown context "${name}"\n${USAGE}`);
  }
  return names.length > 0 ? (names as ContextName[]) : known;
}

async function newMigration(args: string[]): Promise<number> {
  const [context, name, ...rest] = args;
  if (!context || !name || rest.length > 0) throw new UsageError(USAGE);
  const [ctx] = contextsFrom([context]) as [ContextName];
  migrationSlug(name); // fail on a bad name before spending a diff on it
  const migrationsDir = migrationsDirOf(ctx);
  const diff = await diffMigrations({ migrationsDir, schemaPath: schemaPathOf(ctx), serverUrl: migrateServerUrl() });
  if (!diff.changed) {
    console.log(`${ctx}: no changes`);
    return 0;
  }
  await ensureMigrationLock(migrationsDir);
  const dir = await writeMigration(migrationsDir, name, diff.sql);
  console.log(`${ctx}: wrote ${relative(repoRoot, dir)}/migration.sql`);
  return 0;
}

async function check(args: string[], schema: string | undefined): Promise<number> {
  const selected = contextsFrom(args);
  if (schema && selected.length !== 1) throw new UsageError('--schema needs exactly one context');
  const serverUrl = migrateServerUrl();
  const results = await Promise.all(
    selected.map(async (context) => ({
      context,
      diff: await diffMigrations({
        migrationsDir: migrationsDirOf(context),
        schemaPath: schema ?? schemaPathOf(context),
        serverUrl,
      }),
    })),
  );
  for (const { context, diff } of results) {
    if (!diff.changed) console.log(`${context}: migrations produce the schema`);
    else console.log(`${context}: migrations do NOT produce the schema; missing:\n${indent(diff.sql)}`);
  }
  const drifted = results.filter((r) => r.diff.changed).map((r) => r.context);
  if (drifted.length === 0) return 0;
  console.error(`schema ahead of migrations in: ${drifted.join(', ')} (npm run migrate -- new <context> <name>)`);
  return EXIT_DRIFT;
}

function indent(text: string): string {
  return text.trimEnd().replace(/^/gm, '    ');
}

async function deploy(args: string[]): Promise<number> {
  for (const context of contextsFrom(args)) {
    const databaseUrl = databaseUrlFor(context);
    if (!databaseUrl) {
      throw new UsageError(`no database for ${context}: set DATABASE_URL or ${context.toUpperCase()}_DATABASE_URL`);
    }
    if (await ensureDatabase(databaseUrl)) console.log(`${context}: created ${redact(databaseUrl)}`);
    const { applied } = await applyMigrations({
      databaseUrl,
      migrationsDir: migrationsDirOf(context),
      log: (message) => console.log(`${context}: ${message}`),
    });
    if (applied.length === 0) console.log(`${context}: up to date`);
  }
  return 0;
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    options: { schema: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  const [command, ...args] = positionals;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.schema && command !== 'check') throw new UsageError('--schema is only for check');
  switch (command) {
    case 'new':
      return newMigration(args);
    case 'check':
      return check(args, values.schema);
    case 'deploy':
      return deploy(args);
    default:
      throw new UsageError(command ? `unknown command "${command}"\n${USAGE}` : USAGE);
  }
}

runMain(main);
