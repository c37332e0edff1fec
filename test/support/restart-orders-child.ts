/**
 * Test-only: the orders subgraph with its saga in a process of its own, so that a test can
 * SIGKILL it in the middle of a saga and start it again on the same database.
 *
 *   node --import tsx test/support/restart-orders-child.ts
 *
 * Environment:
 *   ORDERS_DATABASE_URL            the orders database (already migrated)
 *   PORT                           the port to serve on (the gateway knows it; a restart reuses it)
 *   GATEWAY_IDENTITY_PUBLIC_KEY    SPKI PEM of the gateway's identity key
 *   SAGA_STEP_TIMEOUT_MS           deadline of each waiting saga step
 *   the bus, as createEventBus reads it: EVENT_BUS_DATABASE_URL, or NATS_URL + NATS_STREAM + NATS_SUBJECT_PREFIX
 *   STANDBY_CONFIG_FILE            optional: load the code, print `standby`, and start only on
 *                                  SIGUSR2, then with the JSON `{ "stepTimeoutMs": n }` of that file.
 *                                  A restart then costs the start alone, not Node's and the code's
 *                                  loading; until the signal it has connected to nothing.
 *
 * Prints `ready <url>` once it serves GraphQL, consumes its events and runs the deadline sweeper.
 * SIGTERM stops it cleanly (the tests SIGKILL it instead); it kills itself when its parent dies.
 */
import { readFileSync } from 'node:fs';
import { intFromEnv, keyNames, requireSecret } from '../../platform/config.ts';
import { createEventBus } from '../../platform/events/bus/factory.ts';
import { importPublicKey } from '../../platform/identity/keys.ts';
import { orderSaga } from '../../subgraphs/orders/saga/wiring.ts';
import { startOrdersSubgraph } from '../../subgraphs/orders/subgraph.ts';

const databaseUrl = process.env.ORDERS_DATABASE_URL;
if (!databaseUrl) throw new Error('ORDERS_DATABASE_URL must be set');
const port = intFromEnv('PORT', 0);
if (port === 0) throw new Error('PORT must be set (a restart must come back on the same port)');

// Never outlive the test that started it (a test run killed before its cleanup).
const parent = process.ppid;
const watchdog = setInterval(() => {
  if (process.ppid !== parent) process.kill(process.pid, 'SIGKILL');
}, 1_000);

let stepTimeoutMs = intFromEnv('SAGA_STEP_TIMEOUT_MS', 30_000);
const standbyConfig = process.env.STANDBY_CONFIG_FILE;
if (standbyConfig) {
  const go = new Promise((resolve) => process.once('SIGUSR2', resolve));
  console.log('standby');
  await go;
  stepTimeoutMs = (JSON.parse(readFileSync(standbyConfig, 'utf8')) as { stepTimeoutMs: number }).stepTimeoutMs;
}
watchdog.unref();

const eventBus = await createEventBus(process.env, { postgres: { pollingIntervalMs: 100, poolSize: 2 } });
const orders = await startOrdersSubgraph({
  databaseUrl,
  eventBus,
  port,
  host: '127.0.0.1',
  gatewayPublicKey: await importPublicKey(requireSecret(keyNames.gatewayIdentityPublic)),
  production: false,
  relay: { pollIntervalMs: 200 },
  saga: orderSaga({ stepTimeoutMs, sweepIntervalMs: 100 }),
  projector: { pollIntervalMs: 200 },
});
console.log(`ready ${orders.url}`);

process.once('SIGTERM', () => {
  void orders
    .stop()
    .then(() => eventBus.close())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    );
});
