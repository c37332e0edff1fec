/**
 * Once per test run: find a PostgreSQL server (or start an embedded one), create one migrated
 * template database per context, and at the end drop every database the run created.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { withDatabase } from '../platform/config.ts';
import { contextNames } from '../platform/contexts.ts';
import { startEmbeddedPostgres, type RunningPostgres } from '../platform/database/embedded.ts';
import { applyMigrations, migrationsDirOf } from '../platform/database/migrations.ts';
import { ensureDatabase } from '../platform/database/provision.ts';
import { defaultTestServerUrl, dropDatabasesWithPrefix, isReachable } from './support/postgres.ts';
import { freePort } from './support/processes.ts';
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
  const runPrefix = `ctest_${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
  const removeEmbedded = async () => {
    await embedded?.stop();
    if (embeddedDir) rmSync(embeddedDir, { recursive: true, force: true });
  };
  try {
    if (!(await isReachable(serverUrl))) {
      embeddedDir = mkdtempSync(join(tmpdir(), 'commerce-test-pg-'));
      // mkdtemp makes it 0700; run as root, the embedded PostgreSQL runs as `postgres`, which must enter it.
      chmodSync(embeddedDir, 0o755);
      // A port the system just handed out and nobody holds, rather than a random guess that may be taken.
      embedded = await startEmbeddedPostgres({ dataDir: join(embeddedDir, 'data'), port: await freePort(), ephemeral: true });
      serverUrl = embedded.url;
    }
    for (const context of contextNames) {
      const databaseUrl = withDatabase(serverUrl, templateDatabaseName(runPrefix, context));
      await ensureDatabase(databaseUrl);
      await applyMigrations({ databaseUrl, migrationsDir: migrationsDirOf(context) });
    }
  } catch (error) {
    // Vitest runs no teardown for a setup that failed: leave no server, folder or database behind.
    if (!embeddedDir) await dropDatabasesWithPrefix(serverUrl, runPrefix).catch(() => {});
    await removeEmbedded().catch(() => {});
    throw error;
  }
  project.provide('testServerUrl', serverUrl);
  project.provide('runPrefix', runPrefix);

  return async () => {
    await dropDatabasesWithPrefix(serverUrl, runPrefix);
    await removeEmbedded();
  };
}
