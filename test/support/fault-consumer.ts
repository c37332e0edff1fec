/**
 * Test-only: the inventory consumer in a process of its own, on the REAL bus named by its
 * environment (NATS_URL… or EVENT_BUS_DATABASE_URL, as createEventBus reads them). Each event
 * goes through the inbox (receiveStock: one more unit of stock, once) and every delivery is
 * appended to `<file>` (JSON lines, see FaultDelivery) before the handler returns.
 *
 *   node --import tsx test/support/fault-consumer.ts <inventoryDatabaseUrl> <consumer> <file> [options]
 *
 *   --name <label>            the `process` recorded with each delivery (default: the pid)
 *   --kill-after-first        SIGKILL this process right after the first handleOnce resolved:
 *                             the effect is committed, the delivery never acknowledged
 *   --lose-acks-below <n>     throw after handleOnce resolved while the attempt is below n, as if
 *                             the acknowledgement had been lost: every event is delivered n times
 *   --max-deliveries <n> --backoff-ms <a,b,…> --concurrency <n>   subscription options
 *   --bus-options <json>      options of createEventBus (e.g. '{"nats":{"ackWaitMs":1500}}')
 *
 * Prints `subscribed` once the durable consumer is subscribed.
 */
import { parseArgs } from 'node:util';
import { PrismaClient as InventoryClient } from '../../prisma/inventory/client/client.ts';
import { prismaClientOptions } from '../../platform/database/prisma.ts';
import { createEventBus } from '../../platform/events/bus/factory.ts';
import { faultEventType, parseBusOptions, receiveStock, recordDelivery } from './fault-harness.ts';

const { positionals, values } = parseArgs({
  options: {
    name: { type: 'string' },
    'kill-after-first': { type: 'boolean', default: false },
    'lose-acks-below': { type: 'string', default: '0' },
    'max-deliveries': { type: 'string' },
    'backoff-ms': { type: 'string' },
    concurrency: { type: 'string' },
    'bus-options': { type: 'string' },
  },
  allowPositionals: true,
});
const [databaseUrl, consumer, file] = positionals;
if (!databaseUrl || !consumer || !file) throw new Error('usage: fault-consumer.ts <inventoryDatabaseUrl> <consumer> <file> [options]');
const label = values.name ?? String(process.pid);
const loseAcksBelow = Number(values['lose-acks-below']);

const db = new InventoryClient(prismaClientOptions(databaseUrl, 4));
const bus = await createEventBus(process.env, parseBusOptions(values['bus-options']));
const subscription = await bus.subscribe(
  consumer,
  {
    types: [faultEventType],
    ...(values['max-deliveries'] ? { maxDeliveries: Number(values['max-deliveries']) } : {}),
    ...(values['backoff-ms'] ? { backoffMs: values['backoff-ms'].split(',').map(Number) } : {}),
    ...(values.concurrency ? { concurrency: Number(values.concurrency) } : {}),
  },
  async (event, { attempt }) => {
    let outcome;
    try {
      outcome = await receiveStock(db, consumer, event);
    } catch (error) {
      recordDelivery(file, { process: label, eventId: event.eventId, attempt, outcome: `failed: ${(error as Error).message}`, at: Date.now() });
      throw error;
    }
    recordDelivery(file, { process: label, eventId: event.eventId, attempt, outcome, at: Date.now() });
    // Committed, not acknowledged: the handler never returns to the bus.
    if (values['kill-after-first']) process.kill(process.pid, 'SIGKILL');
    if (attempt < loseAcksBelow) throw new Error(`acknowledgement lost (attempt ${attempt})`);
  },
);
console.log('subscribed');

process.once('SIGTERM', () => {
  void subscription
    .stop()
    .then(() => bus.close())
    .then(() => db.$disconnect())
    .then(() => process.exit(0));
});
