/**
 * Once per test run: find a PostgreSQL server (or start an embedded one), create one migrated
 * template database per context, and at the end drop every database the run created.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { withDatabase } from '../platform/config.ts';
import { contextNames } from '../platform/contexts.ts';
import { startEmbeddedPostgres, type RunningPostgres } from '../platform/database/embedded.ts';
import { applyMigrations, migrationsDirOf } from '../platform/database/migrations.ts';
import { ensureDatabase } from '../platform/database/provision.ts';
import { defaultTestServerUrl, dropDatabasesWithPrefix, isReachable } from './support/postgres.ts';
import { templateDatabaseName } from './support/run.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    testServerUrl: string;
    runPrefix: string;
  }
}

export default async function setup(project: TestProject) {
  let serverUrl = process.env.TEST_DATABASE_URL ?? defaultTestServerUrl;
  let embedded: RunningPostgres | undefined;
  let embeddedDir: string | undefined;
  if (!(await isReachable(serverUrl))) {
    embeddedDir = mkdtempSync(join(tmpdir(), 'commerce-test-pg-'));
    embedded = await startEmbeddedPostgres({ dataDir: join(embeddedDir, 'data'), port: 54000 + Math.floor(Math.random() * 1000), ephemeral: true });
    serverUrl = embedded.url;
  }
  const runPrefix = `ctest_${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
  for (const context of contextNames) {
    const databaseUrl = withDatabase(serverUrl, templateDatabaseName(runPrefix, context));
    await ensureDatabase(databaseUrl);
    await applyMigrations({ databaseUrl, migrationsDir: migrationsDirOf(context) });
  }
  project.provide('testServerUrl', serverUrl);
  project.provide('runPrefix', runPrefix);

  return async () => {
    await dropDatabasesWithPrefix(serverUrl, runPrefix);
    await embedded?.stop();
    if (embeddedDir) rmSync(embeddedDir, { recursive: true, force: true });
  };
}
