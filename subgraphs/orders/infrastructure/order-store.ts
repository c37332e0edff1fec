/**
 * The Order event store: one append-only stream per order in `order_events`, with optimistic
 * concurrency (UNIQUE (order_id, version)), periodic snapshots, and the public events written to
 * the outbox in the same transaction as the stream.
 *
 * Commands run as load → decide → append. Two transactions that decide on the same version
 * cannot both append: the second one's insert waits for the first, then finds the version taken
 * and throws ConcurrencyError; `execute` runs the whole transaction again on the fresh state.
 */
import { randomUUID } from 'node:crypto';
import { DomainError } from '../../../platform/errors/domain-error.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import { appendToOutbox } from '../../../platform/events/outbox.ts';
import { decide, fold, type OrderCommand, type OrderEvent, type OrderState } from '../domain/order.ts';
import { orderEnvelope, publicOrderEventTypes } from '../domain/order-events.ts';
import type { OrdersDatabase, OrdersTransaction } from './database.ts';

export type { OrdersTransaction } from './database.ts';

/** An event as stored in an order's stream. */
export type StoredOrderEvent = OrderEvent & {
  eventId: string;
  orderId: string;
  /** Its version in the order's stream: 1 for OrderPlaced. */
  version: number;
};

export interface LoadedOrder {
  /** Null when the order has no events (it does not exist). */
  order: OrderState;
  /** The stream's version: 0 for an order that does not exist. */
  version: number;
}

export interface OrderChange extends LoadedOrder {
  /** What the command appended; empty when it decided nothing. */
  events: StoredOrderEvent[];
}

/**
 * A command, or a function of the current state that returns one (or null: nothing to do).
 * A function is called again with the fresh state when the transaction is retried.
 */
export type OrderCommandOrDecision = OrderCommand | ((state: OrderState) => OrderCommand | null);

/** Runs inside `execute`'s transaction after the command's events were appended (the saga's hook). */
export type AlsoInTransaction = (tx: OrdersTransaction, change: OrderChange) => Promise<void>;

/**
 * Another transaction appended to the order after this one loaded it. The transaction must be
 * rolled back (some of its events may be in); `execute` does, and retries.
 */
export class ConcurrencyError extends Error {
  override readonly name = 'ConcurrencyError';
  readonly code = 'CONCURRENCY';
  constructor(
    readonly orderId: string,
    /** The version the command was decided on. */
    readonly expectedVersion: number,
  ) {
    super(`Order ${orderId} changed after version ${expectedVersion} was loaded`);
  }
}

/** Anything that can run the store's SQL: the client or one of its transactions. */
type Queryable = Pick<OrdersTransaction, '$queryRaw' | '$executeRaw'>;

export interface OrderStoreOptions {
  /** A snapshot is written each time a stream's version reaches a multiple of this. @default 20 */
  snapshotEvery?: number;
  /** Retries of `execute` after a ConcurrencyError before it answers CONFLICT. @default 3 */
  retries?: number;
  /** Longest an `execute` transaction may run (hook included). @default 10_000 */
  transactionTimeoutMs?: number;
}

interface StreamRow {
  kind: 'snapshot' | 'event';
  version: number;
  type: string | null;
  body: unknown;
}

export class OrderStore {
  readonly #snapshotEvery: number;
  readonly #retries: number;
  readonly #timeoutMs: number;

