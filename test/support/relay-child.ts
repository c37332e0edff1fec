/**
 * Test-only: an outbox relay in a process of its own, whose publish function appends each
 * event id to a file and, with `--crash-after <n>`, SIGKILLs its own process right after the
 * n-th successful publish: before the relay can mark the rows published.
 *
 *   tsx test/support/relay-child.ts <databaseUrl> <file> [--crash-after <n>]
 *
 * Prints `leading` once it holds the relay's lock.
 */
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { OutboxRelay } from '../../platform/events/relay.ts';

const { positionals, values } = parseArgs({ options: { 'crash-after': { type: 'string' } }, allowPositionals: true });
const [databaseUrl, file] = positionals;
if (!databaseUrl || !file) throw new Error('usage: relay-child.ts <databaseUrl> <file> [--crash-after <n>]');
const crashAfter = values['crash-after'] ? Number(values['crash-after']) : Infinity;

let published = 0;
const relay = new OutboxRelay({
  databaseUrl,
  name: 'relay-child',
  pollIntervalMs: 50,
  publish: async (event) => {
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
  void relay.stop().then(() => process.exit(0));
});
