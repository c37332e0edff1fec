/**
 * Runs order sagas: persists each saga's state in `order_sagas`, and in the SAME transaction
 * appends the commands it decided to the outbox and applies its order transition. A crash at any
 * point leaves either all of a step or none of it; after a restart the consumer and the deadline
 * sweeper (deadline-sweeper.ts, which decides *when* a deadline may be judged) pick every saga in
 * flight up where it stood.
 */
import { randomUUID } from 'node:crypto';
import client from 'prom-client';
import { commandId, type SagaCommandType } from '../../../platform/events/contracts/order-saga.ts';
import { createEnvelope, type Causation, type EventEnvelope } from '../../../platform/events/envelope.ts';
import { appendToOutbox, type OutboxTransaction } from '../../../platform/events/outbox.ts';
import { deterministicUuid } from '../../../platform/ids.ts';
import { createLogger } from '../../../platform/logging/logger.ts';
import type { OrderCommand, OrderState } from '../domain/order.ts';
import { commandPayload, isFinished, react, startSaga, type SagaDecision, type SagaMessage, type SagaState } from './order-saga.ts';

export interface SagaTransaction extends OutboxTransaction {
  $queryRaw<T = unknown>(query: TemplateStringsArray, ...values: unknown[]): PromiseLike<T>;
}

interface SagaDatabase<Tx extends SagaTransaction> {
  $transaction<R>(fn: (tx: Tx) => Promise<R>, options?: { timeout?: number }): Promise<R>;
}

/**
 * The default deadline of a waiting saga step (SAGA_STEP_TIMEOUT_MS), in working time: time the
 * platform itself was unavailable does not count (deadline-sweeper.ts). Three times the bus's
 * default redelivery time (EVENT_REDELIVERY_AFTER_MS, 10 s; pg-boss notices an expired delivery
 * within 1.5 times that), so a reply whose handler died is delivered again well before it; and
 * short enough that a customer whose payment provider hangs hears of it within half a minute.
 */
export const defaultStepTimeoutMs = 30_000;

/** What the saga needs of the order store: apply a command to the order inside a transaction. */
export interface OrderTransitions<Tx> {
  executeInTransaction(tx: Tx, orderId: string, command: OrderCommand, causation: Causation): Promise<{ order: OrderState; events: readonly unknown[] }>;
}

export interface SagaRunnerOptions {
  /**
   * Deadline of each waiting step (stock, payment, shipment), counted in time the platform was
   * working. Keep it well above the bus's redelivery time (EVENT_REDELIVERY_AFTER_MS, 10 s by
   * default): a reply whose handler died with its process must be redelivered before the step
   * times out. @default defaultStepTimeoutMs (30 s)
   */
  stepTimeoutMs?: number;
  /** Where the saga's metrics go (steps by outcome, time in each step). @default none */
  registry?: client.Registry;
}

interface SagaRow {
  order_id: string;
  data: SagaState & { correlationId: string };
  version: number;
  /** When the saga last moved: the time spent in its step so far. */
  updated_at: Date;
}

const sagaReplies: ReadonlySet<string> = new Set([
  'StockReserved', 'StockReservationRejected', 'StockReleased', 'StockCommitted',
  'ReturnedStockReceived', 'StockRestocked', 'ReturnWrittenOff',
  'PaymentAuthorized', 'PaymentDeclined', 'PaymentCaptured', 'PaymentVoided', 'PaymentRefunded', 'PaymentRefundFailed',
  'ShipmentCreated', 'ShipmentCancelled', 'ShipmentDispatched', 'ShipmentInTransit', 'ShipmentDelivered',
]);

export class OrderSagaRunner<Tx extends SagaTransaction> {
  private readonly log = createLogger('orders.saga');
  /** Each waiting step's deadline, in ms of a working platform. */
  readonly stepTimeoutMs: number;