  constructor(
    private readonly db: OrdersDatabase,
    options: OrderStoreOptions = {},
  ) {
    this.#snapshotEvery = options.snapshotEvery ?? 20;
    this.#retries = options.retries ?? 3;
    this.#timeoutMs = options.transactionTimeoutMs ?? 10_000;
    if (!Number.isInteger(this.#snapshotEvery) || this.#snapshotEvery < 1) throw new Error('OrderStore snapshotEvery must be a positive integer');
  }

  /** The order's current state: its latest snapshot and the events after it, folded. */
  load(orderId: string, tx: Queryable = this.db): Promise<LoadedOrder> {
    return loadOrder(tx, orderId);
  }

  /** Every event of the order, in version order (for timelines and tests; `load` is cheaper). */
  async readStream(orderId: string): Promise<StoredOrderEvent[]> {
    return (await this.readStreams([orderId])).get(orderId) ?? [];
  }

  /** The streams of several orders in one statement. */
  async readStreams(orderIds: readonly string[]): Promise<Map<string, StoredOrderEvent[]>> {
    const rows = await this.db.$queryRaw<{ order_id: string; version: number; type: string; data: unknown; event_id: string }[]>`
      SELECT order_id::text, version, type, data, event_id::text FROM order_events
      WHERE order_id = ANY(${[...orderIds]}::uuid[]) ORDER BY order_id, version`;
    const streams = new Map<string, StoredOrderEvent[]>();
    for (const row of rows) {
      const stream = streams.get(row.order_id) ?? [];
      stream.push({ type: row.type, data: row.data, eventId: row.event_id, orderId: row.order_id, version: row.version } as StoredOrderEvent);
      streams.set(row.order_id, stream);
    }
    return streams;
  }

  /**
   * Runs a command inside the caller's transaction: loads the order, decides, appends the events
   * at the next versions (ConcurrencyError when another transaction got there first), writes the
   * public ones to the outbox and, every `snapshotEvery` versions, a snapshot.
   *
   * Call it before any other write of the transaction when you can: the outbox relay and the
   * projector read in transaction-id order, and a transaction's id is taken at its first write.
   */
  async executeInTransaction(tx: OrdersTransaction, orderId: string, command: OrderCommandOrDecision, causation: Causation): Promise<OrderChange> {
    const current = await loadOrder(tx, orderId);
    const decided = typeof command === 'function' ? command(current.order) : command;
    if (!decided) return { ...current, events: [] };
    const events = decide(decided, current.order).map(
      (event, i): StoredOrderEvent => ({ ...event, eventId: randomUUID(), orderId, version: current.version + 1 + i }) as StoredOrderEvent,
    );
    if (events.length === 0) return { ...current, events: [] };

    await this.#append(tx, orderId, current.version, events, causation);
    const order = fold(events, current.order);
    const version = current.version + events.length;
    await appendToOutbox(
      tx,
      events.filter((e) => publicOrderEventTypes.has(e.type)).map((e) => orderEnvelope({ eventId: e.eventId, orderId, version: e.version, event: e }, causation)),
    );
    if (Math.floor(version / this.#snapshotEvery) > Math.floor(current.version / this.#snapshotEvery)) {
      await this.#snapshot(tx, orderId, version, order);
    }
    return { order, version, events };
  }

  /**
   * Runs a command in a transaction of its own, then `alsoInTransaction` in the same
   * transaction. On ConcurrencyError (from the append or from the hook) everything is rolled
   * back and tried again on the fresh state, up to `retries` times, then CONFLICT.
   */
  async execute(orderId: string, command: OrderCommandOrDecision, causation: Causation, alsoInTransaction?: AlsoInTransaction): Promise<OrderChange> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.db.$transaction(
          async (tx) => {
            const change = await this.executeInTransaction(tx, orderId, command, causation);
            if (alsoInTransaction) await alsoInTransaction(tx, change);
            return change;
          },
          { timeout: this.#timeoutMs },
        );
      } catch (error) {
        if (!(error instanceof ConcurrencyError)) throw error;
        if (attempt >= this.#retries) throw new DomainError('CONFLICT', 'The order was changed by someone else at the same time: try again');
      }
    }
  }

  /**
   * One statement for the events; ON CONFLICT DO NOTHING rather than a unique violation, so a
   * lost race is counted (and reported) instead of aborting the caller's transaction.
   */
  async #append(tx: OrdersTransaction, orderId: string, expectedVersion: number, events: StoredOrderEvent[], causation: Causation): Promise<void> {
    const metadata = JSON.stringify({ correlationId: causation.correlationId, causationId: causation.causationId, traceparent: causation.traceparent ?? null });
    const inserted = await tx.$executeRaw`
      INSERT INTO order_events (order_id, version, type, data, event_id, metadata)
      SELECT ${orderId}::uuid, e.version, e.type, e.data, e.event_id, ${metadata}::jsonb
      FROM unnest(${events.map((e) => e.version)}::int[], ${events.map((e) => e.type)}::text[],
                  ${events.map((e) => JSON.stringify(e.data))}::jsonb[], ${events.map((e) => e.eventId)}::uuid[])
        WITH ORDINALITY AS e(version, type, data, event_id, position)
      ORDER BY e.position
      ON CONFLICT DO NOTHING`;
    if (inserted !== events.length) throw new ConcurrencyError(orderId, expectedVersion);
  }

  async #snapshot(tx: OrdersTransaction, orderId: string, version: number, order: OrderState): Promise<void> {
    await tx.$executeRaw`
      INSERT INTO order_snapshots (order_id, version, state) VALUES (${orderId}::uuid, ${version}, ${JSON.stringify(order)}::jsonb)
      ON CONFLICT (order_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state, taken_at = now()
      WHERE order_snapshots.version < EXCLUDED.version`;
  }
}

/** The snapshot and the events after it, in one statement. */
async function loadOrder(db: Queryable, orderId: string): Promise<LoadedOrder> {
  const rows = await db.$queryRaw<StreamRow[]>`
    WITH snapshot AS (SELECT version, state FROM order_snapshots WHERE order_id = ${orderId}::uuid)
    SELECT 'snapshot' AS kind, version, NULL AS type, state AS body FROM snapshot
    UNION ALL
    SELECT 'event', version, type, data FROM order_events
    WHERE order_id = ${orderId}::uuid AND version > COALESCE((SELECT version FROM snapshot), 0)
    ORDER BY version, kind DESC`;
  let order: OrderState = null;
  let version = 0;
  for (const row of rows) {
    order = row.kind === 'snapshot' ? (row.body as OrderState) : fold([{ type: row.type, data: row.body } as OrderEvent], order);
    version = row.version;
  }
  return { order, version };
}
