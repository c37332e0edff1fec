/**
 * Test-only: an outbox relay in a process of its own that publishes to the REAL bus named by its
 * environment (NATS_URL… or EVENT_BUS_DATABASE_URL, as createEventBus reads them). Each event
 * id is appended to `<file>` once the broker accepted it; with `--crash-after <n>` the process
 * SIGKILLs itself right after the n-th accepted publish, before the relay can mark the rows
 * published.
 *
 *   node --import tsx test/support/fault-relay.ts <databaseUrl> <file> [--crash-after <n>] [--bus-options <json>]
 *
 * Prints `leading` once it holds the relay's lock.
 */
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createEventBus } from '../../platform/events/bus/factory.ts';
import { OutboxRelay } from '../../platform/events/relay.ts';
import { parseBusOptions } from './fault-harness.ts';

const { positionals, values } = parseArgs({
  options: { 'crash-after': { type: 'string' }, 'bus-options': { type: 'string' } },
  allowPositionals: true,
});
const [databaseUrl, file] = positionals;
if (!databaseUrl || !file) throw new Error('usage: fault-relay.ts <databaseUrl> <file> [--crash-after <n>] [--bus-options <json>]');
const crashAfter = values['crash-after'] ? Number(values['crash-after']) : Infinity;

const bus = await createEventBus(process.env, parseBusOptions(values['bus-options']));
let published = 0;
const relay = new OutboxRelay({
  databaseUrl,
  name: 'fault-relay',
  pollIntervalMs: 100,
  publish: async (event) => {
    await bus.publish(event);
    appendFileSync(file, `${event.eventId}\n`);
    published += 1;
    // No await in between: nothing of the relay runs after this publish, the mark included.
    if (published >= crashAfter) process.kill(process.pid, 'SIGKILL');
  },
}).start();

const waitForLead = setInterval(() => {
  if (relay.state !== 'leading') return;
  clearInterval(waitForLead);
  console.log('leading');
}, 10);

process.once('SIGTERM', () => {
  clearInterval(waitForLead);
  void relay
    .stop()
    .then(() => bus.close())
    .then(() => process.exit(0));
});
