import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { withDatabase } from '../platform/config.ts';
import { applyMigrations, migrationsDirOf } from '../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../platform/database/provision.ts';
import type { EventBus } from '../platform/events/bus.ts';
import { createPostgresQueueBus } from '../platform/events/bus/postgres-queue.ts';
import type { AuthorizePayment } from '../platform/events/contracts/order-saga.ts';
import type { EventEnvelope } from '../platform/events/envelope.ts';
import type { Identity } from '../platform/identity/identity.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { defaultStepTimeoutMs } from '../subgraphs/orders/saga/saga-runner.ts';
import { PaymentChangedMeanwhile, decide, providerStepFor, type Payment } from '../subgraphs/payments/domain/payment.ts';
import {
  ProviderError,
  type AuthorizationAnswer,
  type AuthorizationRequest,
  type PaymentProvider,
  type RefundAnswer,
  type SettlementRequest,
} from '../subgraphs/payments/domain/payment-provider.ts';
import { connectPaymentsDatabase, type PaymentsDatabase } from '../subgraphs/payments/infrastructure/database.ts';
import { SimulatedPaymentProvider } from '../subgraphs/payments/infrastructure/simulated-provider.ts';
import { startPaymentsSubgraph } from '../subgraphs/payments/subgraph.ts';
import { sagaCommand, startContextHarness, type ContextHarness } from './support/context-harness.ts';
import { errorCodes } from './support/graphql.ts';
import { freshDatabaseName } from './support/run.ts';
import { generateTestKeys, type TestBusKind } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

const replyTypes = ['PaymentAuthorized', 'PaymentDeclined', 'PaymentCaptured', 'PaymentVoided', 'PaymentRefunded', 'PaymentRefundFailed'];
const slowTokenDelayMs = 1_500;

/**
 * The simulated provider, with the refunds payments asked for counted per order (asking is not
 * acting: the provider's own ledger, `provider_operations`, says what it did), and a way to make
 * the provider fail, as a network error would, before it acts.
 */
class ObservedProvider implements PaymentProvider {
  readonly refundsAsked = new Map<string, number>();
  /** Orders whose next refund call throws before it reaches the provider. */
  readonly failNextRefund = new Set<string>();

  constructor(private readonly inner: PaymentProvider) {}

  authorize(request: AuthorizationRequest): Promise<AuthorizationAnswer> {
    return this.inner.authorize(request);
  }

  capture(request: SettlementRequest): Promise<void> {
    return this.inner.capture(request);
  }

  void(request: Omit<SettlementRequest, 'amount'>): Promise<void> {
    return this.inner.void(request);
  }

  async refund(request: SettlementRequest): Promise<RefundAnswer> {
    this.refundsAsked.set(request.idempotencyKey, (this.refundsAsked.get(request.idempotencyKey) ?? 0) + 1);
    if (this.failNextRefund.delete(request.idempotencyKey)) throw new Error('connect ECONNRESET (the provider could not be reached)');
    return this.inner.refund(request);
  }
}

async function startPayments(bus: TestBusKind): Promise<ContextHarness & { provider: ObservedProvider }> {
  let provider: ObservedProvider | undefined;
  const harness = await startContextHarness({
    context: 'payments',
    bus,
    start: (options) =>
      startPaymentsSubgraph({ ...options, createProvider: (db) => (provider = new ObservedProvider(new SimulatedPaymentProvider(db, { slowTokenDelayMs }))) }),
    observe: replyTypes,
  });
  return Object.assign(harness, { provider: provider! });
}

function authorizeCommand(orderId: string, paymentToken: string, customerId: string = randomUUID()): AuthorizePayment {
  return { orderId, customerId, amount: 4_998, currency: 'EUR', paymentToken };
}

