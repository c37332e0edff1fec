/**
 * The PostgreSQL server tests run against: `TEST_DATABASE_URL`, else the local server on
 * 127.0.0.1:5432; when neither answers, global setup starts an embedded one. Every database a
 * run creates starts with the run's prefix, so teardown can remove them all.
 */
import pg from 'pg';
import { withDatabase } from '../../platform/config.ts';
import { dropDatabase } from '../../platform/database/provision.ts';

export const defaultTestServerUrl = 'postgres://postgres@127.0.0.1:5432/postgres';

export async function isReachable(serverUrl: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function withServer<T>(serverUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: withDatabase(serverUrl, 'postgres') });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A copy of a migrated template database: ~100 ms instead of migrating again. */
export async function cloneDatabase(serverUrl: string, template: string, name: string): Promise<string> {
  await withServer(serverUrl, (client) => client.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`));
  return withDatabase(serverUrl, name);
}

export async function dropDatabasesWithPrefix(serverUrl: string, prefix: string): Promise<void> {
  const names = await withServer(serverUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [prefix]);
    return rows.map((row) => row.datname);
  });
  for (const name of names) await dropDatabase(withDatabase(serverUrl, name));
}
