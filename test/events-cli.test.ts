import { execFile } from 'node:child_process';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, type EventEnvelope } from '../platform/events/envelope.ts';
import { handleOnce } from '../platform/events/inbox.ts';
import type { Subscription } from '../platform/events/bus.ts';
import { connectInventoryDatabase, type InventoryDatabase } from '../subgraphs/inventory/infrastructure/database.ts';
import { dropDatabase } from '../platform/database/provision.ts';
import { startPrivateNats } from './support/private-nats.ts';
import { freshDatabases, startStack, type Stack, type TestBusKind } from './support/stack.ts';

function events(stack: Stack, ...args: string[]): Promise<{ code: number; output: string }> {
  return eventsWith({ ...stack.eventBusEnv }, stack.databaseUrls, ...args);
}

/** `npm run events -- <args>` with this bus environment and these contexts' databases. */
function eventsWith(busEnv: Record<string, string>, databaseUrls: Record<string, string>, ...args: string[]): Promise<{ code: number; output: string }> {
  const env = {
    ...process.env,
    ...busEnv,
    ...Object.fromEntries(Object.entries(databaseUrls).map(([context, url]) => [`${context.toUpperCase()}_DATABASE_URL`, url])),
    LOG_LEVEL: 'error',
  };
  return new Promise((resolve) => {
    execFile('npm', ['run', '--silent', 'events', '--', ...args], { env }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

async function waitFor(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.each<TestBusKind>(['postgres', 'nats'])('npm run events, on the %s bus', (busKind) => {
  let stack: Stack;
  let db: InventoryDatabase;
  let subscription: Subscription;
  const consumer = `restocker${randomBytes(3).toString('hex')}`;
  const productId = randomUUID();
  let broken = true;
  const published: EventEnvelope[] = [];

  const available = async () => (await db.stockItem.findUniqueOrThrow({ where: { productId } })).available;

  beforeAll(async () => {
    stack = await startStack({ eventBus: busKind });
    db = connectInventoryDatabase(stack.databaseUrls.inventory).db;
    await db.stockItem.create({ data: { productId, available: 0 } });
    // A consumer whose effect is not idempotent by itself (+1 unit): only the inbox stands between
    // a replay and a unit counted twice.
    subscription = await stack.eventBus!.subscribe(consumer, { types: ['UnitReturned'], maxDeliveries: 2, backoffMs: [50] }, async (event) => {
      if (broken) throw new Error('restocking is broken (bug #42)');
      await handleOnce(db, consumer, event, async (tx) => {
        await tx.$executeRaw`UPDATE stock_items SET available = available + 1 WHERE product_id = ${productId}::uuid`;
      }, { ordering: 'monotonic' });
    });
    for (let version = 1; version <= 3; version++) {
      const event = createEnvelope('inventory', { type: 'UnitReturned', aggregateType: 'Return', aggregateId: randomUUID(), aggregateVersion: version, payload: { productId } }, { correlationId: randomUUID(), causationId: randomUUID() });
      published.push(event);
      await stack.eventBus!.publish(event);
    }
    await waitFor('three dead letters', async () => (await stack.eventBus!.deadLetters(consumer)).length === 3);
  });
  afterAll(async () => {
    await subscription?.stop();
    await db?.$disconnect();
    await stack?.stop();
  });

  it('dlq list shows each dead letter with its error and attempt count', async () => {
    const { code, output } = await events(stack, 'dlq', 'list', '--consumer', consumer);
    expect(code).toBe(0);
    for (const event of published) expect(output).toContain(`event ${event.eventId}, 2 attempts, last error: restocking is broken (bug #42)`);
  });

  it('status shows the outbox backlog of every context and the dead letters of the consumer', async () => {
    const { code, output } = await events(stack, 'status');
    expect(code).toBe(0);
    expect(output).toMatch(new RegExp(`Event bus: ${busKind}`));
    for (const context of Object.keys(stack.databaseUrls)) expect(output).toMatch(new RegExp(`\\n\\s+${context}\\s+\\d+\\s*\\n`));
    expect(output).toMatch(new RegExp(`${consumer}\\s+lag\\s+\\d+\\s+dead letters 3`));
  });

  it('dlq replay --all puts them back, and the fixed handler applies each exactly once', async () => {
    broken = false;
    const { code, output } = await events(stack, 'dlq', 'replay', '--all', '--consumer', consumer);
    expect(code).toBe(0);
    expect(output).toContain('Replayed 3 dead letter(s).');
    await waitFor('three units back in stock', async () => (await available()) === 3);
    expect((await events(stack, 'dlq', 'list', '--consumer', consumer)).output).toContain('No dead letters.');
    // Replaying again finds nothing, and nothing is applied twice.
    expect((await events(stack, 'dlq', 'replay', '--all', '--consumer', consumer)).output).toContain('Replayed 0 dead letter(s).');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await available()).toBe(3);
  });

  it('refuses an unknown command with its usage and exit code 1', async () => {
    const { code, output } = await events(stack, 'frobnicate');
    expect(code).toBe(1);
    expect(output).toContain('usage: npm run events --');
  });
});

describe('npm run events, on a NATS without the platform’s stream (it lost its data, or no service started yet)', () => {
  it('status and dlq list say the stream does not exist, and create neither a stream nor a consumer', { timeout: 60_000 }, async () => {
    const nats = await startPrivateNats();
    const databaseUrls = await freshDatabases();
    try {
      const status = await eventsWith({ NATS_URL: nats.url }, databaseUrls, 'status');
      expect(status.code).toBe(1);
      // The outbox backlog is still shown: it is read from the contexts' databases.
      expect(status.output).toMatch(/\n\s+catalog\s+0\s*\n/);
      expect(status.output).toContain('The stream "DOMAIN_EVENTS" does not exist on NATS');
      const list = await eventsWith({ NATS_URL: nats.url }, databaseUrls, 'dlq', 'list');
      expect(list.code).toBe(1);
      expect(list.output).toContain('does not exist on NATS');

      const nc = await connectNats({ servers: nats.url });
      try {
        const streams = await (await jetstreamManager(nc)).streams.names().next();
        expect(streams).toEqual([]);
      } finally {
        await nc.close();
      }
    } finally {
      await nats.dispose();
      for (const url of Object.values(databaseUrls)) await dropDatabase(url);
    }
  });
});
