/**
 * `npm start`: the whole platform on one machine with one command.
 * - No database configured: starts an embedded PostgreSQL with its data under `.data/postgres`.
 * - Creates each context's database, applies its migrations, seeds the demo data (once; in
 *   development by default, in production only when asked, never with published passwords:
 *   scripts/demo/settings.ts).
 * - Starts every subgraph as its own process, then the gateway, and prints the Sandbox URL. A
 *   service that fails while the platform starts fails the start; one that exits later is
 *   restarted with back-off (platform/process/supervisor.ts, docs/decisions/0014).
 * - Ctrl-C stops the gateway, the subgraphs and the embedded PostgreSQL, in that order.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { databaseUrlFor, deriveDatabaseUrl, eventBusDatabaseFromContexts, intFromEnv, isProduction } from '../platform/config.ts';
import { checkConfiguration } from '../platform/config/validation.ts';
import { contexts, defaultPortOf, type ContextName } from '../platform/contexts.ts';
import { startEmbeddedPostgres, type RunningPostgres } from '../platform/database/embedded.ts';
import { applyMigrations, migrationsDirOf } from '../platform/database/migrations.ts';
import { ensureDatabase, redact } from '../platform/database/provision.ts';
import { Supervisor } from '../platform/process/supervisor.ts';
import { removeRuntimeFile, writeRuntimeFile, type PlatformRuntime } from '../platform/runtime-file.ts';
import { demoUsers } from './demo/data.ts';
import { seedDemoData } from './demo/seed.ts';
import { demoSeeding } from './demo/settings.ts';
import { ensureKeys, keyFileEnv } from './keys.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const dataDir = resolve(root, process.env.DATA_DIR ?? '.data');
const say = (line: string) => process.stdout.write(`${line}\n`);

interface Databases {
  urls: Record<ContextName, string>;
  /** The server from which the bus database is derived when no bus is configured. */
  serverUrl?: string;
  embedded?: RunningPostgres;
}

/** Each context's database URL; an embedded server when nothing is configured. */
async function databases(onPostgresStatus: (line: string) => void): Promise<Databases> {
  const configured = contexts.map(({ name }) => [name, databaseUrlFor(name)] as const);
  const missing = configured.filter(([, url]) => !url).map(([name]) => name);
  if (missing.length === 0) return { urls: Object.fromEntries(configured) as Record<ContextName, string>, ...(process.env.DATABASE_URL ? { serverUrl: process.env.DATABASE_URL } : {}) };
  if (missing.length < configured.length) {
    throw new Error(`No database configured for ${missing.join(', ')}: set DATABASE_URL, or <CONTEXT>_DATABASE_URL for each context`);
  }
  const port = intFromEnv('EMBEDDED_POSTGRES_PORT', 54329);
  say(`No DATABASE_URL set: starting embedded PostgreSQL on 127.0.0.1:${port} (data in ${resolve(dataDir, 'postgres')})`);
  const embedded = await startEmbeddedPostgres({ dataDir: resolve(dataDir, 'postgres'), port, onStatus: onPostgresStatus });
  const serverUrl = new URL(embedded.url);
  serverUrl.pathname = '/commerce';
  const urls = Object.fromEntries(contexts.map(({ name }) => [name, deriveDatabaseUrl(serverUrl.toString(), name)])) as Record<ContextName, string>;
  return { urls, serverUrl: serverUrl.toString(), embedded };
}

/**
 * The bus every service uses, and how to say it in the log: NATS JetStream when NATS_URL is set,
 * else the PostgreSQL queue in its own database (`<prefix>_events`) on the same server as the
 * contexts' databases. With only `<CONTEXT>_DATABASE_URL`s there is no one server, so it goes on
 * the first context's server; the log says so, since that choice was ours, not the operator's.
 */
function eventBus(db: Databases): { env: Record<string, string>; description: string } {
  if (process.env.NATS_URL) return { env: { NATS_URL: process.env.NATS_URL }, description: `NATS JetStream at ${process.env.NATS_URL}` };
  const queueIn = (url: string, why = '') => ({ env: { EVENT_BUS_DATABASE_URL: url }, description: `PostgreSQL queue in ${redact(url)}${why}` });
  if (process.env.EVENT_BUS_DATABASE_URL) return queueIn(process.env.EVENT_BUS_DATABASE_URL);
  if (db.serverUrl) return queueIn(deriveDatabaseUrl(db.serverUrl, 'events'));
  const derived = eventBusDatabaseFromContexts(db.urls);
  if (!derived) throw new Error('No event bus configured: set NATS_URL, EVENT_BUS_DATABASE_URL or DATABASE_URL');
  const variable = `${derived.context.toUpperCase()}_DATABASE_URL`;
  return queueIn(derived.url, ` (on the server of ${variable}: neither DATABASE_URL, EVENT_BUS_DATABASE_URL nor NATS_URL is set)`);
}

function keyEnv(): Record<string, string> {
  const configured = ['AUTH_TOKEN_PRIVATE_KEY', 'AUTH_TOKEN_PUBLIC_KEY', 'GATEWAY_IDENTITY_PRIVATE_KEY', 'GATEWAY_IDENTITY_PUBLIC_KEY'].every(
    (name) => process.env[name] || process.env[`${name}_FILE`],
  );
  if (configured) return {};
  return keyFileEnv(ensureKeys(resolve(dataDir, 'keys')));
}

