/** The PostgreSQL server that hosts shadow databases, and their lifetime. */
import { randomBytes } from 'node:crypto';
import { withDatabase } from '../../platform/config.ts';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';

type Env = Record<string, string | undefined>;

const DEFAULT_SERVER_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * `MIGRATE_SERVER_URL`, else `TEST_DATABASE_URL`, else the server of `DATABASE_URL`, else a
 * local PostgreSQL. Only its server matters: shadow databases get their own names.
 */
export function migrateServerUrl(env: Env = process.env): string {
  if (env.MIGRATE_SERVER_URL) return env.MIGRATE_SERVER_URL;
  if (env.TEST_DATABASE_URL) return env.TEST_DATABASE_URL;
  if (env.DATABASE_URL) return withDatabase(env.DATABASE_URL, 'postgres');
  return DEFAULT_SERVER_URL;
}

/**
 * Runs `work` with a fresh, empty database of random name on `serverUrl`, and drops it
 * afterwards, also when `work` fails. Fresh matters: the schema engine replays the migrations
 * on top of whatever the shadow database already holds.
 */
export async function withShadowDatabase<T>(serverUrl: string, work: (databaseUrl: string) => Promise<T>): Promise<T> {
  const databaseUrl = withDatabase(serverUrl, `migrate_shadow_${randomBytes(6).toString('hex')}`);
  await ensureDatabase(databaseUrl);
  try {
    return await work(databaseUrl);
  } finally {
    await dropDatabase(databaseUrl);
  }
}
