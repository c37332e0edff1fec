/**
 * Overload answers with a code, not an internal error (issue 10, item 7; docs/decisions/0016).
 * Bursts of writes through a production gateway either succeed or are told to retry
 * (SERVICE_OVERLOADED, HTTP 503, Retry-After), and what was refused left nothing behind.
 */
import { randomUUID } from 'node:crypto';
import { GraphQLError } from 'graphql';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startGateway, type RunningGateway } from '../gateway/server.ts';
import { withDatabase } from '../platform/config.ts';
import { isOverloaded, ServiceOverloaded } from '../platform/database/overload.ts';
import { prismaClientOptions } from '../platform/database/prisma.ts';
import { WriteQueue } from '../platform/database/write-queue.ts';
import { formatGraphQLError } from '../platform/errors/masking.ts';
import { overloadRetryAfter } from '../platform/graphql/overload-status.ts';
import { deterministicUuid } from '../platform/ids.ts';
import { PrismaClient } from '../prisma/orders/client/client.ts';
import { demoUsers } from '../scripts/demo/data.ts';
import { seedDemoData } from '../scripts/demo/seed.ts';
import { decideCreate } from '../subgraphs/shipping/domain/shipment.ts';
import { connectShippingDatabase } from '../subgraphs/shipping/infrastructure/database.ts';
import { ShipmentRepository } from '../subgraphs/shipping/infrastructure/shipment-repository.ts';
import { inStockProducts, testAddress } from './support/orders.ts';
import { gatewayOptionsFor, startStack, type Stack } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

interface Answer {
  status: number;
  retryAfter: string | null;
  data?: Record<string, any> | null;
  errors?: { message: string; extensions?: Record<string, any> }[];
}

/** A client's POST: the status and `Retry-After` are what it branches on, so they are kept. */
async function post(url: string, token: string, query: string, variables: Record<string, unknown>): Promise<Answer> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), ...((await response.json()) as object) };
}

const placeOrderMutation = 'mutation ($input: PlaceOrderInput!) { placeOrder(input: $input) { id status } }';
const placeOrderInput = (idempotencyKey: string) => ({
  input: { lines: [{ productId: inStockProducts[0]!.id, quantity: 1 }], shippingAddress: testAddress, paymentToken: 'tok_visa', idempotencyKey },
});

/** Every answer is a success or SERVICE_OVERLOADED with 503 and Retry-After; returns the split. */
function splitAnswers(answers: Answer[], field: string): { succeeded: number[]; overloaded: number[] } {
  const succeeded: number[] = [];
  const overloaded: number[] = [];
  // Every outcome by code first, so a failure shows the whole picture, not its first oddity.
  const outcomes = answers.map((answer) => (answer.errors ? `${answer.status} ${answer.errors.map((error) => error.extensions?.code).join(',')}` : `${answer.status} ok`));
  const tally = Object.fromEntries([...new Set(outcomes)].map((outcome) => [outcome, outcomes.filter((other) => other === outcome).length]));
  expect(Object.keys(tally).filter((outcome) => outcome !== '200 ok' && outcome !== '503 SERVICE_OVERLOADED'), JSON.stringify(tally)).toEqual([]);
  answers.forEach((answer, index) => {
    if (!answer.errors && answer.status === 200 && answer.data?.[field]) return void succeeded.push(index);
    expect(answer, `answer ${index}`).toMatchObject({ status: 503, data: null });
    expect(answer.errors!.map((error) => error.extensions?.code)).toEqual(['SERVICE_OVERLOADED']);
    expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(answer.errors![0]!.message).toMatch(/try again/i);
    overloaded.push(index);
  });
  return { succeeded, overloaded };
}