describe.each<TestBusKind>(['postgres', 'nats'])('payments answers the order saga on the %s bus', (busKind) => {
  let payments: Awaited<ReturnType<typeof startPayments>>;

  beforeAll(async () => {
    payments = await startPayments(busKind);
  });
  afterAll(() => payments?.stop());

  const repliesTo = (orderId: string) => payments.observed.filter((event) => event.aggregateId === orderId);
  const typesOf = (orderId: string) => repliesTo(orderId).map((event) => [event.type, event.aggregateVersion]);
  /** Waits until the order has received `count` replies; the last one. */
  async function nthReply(orderId: string, count: number): Promise<EventEnvelope> {
    await payments.waitForEvent(`reply ${count} to ${orderId}`, () => repliesTo(orderId).length >= count);
    return repliesTo(orderId)[count - 1]!;
  }
  const paymentRow = async (orderId: string) => (await payments.sql('SELECT * FROM payments WHERE order_id = $1', [orderId]))[0];
  /** What the provider's own ledger says it did about refunds of the order's hold, whatever the key. */
  async function refundsAtProvider(orderId: string): Promise<unknown[]> {
    const reference = (await paymentRow(orderId))!.provider_reference;
    const rows = await payments.sql<{ result: unknown }>(`SELECT result FROM provider_operations WHERE operation = 'refund' AND result->>'reference' = $1`, [reference]);
    return rows.map((row) => row.result);
  }
  /** Authorizes `paymentToken` and captures it: the payment a return's refund starts from. */
  async function capturedPayment(paymentToken: string): Promise<{ orderId: string; paymentId: string }> {
    const orderId = randomUUID();
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, paymentToken), 1));
    await payments.publish(sagaCommand('CapturePayment', { orderId }, 2));
    const captured = await nthReply(orderId, 2);
    expect(captured).toMatchObject({ type: 'PaymentCaptured', aggregateVersion: 2 });
    return { orderId, paymentId: captured.payload.paymentId as string };
  }

  it('authorizes tok_visa and replies PaymentAuthorized as version 1 of the payment, caused by the command', async () => {
    const orderId = randomUUID();
    const command = sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_visa'), 1);
    await payments.publish(command);
    const reply = await nthReply(orderId, 1);
    const row = await paymentRow(orderId);
    expect(reply).toMatchObject({
      type: 'PaymentAuthorized',
      source: 'payments',
      aggregateType: 'Payment',
      aggregateId: orderId,
      aggregateVersion: 1,
      payload: { orderId, paymentId: row!.id, amount: 4_998, currency: 'EUR' },
      correlationId: command.correlationId,
      causationId: command.eventId,
    });
    expect(row).toMatchObject({ status: 'AUTHORIZED', card_brand: 'visa', decline_reason: null, version: 1 });
    expect(row!.provider_reference).toMatch(/^sim_auth_/);
  });

  it('declines tok_declined as card_declined and an unknown token as unknown_token', async () => {
    const [declined, unknown] = [randomUUID(), randomUUID()];
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(declined, 'tok_declined'), 1));
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(unknown, 'tok_mastercard_4242'), 1));
    expect(await nthReply(declined, 1)).toMatchObject({ type: 'PaymentDeclined', aggregateVersion: 1, payload: { orderId: declined, reason: 'card_declined' } });
    expect(await nthReply(unknown, 1)).toMatchObject({ type: 'PaymentDeclined', aggregateVersion: 1, payload: { orderId: unknown, reason: 'unknown_token' } });
    expect(await paymentRow(declined)).toMatchObject({ status: 'DECLINED', decline_reason: 'card_declined', provider_reference: null, authorized_at: null });
  });

  it('answers another AuthorizePayment for a decided order with the same outcome, and applies a re-sent one once', async () => {
    const orderId = randomUUID();
    const first = sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_declined'), 1);
    await payments.publish(first);
    const original = await nthReply(orderId, 1);
    await payments.publish(first); // the same command again, as after a crash of the saga
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_visa'), 3, { eventId: randomUUID() }));
    const again = await nthReply(orderId, 2);
    expect(again.eventId).not.toBe(original.eventId);
    expect(again).toMatchObject({ type: 'PaymentDeclined', aggregateVersion: 1, payload: original.payload });
    expect(typesOf(orderId)).toEqual([['PaymentDeclined', 1], ['PaymentDeclined', 1]]);
    expect(await payments.sql('SELECT operation FROM provider_operations WHERE idempotency_key = $1', [orderId])).toEqual([{ operation: 'authorize' }]);
  });

  it('captures an authorized payment, then refunds it, with versions 2 and 3', async () => {
    const orderId = randomUUID();
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_visa'), 1));
    const authorized = await nthReply(orderId, 1);
    await payments.publish(sagaCommand('CapturePayment', { orderId }, 2));
    expect(await nthReply(orderId, 2)).toMatchObject({ type: 'PaymentCaptured', aggregateVersion: 2, payload: { orderId, paymentId: authorized.payload.paymentId, amount: 4_998, currency: 'EUR' } });
    await payments.publish(sagaCommand('RefundPayment', { orderId }, 3));
    expect(await nthReply(orderId, 3)).toMatchObject({ type: 'PaymentRefunded', aggregateVersion: 3, payload: { orderId, paymentId: authorized.payload.paymentId, amount: 4_998 } });
    expect(await paymentRow(orderId)).toMatchObject({ status: 'REFUNDED', version: 3, refund_failure_reason: null });
    const history = await payments.sql('SELECT status, version FROM payment_status_changes WHERE payment_id = $1 ORDER BY version', [authorized.payload.paymentId]);
    expect(history).toEqual([{ status: 'AUTHORIZED', version: 1 }, { status: 'CAPTURED', version: 2 }, { status: 'REFUNDED', version: 3 }]);
    expect(await refundsAtProvider(orderId)).toMatchObject([{ refunded: true, amount: 4_998 }]);
  });

  it('records a refund the provider declines for tok_refund_fails as REFUND_FAILED, version 3, and replies PaymentRefundFailed: nothing is given back', async () => {
    const { orderId, paymentId } = await capturedPayment('tok_refund_fails');
    const command = sagaCommand('RefundPayment', { orderId }, 3);
    await payments.publish(command);
    expect(await nthReply(orderId, 3)).toMatchObject({
      type: 'PaymentRefundFailed',
      aggregateType: 'Payment',
      aggregateVersion: 3,
      payload: { orderId, paymentId, reason: 'card_closed' },
      causationId: command.eventId,
    });
    // Still captured in money terms: no refund instant, the capture's kept.
    expect(await paymentRow(orderId)).toMatchObject({ status: 'REFUND_FAILED', version: 3, refund_failure_reason: 'card_closed', refunded_at: null });
    expect((await paymentRow(orderId))!.captured_at).not.toBeNull();
    const history = await payments.sql('SELECT status, version FROM payment_status_changes WHERE payment_id = $1 ORDER BY version', [paymentId]);
    expect(history).toEqual([{ status: 'AUTHORIZED', version: 1 }, { status: 'CAPTURED', version: 2 }, { status: 'REFUND_FAILED', version: 3 }]);
    expect(await refundsAtProvider(orderId)).toEqual([{ reference: expect.any(String), refunded: false, reason: 'card_closed' }]);
  });

  it('refunds once at the provider when the same RefundPayment is delivered twice, and answers another one with the same PaymentRefunded', async () => {
    const { orderId } = await capturedPayment('tok_visa');
    const command = sagaCommand('RefundPayment', { orderId }, 3);
    await payments.publish(command);
    await payments.publish(command); // the same command again, as the saga re-sends it after a crash
    await payments.publish(sagaCommand('RefundPayment', { orderId }, 4, { eventId: randomUUID() }));
    const again = await nthReply(orderId, 4);
    expect(again).toMatchObject({ type: 'PaymentRefunded', aggregateVersion: 3, payload: repliesTo(orderId)[2]!.payload });
    expect(typesOf(orderId)).toEqual([['PaymentAuthorized', 1], ['PaymentCaptured', 2], ['PaymentRefunded', 3], ['PaymentRefunded', 3]]);
    expect(payments.provider.refundsAsked.get(orderId)).toBe(1);
    expect(await refundsAtProvider(orderId)).toMatchObject([{ refunded: true }]);
  });

  it('answers a RefundPayment repeated after a declined refund with the same PaymentRefundFailed, without asking the provider again', async () => {
    const { orderId } = await capturedPayment('tok_refund_fails');
    await payments.publish(sagaCommand('RefundPayment', { orderId }, 3));
    const failed = await nthReply(orderId, 3);
    await payments.publish(sagaCommand('RefundPayment', { orderId }, 4, { eventId: randomUUID() }));
    const again = await nthReply(orderId, 4);
    expect(again.eventId).not.toBe(failed.eventId);
    expect(again).toMatchObject({ type: 'PaymentRefundFailed', aggregateVersion: 3, payload: failed.payload });
    // A capture asked again still has its answer; a void is refused (the money was taken).
    await payments.publish(sagaCommand('CapturePayment', { orderId }, 5, { eventId: randomUUID() }));
    await payments.publish(sagaCommand('VoidPayment', { orderId }, 6));
    await payments.publish(sagaCommand('RefundPayment', { orderId }, 7, { eventId: randomUUID() }));
    await nthReply(orderId, 6);
    expect(typesOf(orderId)).toEqual([
      ['PaymentAuthorized', 1], ['PaymentCaptured', 2], ['PaymentRefundFailed', 3], ['PaymentRefundFailed', 3], ['PaymentCaptured', 2], ['PaymentRefundFailed', 3],
    ]);
    expect(payments.provider.refundsAsked.get(orderId)).toBe(1);
    expect(await paymentRow(orderId)).toMatchObject({ status: 'REFUND_FAILED', version: 3, voided_at: null });
  });

  it("refunds once when the provider gave the money back but the refund's write failed: the redelivered command gets the provider's recorded answer", async () => {
    const { orderId, paymentId } = await capturedPayment('tok_visa');
    // The first write of this order's refund fails, as a lost connection or a full disk would:
    // a sequence, because it counts even in the transaction that the failure rolls back.
    await payments.sql('CREATE SEQUENCE refund_write_faults');
    await payments.sql(`
      CREATE FUNCTION fail_first_refund_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('refund_write_faults') = 1 THEN RAISE EXCEPTION 'injected: the refund''s write fails once'; END IF;
        RETURN NEW;
      END;
      $$`);
    await payments.sql(`
      CREATE TRIGGER fail_first_refund_write BEFORE UPDATE ON payments
      FOR EACH ROW WHEN (NEW.order_id = '${orderId}' AND NEW.status = 'REFUNDED') EXECUTE FUNCTION fail_first_refund_write()`);
    try {
      await payments.publish(sagaCommand('RefundPayment', { orderId }, 3));
      expect(await nthReply(orderId, 3)).toMatchObject({ type: 'PaymentRefunded', aggregateVersion: 3, payload: { orderId, paymentId, amount: 4_998 } });
      expect(await payments.sql(`SELECT last_value FROM refund_write_faults`)).toEqual([{ last_value: '2' }]);
    } finally {
      await payments.sql('DROP TRIGGER fail_first_refund_write ON payments');
      await payments.sql('DROP FUNCTION fail_first_refund_write');
      await payments.sql('DROP SEQUENCE refund_write_faults');
    }
    // Refunded once, although asked twice (the bus delivered the command again).
    expect(await refundsAtProvider(orderId)).toMatchObject([{ refunded: true, amount: 4_998 }]);
    expect(payments.provider.refundsAsked.get(orderId)).toBe(2);
    expect(typesOf(orderId)).toEqual([['PaymentAuthorized', 1], ['PaymentCaptured', 2], ['PaymentRefunded', 3]]);
    expect(await paymentRow(orderId)).toMatchObject({ status: 'REFUNDED', version: 3 });
  });

  it('retries a refund whose provider call failed (the provider threw) through the bus, and refunds once', async () => {
    const { orderId } = await capturedPayment('tok_visa');
    payments.provider.failNextRefund.add(orderId);
    await payments.publish(sagaCommand('RefundPayment', { orderId }, 3));
    expect(await nthReply(orderId, 3)).toMatchObject({ type: 'PaymentRefunded', aggregateVersion: 3 });
    expect(await refundsAtProvider(orderId)).toMatchObject([{ refunded: true }]);
    expect(payments.provider.refundsAsked.get(orderId)).toBe(2);
    expect(await paymentRow(orderId)).toMatchObject({ status: 'REFUNDED', version: 3 });
  });

  it('voids an authorized payment, and then neither captures nor refunds it', async () => {
    const orderId = randomUUID();
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_visa'), 1));
    await payments.publish(sagaCommand('VoidPayment', { orderId }, 2));
    expect(await nthReply(orderId, 2)).toMatchObject({ type: 'PaymentVoided', aggregateVersion: 2 });
    await payments.publish(sagaCommand('CapturePayment', { orderId }, 3));
    await payments.publish(sagaCommand('RefundPayment', { orderId }, 4));
    // Another void is answered again: once it is, the capture and refund before it were handled.
    await payments.publish(sagaCommand('VoidPayment', { orderId }, 5, { eventId: randomUUID() }));
    await nthReply(orderId, 3);
    expect(typesOf(orderId)).toEqual([['PaymentAuthorized', 1], ['PaymentVoided', 2], ['PaymentVoided', 2]]);
    expect(await paymentRow(orderId)).toMatchObject({ status: 'VOIDED', captured_at: null, refunded_at: null });
  });

  it('replies nothing to a void of no payment or of a declined one', async () => {
    const orderId = randomUUID();
    await payments.publish(sagaCommand('VoidPayment', { orderId }, 1));
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_declined'), 2));
    await nthReply(orderId, 1);
    await payments.publish(sagaCommand('VoidPayment', { orderId }, 3, { eventId: randomUUID() }));
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_declined'), 4, { eventId: randomUUID() }));
    await nthReply(orderId, 2);
    expect(typesOf(orderId)).toEqual([['PaymentDeclined', 1], ['PaymentDeclined', 1]]);
    expect(await paymentRow(orderId)).toMatchObject({ status: 'DECLINED', voided_at: null });
  });

  it('refuses to refund a payment not captured and to void a captured one', async () => {
    const orderId = randomUUID();
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_visa'), 1));
    await payments.publish(sagaCommand('RefundPayment', { orderId }, 2));
    await payments.publish(sagaCommand('CapturePayment', { orderId }, 3));
    await payments.publish(sagaCommand('VoidPayment', { orderId }, 4));
    await payments.publish(sagaCommand('CapturePayment', { orderId }, 5, { eventId: randomUUID() }));
    await nthReply(orderId, 3);
    expect(typesOf(orderId)).toEqual([['PaymentAuthorized', 1], ['PaymentCaptured', 2], ['PaymentCaptured', 2]]);
    expect(await paymentRow(orderId)).toMatchObject({ status: 'CAPTURED', voided_at: null, refunded_at: null });
  });

  it(`answers tok_slow only after the provider's delay, holding no database transaction open meanwhile`, async () => {
    const orderId = randomUUID();
    const sentAt = Date.now();
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_slow'), 1));
    // A transaction held across the provider call would be seen "idle in transaction" twice.
    const held: string[][] = [];
    for (const wait of [600, 500]) {
      await new Promise((resolve) => setTimeout(resolve, wait));
      const rows = await payments.sql<{ id: string }>(
        `SELECT pid || ':' || xact_start AS id FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`,
      );
      held.push(rows.map((row) => row.id));
    }
    expect(held[0]!.filter((id) => held[1]!.includes(id))).toEqual([]);
    const reply = await nthReply(orderId, 1);
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(slowTokenDelayMs);
    expect(reply).toMatchObject({ type: 'PaymentAuthorized', aggregateVersion: 1 });
  });

  it('keeps no card data: no payment token and no card number anywhere in its database', async () => {
    const orderId = randomUUID();
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_visa'), 1));
    await nthReply(orderId, 1);
    const tables = await payments.sql<{ name: string }>("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'");
    let everything = '';
    for (const { name } of tables) {
      const rows = await payments.sql<{ text: string }>(`SELECT t::text AS text FROM "${name}" t`);
      everything += rows.map((row) => row.text).join('\n');
    }
    expect(everything).toContain(orderId);
    expect(everything).not.toMatch(/tok_/);
    expect(everything).not.toMatch(/\b\d{13,19}\b/);
  });
});

