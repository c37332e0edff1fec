/**
 * The operator commands find a running `npm start` the same way (platform/runtime-file.ts
 * `locatePlatform`): with no DATABASE_URL in their environment, through the runtime file it
 * writes under DATA_DIR. `npm run projections` used to know only ORDERS_DATABASE_URL / DATABASE_URL.
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contextNames, type ContextName } from '../platform/contexts.ts';
import { dropDatabase } from '../platform/database/provision.ts';
import { writeRuntimeFile } from '../platform/runtime-file.ts';
import { connectOrdersDatabase } from '../subgraphs/orders/infrastructure/database.ts';
import { OrderStore } from '../subgraphs/orders/infrastructure/order-store.ts';
import { freshDatabases, startTestBus, type TestBus } from './support/stack.ts';

/** `npm run <tool> -- <args>` as an operator beside `npm start` runs it: no database or bus in its environment. */
function operatorCommand(tool: 'projections' | 'events', dataDir: string, ...args: string[]): Promise<{ code: number; output: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) if (/DATABASE_URL|^NATS_|^EVENT_BUS_/.test(name)) delete env[name];
  Object.assign(env, { DATA_DIR: dataDir, LOG_LEVEL: 'error' });
  return new Promise((resolve) => {
    execFile('npm', ['run', '--silent', tool, '--', ...args], { env }, (error, stdout, stderr) =>
      resolve({ code: error ? Number(error.code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

/** The pid of a process that has exited: what a runtime file left by a killed `npm start` names. */
async function pidOfAnEndedProcess(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

describe('the operator commands, with `npm start` running and no DATABASE_URL set', () => {
  let databaseUrls: Record<ContextName, string>;
  let bus: TestBus;
  const dataDirs: string[] = [];
  const newDataDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'commerce-operator-'));
    dataDirs.push(dir);
    return dir;
  };
  let dataDir: string;
  const orderIds: string[] = [];

  beforeAll(async () => {
    databaseUrls = await freshDatabases();
    bus = await startTestBus('postgres');
    // What `npm start` writes; this test process stands in for its supervisor.
    dataDir = newDataDir();
    writeRuntimeFile(dataDir, { databaseUrls, eventBusEnv: bus.env, supervisorPid: process.pid });
    const { db } = connectOrdersDatabase(databaseUrls.orders);
    try {
      const store = new OrderStore(db);
      for (let i = 0; i < 3; i++) {
        const orderId = randomUUID();
        await store.execute(
          orderId,
          {
            type: 'PlaceOrder',
            orderId,
            customerId: randomUUID(),
            lines: [{ productId: randomUUID(), quantity: 1, unitPrice: 1_000 + i }],
            currency: 'EUR',
            shippingAddress: { name: 'Ada', line1: '1 Main St', line2: null, city: 'London', postalCode: 'N1', country: 'GB' },
            idempotencyKey: randomUUID(),
            at: new Date().toISOString(),
          },
          { correlationId: 'operator-test', causationId: 'operator-test' },
        );
        orderIds.push(orderId);
      }
    } finally {
      await db.$disconnect();
    }
  });
  afterAll(async () => {
    await bus?.bus.close();
    await bus?.dispose();
    for (const url of Object.values(databaseUrls ?? {})) await dropDatabase(url);
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  });

  it('projections -- rebuild orders rebuilds the read models of the orders database the runtime file names', async () => {
    const sql = new pg.Client({ connectionString: databaseUrls.orders });
    await sql.connect();
    try {
      // No projector runs here: every summary after the command is the command's work.
      expect((await sql.query('SELECT order_id FROM order_summaries')).rows).toEqual([]);
      const events = Number((await sql.query<{ n: string }>('SELECT count(*) AS n FROM order_events')).rows[0]!.n);

      const { code, output } = await operatorCommand('projections', dataDir, 'rebuild', 'orders');
      expect(output).toContain(`orders: replayed ${events} events into the read models of ${orderIds.length} orders`);
      expect(code).toBe(0);
      const summaries = await sql.query<{ order_id: string }>('SELECT order_id FROM order_summaries');
      expect(summaries.rows.map((row) => row.order_id).sort()).toEqual([...orderIds].sort());
    } finally {
      await sql.end();
    }
  });

  it('events -- status finds the same platform through the same file', async () => {
    const { code, output } = await operatorCommand('events', dataDir, 'status');
    expect(code).toBe(0);
    expect(output).toContain('Event bus: postgres');
    for (const context of contextNames) expect(output).toMatch(new RegExp(`\\n\\s+${context}\\s+\\d+\\s*\\n`));
  });

  it('both say no platform is found, and exit 1, when there is no runtime file', async () => {
    const empty = newDataDir();
    for (const [tool, ...args] of [['projections', 'rebuild', 'orders'], ['events', 'status']] as const) {
      const { code, output } = await operatorCommand(tool, empty, ...args);
      expect(code, tool).toBe(1);
      expect(output, tool).toContain('No platform found: start it with `npm start`');
    }
  });

  it('both refuse a runtime file left by an `npm start` that no longer runs, naming it', async () => {
    const stale = newDataDir();
    const pid = await pidOfAnEndedProcess();
    writeRuntimeFile(stale, { databaseUrls, eventBusEnv: bus.env, supervisorPid: pid });
    for (const [tool, ...args] of [['projections', 'rebuild', 'orders'], ['events', 'status']] as const) {
      const { code, output } = await operatorCommand(tool, stale, ...args);
      expect(code, tool).toBe(1);
      expect(output, tool).toContain(`runtime.json is left from an \`npm start\` that no longer runs (pid ${pid})`);
    }
  });
});
