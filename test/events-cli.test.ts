import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, type EventEnvelope } from '../platform/events/envelope.ts';
import { handleOnce } from '../platform/events/inbox.ts';
import type { Subscription } from '../platform/events/bus.ts';
import { connectInventoryDatabase, type InventoryDatabase } from '../subgraphs/inventory/infrastructure/database.ts';
import { startStack, type Stack, type TestBusKind } from './support/stack.ts';

function events(stack: Stack, ...args: string[]): Promise<{ code: number; output: string }> {
  const env = {
    ...process.env,
    ...stack.eventBusEnv,
    ...Object.fromEntries(Object.entries(stack.databaseUrls).map(([context, url]) => [`${context.toUpperCase()}_DATABASE_URL`, url])),
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
