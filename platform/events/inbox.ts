/**
 * The inbox: how a consumer makes at-least-once delivery harmless. The event's inbox row, the
 * consumer's position on the event's aggregate and the effect itself are written in ONE
 * transaction of the consumer's own database, so an event is applied exactly once, whatever the
 * bus redelivers and wherever the consumer crashes. Every context has `inbox_events` and
 * `consumer_positions`.
 */
import type { EventEnvelope } from './envelope.ts';

/**
 * - `strict`: the consumer needs every event of an aggregate, in order (it subscribes to all its
 *   types): an event that skips a version is refused with OutOfOrderEvent until the missing one
 *   has been applied.
 * - `monotonic`: the consumer subscribes to only some of an aggregate's event types, so gaps
 *   are normal: any newer version is applied, older ones are stale.
 */
export type Ordering = 'strict' | 'monotonic';

/** `applied`: the effect ran. `duplicate`: handled before. `stale`: older than one applied. */
export type InboxOutcome = 'applied' | 'duplicate' | 'stale';

/**
 * Thrown (and the transaction rolled back, inbox row included) when, under strict ordering, an
 * event arrives before an earlier version of its aggregate. Thrown out of a bus handler it gets
 * the event redelivered later, and parked as a dead letter after `maxDeliveries`.
 */
export class OutOfOrderEvent extends Error {
  override readonly name = 'OutOfOrderEvent';
  readonly code = 'OUT_OF_ORDER_EVENT';
  constructor(
    readonly consumer: string,
    readonly event: Pick<EventEnvelope, 'eventId' | 'type' | 'aggregateType' | 'aggregateId' | 'aggregateVersion'>,
    /** The version last applied; the next one expected is this + 1. */
    readonly lastApplied: number,
  ) {
    super(
      `${consumer}: ${event.type} ${event.eventId} is version ${event.aggregateVersion} of ${event.aggregateType} ` +
        `${event.aggregateId}, but version ${lastApplied + 1} has not been applied yet; it will be retried`,
    );
  }
}

/** What the inbox needs of a Prisma interactive transaction (any context's client fits). */
export interface InboxTransaction {
  $executeRaw(query: TemplateStringsArray, ...values: unknown[]): PromiseLike<number>;
  $queryRaw<T = unknown>(query: TemplateStringsArray, ...values: unknown[]): PromiseLike<T>;
}

/** Any context's PrismaClient: its interactive `$transaction`. */
export interface InboxDatabase<Tx extends InboxTransaction> {
  $transaction<R>(fn: (tx: Tx) => Promise<R>, options?: { maxWait?: number; timeout?: number }): Promise<R>;
}

export interface HandleOnceOptions {
  ordering: Ordering;
  /** Longest the whole transaction (effect included) may run. @default 5_000 (Prisma's default) */
  timeoutMs?: number;
}

/**
 * Handles `event` for `consumer` at most once: records it in the inbox, checks the aggregate's
 * version against the last applied one, runs `effect(tx)` and moves the position, all in one
 * transaction. An effect that throws rolls everything back (the inbox row too), so the
 * redelivery tries again. Use the `tx` it is given for every write of the effect.
 *
 * @example
 * await bus.subscribe('inventory', { types: ['ProductCreated'] }, (event) =>
 *   handleOnce(db, 'inventory', event, (tx) => tx.stockItem.create({ data: { productId: event.aggregateId } }).then(() => {}),
 *     { ordering: 'monotonic' }).then(() => {}));
 */
export async function handleOnce<Tx extends InboxTransaction>(
  db: InboxDatabase<Tx>,
  consumer: string,
  event: EventEnvelope<unknown>,
  effect: (tx: Tx) => Promise<void>,
  options: HandleOnceOptions,
): Promise<InboxOutcome> {
  const version = event.aggregateVersion;
  if (!Number.isInteger(version) || version < 1) {
    throw new Error(`${event.type} ${event.eventId} has aggregateVersion ${version}; versions start at 1`);
  }
  return db.$transaction(
    async (tx) => {
      // A concurrent delivery of the same event waits here on the first one's uncommitted row,
      // then finds it: it can never run the effect too.
      const recorded = await tx.$executeRaw`
        INSERT INTO inbox_events (consumer, event_id) VALUES (${consumer}, ${event.eventId}::uuid)
        ON CONFLICT DO NOTHING`;
      if (recorded === 0) return 'duplicate';

      const lastApplied = await lockPosition(tx, consumer, event);
      // Stale events keep their inbox row: a redelivery is then a plain duplicate.
      if (version <= lastApplied) return 'stale';
      if (options.ordering === 'strict' && version > lastApplied + 1) throw new OutOfOrderEvent(consumer, event, lastApplied);

      await effect(tx);
      await tx.$executeRaw`
        UPDATE consumer_positions SET last_applied_version = ${version}, updated_at = now()
        WHERE consumer = ${consumer} AND aggregate_type = ${event.aggregateType} AND aggregate_id = ${event.aggregateId}`;
      return 'applied';
    },
    { timeout: options.timeoutMs ?? 5_000 },
  );
}

/**
 * The consumer's last applied version of the event's aggregate (0 for none yet), row-locked so
 * that two events of one aggregate are handled one after the other.
 */
async function lockPosition(tx: InboxTransaction, consumer: string, event: EventEnvelope<unknown>): Promise<number> {
  await tx.$executeRaw`
    INSERT INTO consumer_positions (consumer, aggregate_type, aggregate_id, last_applied_version)
    VALUES (${consumer}, ${event.aggregateType}, ${event.aggregateId}, 0)
    ON CONFLICT DO NOTHING`;
  const rows = await tx.$queryRaw<{ last: number }[]>`
    SELECT last_applied_version AS last FROM consumer_positions
    WHERE consumer = ${consumer} AND aggregate_type = ${event.aggregateType} AND aggregate_id = ${event.aggregateId}
    FOR UPDATE`;
  return rows[0]!.last;
}