async function withClient<T>(databaseUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

const count = async (client: pg.Client, sql: string, values: unknown[] = []) => (await client.query<{ n: number }>(sql, values)).rows[0]!.n;

describe('bursts of writes through a production gateway succeed or are told to retry, and the refused leave nothing behind', { timeout: 180_000 }, () => {
  let stack: Stack;
  let gateway: RunningGateway;
  let customer: string;
  let admin: string;

  beforeAll(async () => {
    // With the bus, as deployed: the saga's consumers and relays share the pools with the burst.
    stack = await startStack({ production: true, eventBus: 'nats', sagaStepTimeoutMs: 120_000 });
    // Everything runs in this one process on a shared 2-core machine, where a burst can hold the
    // event loop for seconds: the gateway's per-attempt timeout (5 s, the resilience tests' subject)
    // would turn that into SUBGRAPH_TIMEOUT. Here the subgraphs' own bounds are under test: the
    // write queue's wait (5 s) and the pool's connection wait (3 s).
    gateway = await startGateway(gatewayOptionsFor(stack, { production: true, requestTimeoutMs: 60_000, resilience: { defaults: { timeoutMs: 60_000 } } }));
    await seedDemoData(stack.databaseUrls);
    customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
    admin = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.admin.email), roles: ['customer', 'admin'] });
  }, 120_000);
  afterAll(async () => {
    await gateway?.stop();
    await stack?.stop();
  });

  it('answers 100 concurrent placeOrder calls each with its order or SERVICE_OVERLOADED (503, Retry-After), and stores exactly the orders it confirmed', async () => {
    const keys = Array.from({ length: 100 }, () => randomUUID());
    // Under query load, as in production: the customer's order list is read while the burst lands.
    const readers = Array.from({ length: 100 }, () => post(gateway.url, customer, '{ me { orders(first: 20) { edges { node { id status total } } } } }', {}));
    const answers = await Promise.all(keys.map((key) => post(gateway.url, customer, placeOrderMutation, placeOrderInput(key))));
    const reads = splitAnswers(await Promise.all(readers), 'me');
    const { succeeded, overloaded } = splitAnswers(answers, 'placeOrder');
    console.info(`100 concurrent placeOrder (pool ${process.env.DATABASE_POOL_SIZE}): ${succeeded.length} placed, ${overloaded.length} told to retry; reads ${reads.succeeded.length} answered, ${reads.overloaded.length} told to retry`);

    await withClient(stack.databaseUrls.orders, async (orders) => {
      const placedIds = succeeded.map((index) => answers[index]!.data!.placeOrder.id as string);
      expect(await count(orders, `SELECT count(*)::int AS n FROM order_events WHERE type = 'OrderPlaced'`)).toBe(succeeded.length);
      expect(await count(orders, 'SELECT count(DISTINCT order_id)::int AS n FROM order_events WHERE order_id = ANY($1::uuid[])', [placedIds])).toBe(succeeded.length);
      expect(await count(orders, 'SELECT count(*)::int AS n FROM order_sagas')).toBe(succeeded.length);
      // The refused keys are free: nothing of theirs was written, a retry places the order anew.
      const refusedKeys = overloaded.map((index) => keys[index]!);
      expect(await count(orders, 'SELECT count(*)::int AS n FROM order_idempotency WHERE idempotency_key = ANY($1)', [refusedKeys])).toBe(0);
    });
  });

  it('answers 50 concurrent advanceShipment calls each with the move or SERVICE_OVERLOADED (503, Retry-After), and moves exactly the shipments it confirmed', async () => {
    const orderIds = Array.from({ length: 50 }, () => randomUUID());
    const { db } = connectShippingDatabase(stack.databaseUrls.shipping);
    try {
      // Shipments as the saga creates them, without running 50 sagas.
      const shipments = new ShipmentRepository(db);
      const customerId = deterministicUuid('customer', demoUsers.customer.email);
      for (const orderId of orderIds) {
        const decision = decideCreate(null, { orderId, customerId, address: testAddress, lines: [{ productId: inStockProducts[0]!.id, quantity: 1 }] });
        await db.$transaction((tx) => shipments.record(tx, decision, { correlationId: orderId, causationId: orderId }, new Date()));
      }
    } finally {
      await db.$disconnect();
    }
    const mutation = 'mutation ($id: ID!) { advanceShipment(orderId: $id, to: DISPATCHED) { status } }';
    const answers = await Promise.all(orderIds.map((id) => post(gateway.url, admin, mutation, { id })));
    const { succeeded, overloaded } = splitAnswers(answers, 'advanceShipment');
    console.info(`50 concurrent advanceShipment (pool ${process.env.DATABASE_POOL_SIZE}): ${succeeded.length} moved, ${overloaded.length} told to retry`);

    await withClient(stack.databaseUrls.shipping, async (shipping) => {
      const moved = succeeded.map((index) => orderIds[index]!);
      const refused = overloaded.map((index) => orderIds[index]!);
      expect(await count(shipping, `SELECT count(*)::int AS n FROM shipments WHERE status = 'DISPATCHED' AND order_id = ANY($1::uuid[])`, [moved])).toBe(moved.length);
      expect(await count(shipping, `SELECT count(*)::int AS n FROM shipments WHERE status = 'CREATED' AND order_id = ANY($1::uuid[])`, [refused])).toBe(refused.length);
      expect(await count(shipping, `SELECT count(*)::int AS n FROM shipment_status_changes WHERE status = 'DISPATCHED'`)).toBe(moved.length);
      expect(await count(shipping, `SELECT count(*)::int AS n FROM outbox_events WHERE envelope->>'type' = 'ShipmentDispatched'`)).toBe(moved.length);
    });
  });
});