/**
 * With the defaults, tok_slow (45 s) outlasts the bus's redelivery time (10 s): here at a smaller
 * scale, 1 s and 6 s (pg-boss's maintenance would notice an expiry up to about 2 s late).
 */
describe('a tok_slow authorization that outlasts the redelivery time of the pg-boss bus', () => {
  const redeliveryAfterMs = 1_000;
  const slowMs = 6_000;
  const serverUrl = inject('testServerUrl');
  const databaseUrl = withDatabase(serverUrl, freshDatabaseName(inject('runPrefix'), 'payments'));
  const busDatabaseUrl = withDatabase(serverUrl, freshDatabaseName(inject('runPrefix'), 'bus'));
  let bus: EventBus | undefined;
  let subgraph: RunningContextSubgraph | undefined;
  const pools = new Map<string, pg.Pool>();
  const query = async (url: string, text: string, values: unknown[]) => {
    const pool = pools.get(url) ?? new pg.Pool({ connectionString: url, max: 1 });
    pools.set(url, pool);
    return (await pool.query(text, values)).rows;
  };

  beforeAll(async () => {
    await ensureDatabase(databaseUrl);
    await applyMigrations({ databaseUrl, migrationsDir: migrationsDirOf('payments') });
    await ensureDatabase(busDatabaseUrl);
    bus = await createPostgresQueueBus({ databaseUrl: busDatabaseUrl, handlerTimeoutMs: redeliveryAfterMs, pollingIntervalMs: 100, poolSize: 2 });
    subgraph = await startPaymentsSubgraph({
      databaseUrl,
      eventBus: bus,
      relay: { pollIntervalMs: 200 },
      port: 0,
      host: '127.0.0.1',
      gatewayPublicKey: (await generateTestKeys()).gatewayIdentity.publicKey,
      production: false,
      simulatedProvider: { slowTokenDelayMs: slowMs },
    });
  });
  afterAll(async () => {
    await subgraph?.stop();
    await bus?.close();
    for (const pool of pools.values()) await pool.end();
    await dropDatabase(databaseUrl);
    await dropDatabase(busDatabaseUrl);
  });

  it('is not delivered again while the provider answers, and other orders are not held up behind it: one authorization, one reply, no dead letter', async () => {
    const orderId = randomUUID();
    const command = sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_slow'), 1);
    const replies = (id: string) => query(databaseUrl, `SELECT envelope->>'type' AS type FROM outbox_events WHERE envelope->>'aggregateId' = $1 ORDER BY id`, [id]);
    const sentAt = Date.now();
    await bus!.publish(command);
    // Published after the slow one, answered long before it.
    const quickOrderId = randomUUID();
    await bus!.publish(sagaCommand('AuthorizePayment', authorizeCommand(quickOrderId, 'tok_visa'), 1));
    await waitFor('the quick authorization', async () => ((await replies(quickOrderId)).length > 0 ? true : undefined), 5_000);
    expect(Date.now() - sentAt).toBeLessThan(slowMs);
    expect(await replies(orderId)).toEqual([]);

    await waitFor('the slow authorization handled', async () => {
      const lag = (await bus!.status()).find((consumer) => consumer.consumer === 'payments')?.lag;
      return (await replies(orderId)).length > 0 && lag === 0 ? true : undefined;
    }, 20_000);

    // One delivery, kept alive for 6 s although it would expire after 1 s...
    expect(await query(busDatabaseUrl, 'SELECT state::text, retry_count FROM pgboss.job WHERE id = $1', [command.eventId])).toEqual([{ state: 'completed', retry_count: 0 }]);
    // ...one question to the provider, one answer.
    expect(await query(databaseUrl, 'SELECT operation FROM provider_operations WHERE idempotency_key = $1', [orderId])).toEqual([{ operation: 'authorize' }]);
    expect(await replies(orderId)).toEqual([{ type: 'PaymentAuthorized' }]);
    expect(await query(databaseUrl, 'SELECT status::text, version FROM payments WHERE order_id = $1', [orderId])).toEqual([{ status: 'AUTHORIZED', version: 1 }]);
    expect(await bus!.deadLetters()).toEqual([]);
  }, 30_000);
});