  constructor(
    private readonly db: SagaDatabase<Tx>,
    private readonly orders: OrderTransitions<Tx>,
    options: SagaRunnerOptions = {},
  ) {
    this.stepTimeoutMs = options.stepTimeoutMs ?? defaultStepTimeoutMs;
    if (options.registry) {
      const registers = [options.registry];
      this.steps = new client.Histogram({
        name: 'order_saga_step_duration_seconds',
        help: 'Time an order saga spent in a step, by step and the step it moved to (its outcome).',
        labelNames: ['step', 'outcome'] as const,
        buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3_600, 86_400],
        registers,
      });
    }
  }

  /** Each step left, by step and outcome, with the time spent in it (when metrics are on). */
  private readonly steps: client.Histogram<'step' | 'outcome'> | undefined;

  /** Starts the saga of a just-placed order, inside the transaction that placed it. */
  async start(tx: Tx, initial: Omit<SagaState, 'step'>, causation: Causation): Promise<void> {
    await this.apply(tx, startSaga(initial), undefined, causation);
  }

  /** Moves the saga of the order a reply is about; a reply for no saga is ignored. */
  async onReply(tx: Tx, event: EventEnvelope): Promise<void> {
    if (!sagaReplies.has(event.type)) return;
    const orderId = String((event.payload as { orderId?: unknown }).orderId ?? event.aggregateId);
    const message = { type: event.type, payload: event.payload } as SagaMessage;
    await this.advance(tx, orderId, message, { correlationId: event.correlationId, causationId: event.eventId, traceparent: event.traceparent });
  }

  /**
   * The customer (or an admin) asks to cancel: the order records the request (CANCELLING; its
   * rules answer CANCELLATION_REFUSED or CONFLICT when it cannot be cancelled) and the saga
   * resolves it, in one transaction: at once when no shipment was asked for, else when shipping
   * answers CancelShipment. Returns the order as the transaction left it.
   */
  async requestCancellation(orderId: string, causation: Causation): Promise<OrderState> {
    return this.db.$transaction(async (tx) => {
      const row = await this.lock(tx, orderId);
      const requested = await this.orders.executeInTransaction(tx, orderId, { type: 'RequestCancellation', at: new Date().toISOString() }, causation);
      if (requested.events.length === 0) return requested.order; // asked again while CANCELLING
      if (!row) {
        // An order without a saga (none should exist) is cancelled by its own rules alone.
        return (await this.orders.executeInTransaction(tx, orderId, { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED', at: new Date().toISOString() }, causation)).order;
      }
      return (await this.apply(tx, react(row.data, { type: 'CancellationRequested' }), row, causation)) ?? requested.order;
    });
  }

  /**
   * An admin records that the returned parcel arrived: the order's rules check it was asked for
   * (CONFLICT otherwise) and the saga holds the units in stock and refunds the payment.
   */
  async receiveReturn(orderId: string, causation: Causation): Promise<OrderState> {
    return this.db.$transaction(async (tx) => {
      const row = await this.lock(tx, orderId);
      if (!row) return (await this.orders.executeInTransaction(tx, orderId, { type: 'ReceiveReturn', at: new Date().toISOString() }, causation)).order;
      const decision = react(row.data, { type: 'ReturnReceived' });
      // Received already (a retry), or a saga that cannot take a return: the order's rules answer.
      if (decision.orderTransition?.type !== 'ReceiveReturn') return (await this.orders.executeInTransaction(tx, orderId, { type: 'ReceiveReturn', at: new Date().toISOString() }, causation)).order;
      return (await this.apply(tx, decision, row, causation)) ?? null;
    });
  }

  /**
   * Times out overdue sagas, up to 20 (several sweepers on replicas share the work: SKIP LOCKED).
   * With `deadlineBefore`, only those whose deadline came before it: the sweeper passes the
   * publication time of the oldest reply still queued, so a reply that beat its deadline is
   * applied before that deadline is judged. Returns how many were timed out.
   */
  async sweepOnce(options: { deadlineBefore?: Date } = {}): Promise<number> {
    const before = options.deadlineBefore ?? null;
    return this.db.$transaction(async (tx) => {
      const overdue = await tx.$queryRaw<SagaRow[]>`
        SELECT order_id, data, version, updated_at FROM order_sagas
        WHERE status = 'RUNNING' AND deadline_at <= now() AND (${before}::timestamptz IS NULL OR deadline_at < ${before}::timestamptz)
        ORDER BY deadline_at LIMIT 20 FOR UPDATE SKIP LOCKED`;
      for (const row of overdue) {
        this.log.info('saga step missed its deadline', { orderId: row.order_id, step: row.data.step });
        await this.apply(tx, react(row.data, { type: 'DeadlinePassed' }), row, { correlationId: row.data.correlationId, causationId: randomUUID() });
      }
      return overdue.length;
    });
  }

  private async lock(tx: Tx, orderId: string): Promise<SagaRow | undefined> {
    const [row] = await tx.$queryRaw<SagaRow[]>`SELECT order_id, data, version, updated_at FROM order_sagas WHERE order_id = ${orderId}::uuid FOR UPDATE`;
    return row;
  }

  private async advance(tx: Tx, orderId: string, message: SagaMessage, causation: Causation): Promise<boolean> {
    const row = await this.lock(tx, orderId);
    if (!row) return false;
    await this.apply(tx, react(row.data, message), row, causation);
    return true;
  }

  /** Persists a decision: the saga's state, its commands, the order's transition. Returns the order when it moved. */
  private async apply(tx: Tx, decision: SagaDecision, previous: SagaRow | undefined, causation: Causation): Promise<OrderState | undefined> {
    const { state } = decision;
    const insert = previous === undefined;
    const version = (previous?.version ?? 0) + 1;
    if (previous && previous.data.step !== state.step) {
      this.steps?.observe({ step: previous.data.step, outcome: state.step }, Math.max(0, (Date.now() - new Date(previous.updated_at).getTime()) / 1000));
    }
    const data = JSON.stringify({ ...state, correlationId: causation.correlationId });
    const status = isFinished(state.step) ? 'DONE' : 'RUNNING';
    const deadline = decision.awaitsDeadline ? new Date(Date.now() + this.stepTimeoutMs) : null;
    if (insert) {
      await tx.$executeRaw`
        INSERT INTO order_sagas (order_id, status, step, data, deadline_at, updated_at, version)
        VALUES (${state.orderId}::uuid, ${status}, ${state.step}, ${data}::jsonb, ${deadline}, now(), ${version})`;
    } else {
      await tx.$executeRaw`
        UPDATE order_sagas SET status = ${status}, step = ${state.step}, data = ${data}::jsonb, deadline_at = ${deadline}, updated_at = now(), version = ${version}
        WHERE order_id = ${state.orderId}::uuid`;
    }
    const commands = decision.commands.map((command) => this.commandEnvelope(state, command.type, version, causation, command.late ?? false));
    await appendToOutbox(tx, commands);
    if (!decision.orderTransition) return undefined;
    return (await this.orders.executeInTransaction(tx, state.orderId, { ...decision.orderTransition, at: new Date().toISOString() } as OrderCommand, causation)).order;
  }

  private commandEnvelope(state: SagaState, type: SagaCommandType, version: number, causation: Causation, late: boolean): EventEnvelope {
    const envelope = createEnvelope('orders', { type, aggregateType: 'Order', aggregateId: state.orderId, aggregateVersion: version, payload: commandPayload(state, type) }, causation);
    // The same command is the same message however often it is sent: downstream inboxes drop repeats.
    envelope.eventId = late ? deterministicUuid('order-saga-command', `${state.orderId}:${type}:late`) : commandId(state.orderId, type);
    return envelope;
  }
}
