/**
 * Runs one context's subgraph as a process: checks and reads the environment (a context's own
 * variables are read in `start`, which runs after the check), creates and migrates its
 * database (unless `MIGRATE_ON_START=false`), starts it, and stops it cleanly on SIGTERM/SIGINT.
 */
import { databaseUrlFor, intFromEnv, isProduction, keyNames, requireSecret } from '../config.ts';
import { checkConfiguration } from '../config/validation.ts';
import { defaultPortOf, type ContextName } from '../contexts.ts';
import { applyMigrations, migrationsDirOf } from '../database/migrations.ts';
import { ensureDatabase } from '../database/provision.ts';
import { createEventBus } from '../events/bus/factory.ts';
import { importPublicKey } from '../identity/keys.ts';
import { createLogger, errorFields } from '../logging/logger.ts';
import { stopOnSignals } from '../process/lifecycle.ts';
import type { ContextSubgraphOptions } from './context-subgraph.ts';
import type { RunningSubgraph } from './server.ts';

export async function runContextProcess(context: ContextName, start: (base: ContextSubgraphOptions) => Promise<RunningSubgraph>): Promise<void> {
  const log = createLogger(context);
  try {
    checkConfiguration(process.env, ['subgraphs']);
    const databaseUrl = databaseUrlFor(context);
    if (!databaseUrl) throw new Error(`Set ${context.toUpperCase()}_DATABASE_URL or DATABASE_URL`);
    if (process.env.MIGRATE_ON_START !== 'false') {
      await ensureDatabase(databaseUrl);
      const { applied } = await applyMigrations({ databaseUrl, migrationsDir: migrationsDirOf(context) });
      if (applied.length > 0) log.info('migrations applied', { applied });
    }
    // NATS JetStream when NATS_URL is set, else the PostgreSQL queue (see events/bus/factory.ts).
    const retentionHours = intFromEnv('OUTBOX_RETENTION_HOURS', 7 * 24);
    if (retentionHours < 1) throw new Error(`OUTBOX_RETENTION_HOURS must be at least 1, got ${retentionHours}`);
    const eventBus = await createEventBus(process.env);
    log.info('event bus connected', { bus: eventBus.kind });
    const running = await start({
      databaseUrl,
      eventBus,
      // Published outbox rows are kept this long, so they can be republished after a broker loss.
      relay: { retentionMs: retentionHours * 3_600_000 },
      port: intFromEnv('PORT', intFromEnv(`${context.toUpperCase()}_PORT`, defaultPortOf(context))),
      host: process.env.HOST ?? '0.0.0.0',
      gatewayPublicKey: await importPublicKey(requireSecret(keyNames.gatewayIdentityPublic)),
      production: isProduction(),
    });
    stopOnSignals(context, async () => {
      await running.stop();
      await eventBus.close();
    });
  } catch (error) {
    log.error('could not start', errorFields(error));
    process.exit(1);
  }
}