/** Sets environment variables (read when a stack starts); the function returned restores them. */
function withEnv(values: Record<string, string>): () => void {
  const before = Object.fromEntries(Object.keys(values).map((name) => [name, process.env[name]]));
  Object.assign(process.env, values);
  return () => {
    for (const [name, value] of Object.entries(before)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}

describe('forced exhaustion on the production path answers SERVICE_OVERLOADED, never INTERNAL_SERVER_ERROR', { timeout: 180_000 }, () => {
  let stack: Stack;
  let customer: string;

  beforeAll(async () => {
    // One mutation at a time and no queue; two connections per pool, so a blocked writer and a
    // blocked reader take them all; a statement may wait on a lock for longer than the test runs,
    // a request for a connection 1 s.
    const restore = withEnv({ DATABASE_WRITE_CONCURRENCY: '1', DATABASE_WRITE_QUEUE: '0', DATABASE_POOL_SIZE: '2', DATABASE_STATEMENT_TIMEOUT_MS: '60000', DATABASE_CONNECTION_WAIT_MS: '1000' });
    try {
      stack = await startStack({ production: true });
    } finally {
      restore();
    }
    await seedDemoData(stack.databaseUrls);
    customer = await stack.tokenFor({ customerId: deterministicUuid('customer', demoUsers.customer.email) });
  }, 120_000);
  afterAll(() => stack?.stop());

  /**
   * Backends waiting for a lock on `table`. From pg_locks, not pg_stat_activity's query text: a
   * statement blocked while it is parsed still shows the connection's previous query.
   */
  const waitingOnLock = (client: pg.Client, table: string) =>
    count(client, 'SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = $1::regclass', [table]);

  it('refuses a mutation that finds the only write slot taken, and a query that finds no free connection, with SERVICE_OVERLOADED, 503 and Retry-After, writing nothing', async () => {
    await withClient(stack.databaseUrls.orders, async (locker) => {
      // Holds every placement at its idempotency row, and every read of the order summaries.
      await locker.query('BEGIN');
      // EXCLUSIVE lets reads of the idempotency rows through; ACCESS EXCLUSIVE stops every read.
      await locker.query('LOCK TABLE order_idempotency IN EXCLUSIVE MODE');
      await locker.query('LOCK TABLE order_summaries IN ACCESS EXCLUSIVE MODE');
      let released = false;
      const release = async () => {
        if (!released) await locker.query('ROLLBACK');
        released = true;
      };
      try {
        const blockedKey = randomUUID();
        const blockedWrite = post(stack.gatewayUrl, customer, placeOrderMutation, placeOrderInput(blockedKey));
        await waitFor('the first placement waiting on the lock', async () => ((await waitingOnLock(locker, 'order_idempotency')) === 1 ? true : undefined));

        // The only write slot is held: the next mutation is refused before it starts.
        const shedKey = randomUUID();
        const shed = await post(stack.gatewayUrl, customer, placeOrderMutation, placeOrderInput(shedKey));
        expect(shed).toMatchObject({ status: 503, data: null, errors: [{ extensions: { code: 'SERVICE_OVERLOADED' } }] });
        expect(Number(shed.retryAfter)).toBeGreaterThanOrEqual(1);

        // A read takes the pool's second connection and waits on the lock; the next finds none free.
        const someOrder = randomUUID();
        const read = `query ($id: ID!) { order(id: $id) { id } }`;
        const blockedRead = post(stack.gatewayUrl, customer, read, { id: someOrder });
        await waitFor('a read waiting on the lock', async () => ((await waitingOnLock(locker, 'order_summaries')) >= 1 ? true : undefined));
        const starved = await post(stack.gatewayUrl, customer, read, { id: randomUUID() });
        expect(starved).toMatchObject({ status: 503, data: { order: null }, errors: [{ path: ['order'], extensions: { code: 'SERVICE_OVERLOADED' } }] });
        expect(Number(starved.retryAfter)).toBeGreaterThanOrEqual(1);
        expect(JSON.stringify(starved)).not.toMatch(/prisma|pool|timeout exceeded|P20\d\d/i);

        await release();
        expect((await blockedWrite).errors).toBeUndefined();
        expect((await blockedRead).errors).toBeUndefined();
        const keys = await locker.query<{ key: string }>('SELECT idempotency_key AS key FROM order_idempotency');
        expect(keys.rows.map((row) => row.key)).toEqual([blockedKey]);
      } finally {
        await release();
      }
    });
  });
});

/** A promise and the function that settles it, for writers the test holds and lets go. */
function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('the write queue lets writers in turn by turn and refuses, before they start, those it cannot serve in time', () => {
  const quiet = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };

  it('runs at most maxConcurrent writers at once and the queued ones in order, refusing one more than the queue holds', async () => {
    const queue = new WriteQueue({ name: 'test', maxConcurrent: 1, maxQueued: 2, log: quiet });
    const first = gate();
    const ran: string[] = [];
    const writer = (name: string, until?: Promise<void>) => queue.run(async () => {
      ran.push(name);
      await until;
      return name;
    });
    const running = [writer('a', first.opened), writer('b'), writer('c')];
    await expect(writer('d')).rejects.toBeInstanceOf(ServiceOverloaded);
    expect(ran).toEqual(['a']);
    first.open();
    expect(await Promise.all(running)).toEqual(['a', 'b', 'c']);
    expect(ran).toEqual(['a', 'b', 'c']);
  });

  it('refuses a writer whose turn does not come within maxWaitMs, and gives its turn to the next writer without running it', async () => {
    const queue = new WriteQueue({ name: 'test', maxConcurrent: 1, maxQueued: 5, maxWaitMs: 200, log: quiet });
    const first = gate();
    let lateRan = false;
    const holding = queue.run(() => first.opened);
    const late = queue.run(async () => void (lateRan = true));
    await expect(late).rejects.toMatchObject({ extensions: { code: 'SERVICE_OVERLOADED', retryAfter: 1 } });
    const next = queue.run(async () => 'next');
    first.open();
    await holding;
    expect(await next).toBe('next');
    expect(lateRan).toBe(false);
    expect(queue.load).toEqual({ running: 0, queued: 0 });
  });

  it('refuses, without making it wait, a writer whose turn could not come early enough to finish before its deadline', async () => {
    const queue = new WriteQueue({ name: 'test', maxConcurrent: 1, maxQueued: 10, maxWaitMs: 60_000, log: quiet });
    // Teach it how long a writer takes: about 500 ms (long, so that a busy machine's pauses do not
    // blur "refused at once" and "refused when its deadline came").
    await queue.run(() => new Promise((resolve) => setTimeout(resolve, 500)));
    const first = gate();
    const holding = queue.run(() => first.opened);
    const deadline = Date.now() + 750;
    await expect(queue.run(async () => 'too late', { deadline })).rejects.toBeInstanceOf(ServiceOverloaded);
    expect(Date.now(), 'refused before its deadline came, not when it passed').toBeLessThan(deadline);
    const roomy = queue.run(async () => 'in time', { deadline: Date.now() + 30_000 });
    first.open();
    await holding;
    expect(await roomy).toBe('in time');
  });
});

describe("the database's own ways of saying \"too busy\" reach clients as SERVICE_OVERLOADED, also in production", () => {
  const serverUrl = () => withDatabase(inject('testServerUrl'), 'postgres');
  const asClientSees = (error: unknown) => formatGraphQLError(new GraphQLError(String((error as Error).message), { originalError: error as Error, path: ['placeOrder'] }), true);
  const expectOverloaded = (error: unknown) => {
    expect(isOverloaded(error)).toBe(true);
    const seen = asClientSees(error);
    expect(seen).toEqual({ message: expect.stringMatching(/try again in 1 s/), path: ['placeOrder'], extensions: { code: 'SERVICE_OVERLOADED', retryAfter: 1 } });
  };

  it('maps a transaction that could not get a connection within maxWait (Prisma P2028) and a statement the pool had no connection for', async () => {
    const db = new PrismaClient(prismaClientOptions(serverUrl(), { poolSize: 1, connectionWaitMs: 300 }));
    const held = gate();
    const started = gate();
    try {
      // Takes the pool's only connection and keeps it.
      const holding = db.$transaction(async (tx) => {
        await tx.$queryRaw`SELECT 1`;
        started.open();
        await held.opened;
      }, { timeout: 30_000 });
      await started.opened;
      const notStarted = await db.$transaction(async (tx) => tx.$queryRaw`SELECT 1`, { maxWait: 100 }).catch((error: unknown) => error);
      expect(notStarted).toMatchObject({ code: 'P2028' });
      expectOverloaded(notStarted);
      const starved = await db.$queryRaw`SELECT 1`.catch((error: unknown) => error);
      expect(String((starved as Error).message)).toMatch(/timeout exceeded when trying to connect/);
      expectOverloaded(starved);
      held.open();
      await holding;
    } finally {
      held.open();
      await db.$disconnect();
    }
  });

  it("maps PostgreSQL's too_many_connections (53300)", async () => {
    const role = `${inject('runPrefix')}_no_connections`;
    const admin = new pg.Client({ connectionString: serverUrl() });
    await admin.connect();
    try {
      // A role allowed no connections: PostgreSQL refuses it exactly as it refuses one client past max_connections.
      await admin.query(`CREATE ROLE "${role}" LOGIN CONNECTION LIMIT 0`);
      const url = new URL(serverUrl());
      url.username = role;
      const db = new PrismaClient(prismaClientOptions(url.toString(), { poolSize: 1 }));
      try {
        const refused = await db.$queryRaw`SELECT 1`.catch((error: unknown) => error);
        expect(JSON.stringify(refused) + String((refused as Error).message)).toMatch(/53300|too many connections/i);
        expectOverloaded(refused);
      } finally {
        await db.$disconnect();
      }
    } finally {
      await admin.query(`DROP ROLE IF EXISTS "${role}"`);
      await admin.end();
    }
  });

  it('leaves other transaction failures (one that ran past its timeout) as internal errors', async () => {
    const db = new PrismaClient(prismaClientOptions(serverUrl(), { poolSize: 1 }));
    try {
      const expired = await db.$transaction(async (tx) => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return tx.$queryRaw`SELECT 1`;
      }, { timeout: 100 }).catch((error: unknown) => error);
      expect(expired).toMatchObject({ code: 'P2028' });
      expect(isOverloaded(expired)).toBe(false);
      expect(asClientSees(expired).extensions?.code).toBe('INTERNAL_SERVER_ERROR');
    } finally {
      await db.$disconnect();
    }
  });
});

describe('which responses are 503 with Retry-After', () => {
  const overloaded = (retryAfter?: number) => ({ message: 'busy', extensions: { code: 'SERVICE_OVERLOADED', ...(retryAfter ? { retryAfter } : {}) } });

  it('is a response with no data and a SERVICE_OVERLOADED error, retrying after the longest wait it asks for', () => {
    expect(overloadRetryAfter(null, [overloaded(2)])).toBe(2);
    expect(overloadRetryAfter({ placeOrder: null, other: null }, [overloaded(), { message: 'x', extensions: { code: 'BAD_USER_INPUT' } }, overloaded(3)])).toBe(3);
    expect(overloadRetryAfter(undefined, [overloaded()])).toBe(1);
  });

  it('is not a response with some data, nor one without SERVICE_OVERLOADED', () => {
    expect(overloadRetryAfter({ order: { id: '1' }, other: null }, [overloaded()])).toBeUndefined();
    expect(overloadRetryAfter(null, [{ message: 'x', extensions: { code: 'SUBGRAPH_TIMEOUT' } }])).toBeUndefined();
    expect(overloadRetryAfter(null, undefined)).toBeUndefined();
  });
});