describe('payments read through _entities, and its simulated provider', () => {
  let payments: ContextHarness;
  let db: PaymentsDatabase;
  const customer: Identity = { customerId: randomUUID(), roles: ['customer'] };
  const stranger: Identity = { customerId: randomUUID(), roles: ['customer'] };
  const admin: Identity = { customerId: randomUUID(), roles: ['customer', 'admin'] };
  const paidOrders: string[] = [randomUUID(), randomUUID(), randomUUID()];

  beforeAll(async () => {
    payments = await startPayments('postgres');
    db = connectPaymentsDatabase(payments.databaseUrl).db;
    for (const orderId of paidOrders) {
      await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_visa', customer.customerId!), 1));
    }
    await payments.publish(sagaCommand('CapturePayment', { orderId: paidOrders[0]! }, 2));
    await payments.waitForEvent('the capture', (event) => event.type === 'PaymentCaptured');
    await payments.waitForEvent('every authorization', () => payments.observed.filter((e) => e.type === 'PaymentAuthorized').length === paidOrders.length);
  });
  afterAll(async () => {
    await db?.$disconnect();
    await payments?.stop();
  });

  const selection = 'id payment { id status amount currency declineReason refundFailureReason authorizedAt capturedAt }';
  function fetchOrders(ids: string[], identity: Identity | null) {
    return payments.query({
      query: `query ($representations: [_Any!]!) { _entities(representations: $representations) { ... on Order { ${selection} } } }`,
      variables: { representations: ids.map((id) => ({ __typename: 'Order', id })) },
      identity,
    });
  }

  it("shows a payment to the order's customer and to admins", async () => {
    for (const identity of [customer, admin]) {
      const response = await fetchOrders([paidOrders[0]!], identity);
      expect(response.errors).toBeUndefined();
      const [order] = response.data!._entities;
      expect(order.payment).toMatchObject({ status: 'CAPTURED', amount: 4_998, currency: 'EUR', declineReason: null, refundFailureReason: null });
      expect(new Date(order.payment.authorizedAt).getTime()).toBeLessThanOrEqual(new Date(order.payment.capturedAt).getTime());
    }
  });

  it('answers payment: null and FORBIDDEN to other customers and to anonymous callers', async () => {
    for (const identity of [stranger, { customerId: null, roles: [] }] satisfies Identity[]) {
      const response = await fetchOrders([paidOrders[1]!], identity);
      expect(response.data!._entities).toEqual([{ id: paidOrders[1], payment: null }]);
      expect(errorCodes(response)).toEqual(['FORBIDDEN']);
      expect(response.errors![0]!.path).toEqual(['_entities', 0, 'payment']);
    }
  });

  it("answers 401 to a request that does not carry the gateway's signature", async () => {
    const response = await fetchOrders([paidOrders[1]!], null);
    expect(response.status).toBe(401);
    expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
  });

  for (const length of [1, 7, 40]) {
    it(`resolves ${length} order reference(s) with one SQL statement, unknown and malformed ids included`, async () => {
      const ids = Array.from({ length }, (_, i) => (i % 5 === 3 ? randomUUID() : i % 5 === 4 ? `not-a-uuid-${i}` : paidOrders[i % paidOrders.length]!));
      const before = payments.subgraph.statements.count;
      const response = await fetchOrders(ids, admin);
      expect(payments.subgraph.statements.count - before).toBe(1);
      expect(response.errors).toBeUndefined();
      expect(response.data!._entities.map((order: { payment: unknown }) => order.payment !== null)).toEqual(ids.map((id) => paidOrders.includes(id)));
    });
  }

  it('releases the hold of an authorization that arrives after a newer command of its order', async () => {
    const orderId = randomUUID();
    await payments.publish(sagaCommand('VoidPayment', { orderId }, 5));
    await payments.publish(sagaCommand('AuthorizePayment', authorizeCommand(orderId, 'tok_visa'), 3));
    const operations = async () => (await payments.sql<{ operation: string }>('SELECT operation FROM provider_operations WHERE idempotency_key = $1 ORDER BY created_at', [orderId])).map((row) => row.operation);
    const deadline = Date.now() + 10_000;
    while ((await operations()).length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await operations()).toEqual(['authorize', 'void']);
    expect(await payments.sql('SELECT * FROM payments WHERE order_id = $1', [orderId])).toEqual([]);
    expect(payments.observed.filter((event) => event.aggregateId === orderId)).toEqual([]);
  });

  it('gives the first answer again for a repeated idempotency key, without acting twice', async () => {
    const provider = new SimulatedPaymentProvider(db, { slowTokenDelayMs: 300 });
    const request = { idempotencyKey: randomUUID(), amount: 100, currency: 'EUR', paymentToken: 'tok_slow' };
    const first = await provider.authorize(request);
    const startedAt = Date.now();
    const second = await provider.authorize(request);
    expect(Date.now() - startedAt).toBeLessThan(300);
    expect(second).toEqual(first);
    await expect(provider.authorize({ ...request, amount: 200 })).rejects.toThrow(ProviderError);
  });

  it("by default answers tok_slow well after the order saga's default step deadline, so that the order times out", () => {
    // The deadline runs from when the saga sends AuthorizePayment, the delay from when payments
    // handles it: a margin keeps a late deadline sweep from letting the answer win.
    expect(new SimulatedPaymentProvider(db).slowTokenDelayMs).toBeGreaterThanOrEqual(defaultStepTimeoutMs + 10_000);
  });

  it('refuses, as a real provider would, to capture a voided hold and to void a captured one', async () => {
    const provider = new SimulatedPaymentProvider(db);
    const [voided, captured] = [randomUUID(), randomUUID()];
    const holds = [];
    for (const idempotencyKey of [voided, captured]) {
      const answer = await provider.authorize({ idempotencyKey, amount: 100, currency: 'EUR', paymentToken: 'tok_visa' });
      if (!answer.approved) throw new Error('tok_visa should be approved');
      holds.push(answer.reference);
    }
    await provider.void({ idempotencyKey: voided, reference: holds[0]! });
    await expect(provider.capture({ idempotencyKey: voided, reference: holds[0]!, amount: 100 })).rejects.toThrow(/voided/);
    await provider.capture({ idempotencyKey: captured, reference: holds[1]!, amount: 100 });
    await expect(provider.void({ idempotencyKey: captured, reference: holds[1]! })).rejects.toThrow(/captured/);
    await expect(provider.refund({ idempotencyKey: voided, reference: holds[0]!, amount: 100 })).rejects.toThrow(/Nothing was captured/);
  });

  it('declines, for tok_refund_fails, the refund of what it captured (card_closed), and declines it again for the same key', async () => {
    const provider = new SimulatedPaymentProvider(db);
    const idempotencyKey = randomUUID();
    const authorization = await provider.authorize({ idempotencyKey, amount: 100, currency: 'EUR', paymentToken: 'tok_refund_fails' });
    if (!authorization.approved) throw new Error('tok_refund_fails should be approved');
    // The card's fate is the provider's business: its answer to the authorization is tok_visa's.
    expect(Object.keys(authorization).sort()).toEqual(Object.keys(await provider.authorize({ idempotencyKey: randomUUID(), amount: 100, currency: 'EUR', paymentToken: 'tok_visa' })).sort());
    await provider.capture({ idempotencyKey, reference: authorization.reference, amount: 100 });
    const refund = { idempotencyKey, reference: authorization.reference, amount: 100 };
    expect(await provider.refund(refund)).toEqual({ refunded: false, reason: 'card_closed' });
    expect(await provider.refund(refund)).toEqual({ refunded: false, reason: 'card_closed' });
    await expect(provider.refund({ ...refund, amount: 50 })).rejects.toThrow(ProviderError);
  });

  it('refunds what it captured of tok_visa once per key, answering the same again', async () => {
    const provider = new SimulatedPaymentProvider(db);
    const idempotencyKey = randomUUID();
    const authorization = await provider.authorize({ idempotencyKey, amount: 100, currency: 'EUR', paymentToken: 'tok_visa' });
    if (!authorization.approved) throw new Error('tok_visa should be approved');
    await provider.capture({ idempotencyKey, reference: authorization.reference, amount: 100 });
    const refund = { idempotencyKey, reference: authorization.reference, amount: 100 };
    expect(await provider.refund(refund)).toEqual({ refunded: true });
    expect(await provider.refund(refund)).toEqual({ refunded: true });
    expect(await payments.sql(`SELECT result FROM provider_operations WHERE operation = 'refund' AND idempotency_key = $1`, [idempotencyKey])).toHaveLength(1);
  });
});

