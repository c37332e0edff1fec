/**
 * Creating and dropping whole databases. Both go through the server's `postgres` maintenance
 * database, because a database cannot be created from nowhere nor dropped from inside itself.
 */
import pg from 'pg';
import { databaseNameOf, withDatabase } from '../config.ts';

const MAINTENANCE_DATABASE = 'postgres';

/** Runs `work` on a connection to the maintenance database of `databaseUrl`'s server. */
async function onMaintenanceDatabase<T>(
  databaseUrl: string,
  work: (client: pg.Client, name: string) => Promise<T>,
): Promise<T> {
  const name = databaseNameOf(databaseUrl);
  if (!name) throw new Error(`No database name in ${redact(databaseUrl)}`);
  const client = new pg.Client({ connectionString: withDatabase(databaseUrl, MAINTENANCE_DATABASE) });
  await client.connect();
  try {
    return await work(client, name);
  } finally {
    await client.end();
  }
}

/** Whether the database named in `databaseUrl` exists on its server. */
export async function databaseExists(databaseUrl: string): Promise<boolean> {
  return onMaintenanceDatabase(databaseUrl, (client, name) => exists(client, name));
}

async function exists(client: pg.Client, name: string): Promise<boolean> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return rowCount === 1;
}

/**
 * Creates the database named in `databaseUrl` unless it exists. Safe when several processes
 * race to create it. Resolves to whether this call created it.
 */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  return onMaintenanceDatabase(databaseUrl, async (client, name) => {
    if (await exists(client, name)) return false;
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      return true;
    } catch (error) {
      if (lostCreateRace(error)) return false;
      throw error;
    }
  });
}

/**
 * A concurrent CREATE DATABASE of the same name fails with duplicate_database (42P04), or, when
 * both got past the catalog check at once, with a unique violation (23505) on pg_database.
 */
function lostCreateRace(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === '42P04' || code === '23505';
}

/**
 * Drops the database named in `databaseUrl` if it exists, disconnecting everyone still on it
 * (pools that were not closed must not keep a test or shadow database alive).
 */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  await onMaintenanceDatabase(databaseUrl, async (client, name) => {
    if (name === MAINTENANCE_DATABASE || name.startsWith('template')) {
      throw new Error(`Refusing to drop the system database "${name}"`);
    }
    await client.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [name],
    );
    // WITH (FORCE) (PostgreSQL 13+) also ends connections that arrive after the terminate.
    const force = (await serverVersionNum(client)) >= 130000 ? ' WITH (FORCE)' : '';
    await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)}${force}`);
  });
}

async function serverVersionNum(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ server_version_num: string }>('SHOW server_version_num');
  return Number(rows[0]?.server_version_num ?? 0);
}

/** The URL without its password, for messages. */
export function redact(databaseUrl: string): string {
  try {
    const url = new URL(databaseUrl);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '<invalid database URL>';
  }
}