async function main(): Promise<void> {
  let embedded: RunningPostgres | undefined;
  let runtime: PlatformRuntime | undefined;
  let shuttingDown = false;
  const supervisor = new Supervisor({ write: say, onChange: () => publishRuntime() });
  // Kept current on every restart: tools (the chaos benchmark) find each process's pid there.
  const publishRuntime = () => {
    if (!runtime || shuttingDown) return;
    const postgres = embedded ? { postgres: { pid: embedded.pid, port: Number(new URL(embedded.url).port), restarts: embedded.restarts } } : {};
    writeRuntimeFile(dataDir, { ...runtime, ...postgres, services: supervisor.status() });
  };
  const shutdown = async (exitCode: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    say('Stopping…');
    // The gateway first, then the subgraphs, then the database they were using.
    await supervisor.stopAll();
    removeRuntimeFile(dataDir);
    if (embedded) {
      await embedded.stop().catch((error: unknown) => say(`The embedded PostgreSQL did not stop cleanly: ${(error as Error).message}`));
      say('PostgreSQL stopped');
    }
    say('Stopped.');
    process.exit(exitCode);
  };
  // `on`, not `once`: Ctrl-C can arrive twice (from the terminal and relayed by a wrapper); a second
  // signal with no listener would kill us halfway through stopping. A closed terminal (SIGHUP)
  // stops the platform the same way, rather than leaving the services to notice we are gone.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void shutdown(0));

  try {
    // Before anything starts: every service's configuration, as they will be given it, and a
    // production start without the admin password, fail at once.
    checkConfiguration(process.env, ['start', 'gateway', 'subgraphs']);
    // A person at a terminal reads the services' logs through us (their stderr is our pipe): ask
    // them for pretty lines rather than JSON (platform/logging/logger.ts).
    if (process.stdout.isTTY && !process.env.LOG_FORMAT) process.env.LOG_FORMAT = 'pretty';
    const seeding = demoSeeding();
    const db = await databases((line) => {
      say(line);
      publishRuntime();
    });
    embedded = db.embedded;
    for (const { name } of contexts) {
      await ensureDatabase(db.urls[name]);
      const { applied } = await applyMigrations({ databaseUrl: db.urls[name], migrationsDir: migrationsDirOf(name) });
      say(`${name}: database ${redact(db.urls[name])}${applied.length ? `, applied ${applied.join(', ')}` : ', up to date'}`);
    }
    if (seeding.seed) {
      const seeded = await seedDemoData(db.urls, seeding.users);
      say(`Demo data: ${seeded.products} products, ${seeded.categories} categories, ${seeded.customers} users added (existing ones kept)`);
      if (seeded.passwordsReplaced > 0) say(`Demo data: replaced the published demo password of ${seeded.passwordsReplaced} existing account(s) with DEMO_ADMIN_PASSWORD`);
    } else {
      say('Demo data: not seeded (SEED_DEMO_DATA=false, the default in production)');
    }
    const keys = keyEnv();
    const { env: busEnv, description: busDescription } = eventBus(db);
    say(`Event bus: ${busDescription}`);
    runtime = { databaseUrls: db.urls, eventBusEnv: busEnv, supervisorPid: process.pid };
    publishRuntime();
    const subgraphUrlFlags: string[] = [];
    for (const { name } of contexts) {
      const port = intFromEnv(`${name.toUpperCase()}_PORT`, defaultPortOf(name));
      await supervisor.start({
        name,
        args: ['--import', 'tsx', resolve(root, `subgraphs/${name}/main.ts`)],
        env: { ...process.env, ...keys, ...busEnv, PORT: String(port), HOST: '127.0.0.1', [`${name.toUpperCase()}_DATABASE_URL`]: db.urls[name], MIGRATE_ON_START: 'false' },
        healthUrl: `http://127.0.0.1:${port}/health`,
        port,
      });
      subgraphUrlFlags.push('--subgraph-url', `${name}=http://127.0.0.1:${port}/graphql`);
    }
    const gatewayPort = intFromEnv('GATEWAY_PORT', 4000);
    await supervisor.start({
      name: 'gateway',
      args: ['--import', 'tsx', resolve(root, 'gateway/main.ts'), '--supergraph', resolve(root, 'schema/supergraph.graphql'), '--port', String(gatewayPort), ...subgraphUrlFlags],
      env: { ...process.env, ...keys },
      healthUrl: `http://127.0.0.1:${gatewayPort}/health`,
      port: gatewayPort,
    });
    // From here on a service that exits is restarted; until here it was a start failure.
    supervisor.supervise();
    say('');
    say('The commerce supergraph is running.');
    say(`  Apollo Sandbox:  http://localhost:${gatewayPort}/graphql`);
    // Off in production, like Sandbox; the landing page opens it by itself when Sandbox cannot load.
    if (!isProduction()) say(`  Offline explorer: http://localhost:${gatewayPort}/graphql/explorer (GraphiQL, no internet needed)`);
    say(`  Subscriptions:   ws://localhost:${gatewayPort}/graphql (graphql-ws; multipart HTTP and SSE on the http URL)`);
    if (seeding.seed && seeding.publishedPasswords) {
      say(`  Admin:           ${demoUsers.admin.email} / ${demoUsers.admin.password}`);
      say(`  Customer:        ${demoUsers.customer.email} / ${demoUsers.customer.password}`);
    } else if (seeding.seed) {
      say(`  Admin:           ${demoUsers.admin.email} (password from DEMO_ADMIN_PASSWORD)`);
    }
    say('  Event backbone:  npm run events -- status');
    say('Press Ctrl-C to stop.');
  } catch (error) {
    // A Ctrl-C while starting is already stopping everything: that is no start failure to report.
    if (!shuttingDown) say(`Could not start: ${(error as Error).message}`);
    await shutdown(1);
  }
}

await main();