describe('the payment rules', () => {
  const authorized: Payment = {
    id: randomUUID(), orderId: randomUUID(), customerId: randomUUID(), amount: 500, currency: 'EUR', status: 'AUTHORIZED',
    providerReference: 'sim_auth_1', cardBrand: 'visa', declineReason: null, refundFailureReason: null, version: 1,
    authorizedAt: new Date(), capturedAt: null, voidedAt: null, refundedAt: null,
  };

  it('asks to try again when the payment changed while the provider was being asked', () => {
    // The provider was asked to authorize (no payment then); by now the payment is authorized and
    // a capture needs the provider's capture, which nobody asked for.
    expect(() => decide({ type: 'CapturePayment', orderId: authorized.orderId }, authorized, { operation: 'authorize', answer: { approved: false, reason: 'x' } }, new Date())).toThrow(PaymentChangedMeanwhile);
  });

  it('captures only an authorized payment', () => {
    const at = new Date();
    expect(decide({ type: 'CapturePayment', orderId: authorized.orderId }, authorized, { operation: 'capture' }, at)).toMatchObject({
      kind: 'changed',
      payment: { status: 'CAPTURED', version: 2, capturedAt: at },
      reply: { type: 'PaymentCaptured', version: 2 },
    });
    for (const status of ['DECLINED', 'VOIDED'] as const) {
      expect(decide({ type: 'CapturePayment', orderId: authorized.orderId }, { ...authorized, status }, null, at)).toMatchObject({ kind: 'ignored', expected: false });
    }
  });

  describe('When captured', () => {
    const captured: Payment = { ...authorized, status: 'CAPTURED', version: 2, capturedAt: new Date() };
    const refund = { type: 'RefundPayment', orderId: captured.orderId } as const;

    it('refunds when the provider gives the money back: REFUNDED and PaymentRefunded, version 3', () => {
      const at = new Date();
      expect(decide(refund, captured, { operation: 'refund', answer: { refunded: true } }, at)).toMatchObject({
        kind: 'changed',
        payment: { status: 'REFUNDED', version: 3, refundedAt: at, refundFailureReason: null },
        reply: { type: 'PaymentRefunded', version: 3, payload: { orderId: captured.orderId, paymentId: captured.id, amount: 500 } },
      });
    });

    it('records a declined refund as REFUND_FAILED with its reason, version 3 (the version a refund would have had), and replies PaymentRefundFailed', () => {
      expect(decide(refund, captured, { operation: 'refund', answer: { refunded: false, reason: 'card_closed' } }, new Date())).toMatchObject({
        kind: 'changed',
        payment: { status: 'REFUND_FAILED', version: 3, refundedAt: null, refundFailureReason: 'card_closed' },
        reply: { type: 'PaymentRefundFailed', version: 3, payload: { orderId: captured.orderId, paymentId: captured.id, reason: 'card_closed' } },
      });
    });
  });

  describe('When the refund failed', () => {
    const failed: Payment = { ...authorized, status: 'REFUND_FAILED', version: 3, capturedAt: new Date(), refundFailureReason: 'card_closed' };

    it('answers another RefundPayment with the same PaymentRefundFailed, without asking the provider', () => {
      const refund = { type: 'RefundPayment', orderId: failed.orderId } as const;
      expect(providerStepFor(refund, failed)).toBeNull();
      expect(decide(refund, failed, null, new Date())).toEqual({
        kind: 'repeated',
        reply: { type: 'PaymentRefundFailed', version: 3, payload: { orderId: failed.orderId, paymentId: failed.id, reason: 'card_closed' } },
      });
    });

    it('answers another CapturePayment with its PaymentCaptured, and refuses to void what was taken', () => {
      expect(decide({ type: 'CapturePayment', orderId: failed.orderId }, failed, null, new Date())).toMatchObject({ kind: 'repeated', reply: { type: 'PaymentCaptured', version: 2 } });
      expect(providerStepFor({ type: 'VoidPayment', orderId: failed.orderId }, failed)).toBeNull();
      expect(decide({ type: 'VoidPayment', orderId: failed.orderId }, failed, null, new Date())).toMatchObject({ kind: 'ignored', expected: false });
    });
  });
});
