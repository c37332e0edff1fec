/**
 * Stock reserved for orders, in the inventory database: `stock_reservations` (one row per order
 * and product), `stock_reservation_orders` (per order: the outcome of its ReserveStock and the
 * version of its last reply) and `stock_return_replies` (per order: the reply to each of its
 * return commands). Each function runs inside the caller's transaction — the inbox's, so that
 * the command's inbox row, the stock change and the reply in the outbox commit together or not
 * at all — appends its reply to the outbox and returns it.
 *
 * Locks, always in this order, so that concurrent orders cannot deadlock:
 *   1. the order's `stock_reservation_orders` row (one command of an order at a time, whoever
 *      delivers it);
 *   2. the `stock_items` rows of its products, in product-id order (`lockStockItems`).
 * Admin adjustments lock a single stock item, which fits that order.
 */
import type {
  CommitStock,
  OrderLineQuantity,
  ReceiveReturnedStock,
  ReleaseStock,
  ReserveStock,
  RestockReturn,
  ReturnedStockReceived,
  ReturnWrittenOff,
  StockCommitted,
  StockReleased,
  StockReservationRejected,
  StockReserved,
  StockRestocked,
  WriteOffReturn,
} from '../../../platform/events/contracts/order-saga.ts';
import type { Causation, EventEnvelope } from '../../../platform/events/envelope.ts';
import { appendToOutbox, type OutboxTransaction } from '../../../platform/events/outbox.ts';
import { reservationReply, type ReservationReplies, type ReservationReplyType, type ReturnReplyType } from '../domain/reservation-replies.ts';
import { decideReservation, lineTransitions, mergeLines, stockableProductIds, type LineTransition, type ReservationDecision } from '../domain/stock-reservation.ts';

/** What these functions need of a Prisma interactive transaction (the inbox's `tx` fits). */
export interface ReservationTransaction extends OutboxTransaction {
  $queryRaw<T = unknown>(query: TemplateStringsArray, ...values: unknown[]): PromiseLike<T>;
}

/** The reply to a ReserveStock: `type` StockReserved or StockReservationRejected. */
export type ReservationOutcome = EventEnvelope<StockReserved | StockReservationRejected>;

interface OrderReservationRow {
  outcome_type: ReservationDecision['type'] | null;
  outcome_payload: StockReserved | StockReservationRejected | null;
  outcome_version: number | null;
  version: number;
}

/**
 * ReserveStock: every line or none, once per order. The stock items are locked in product-id
 * order and the decision is taken on what they hold; only then are units moved, by a
 * conditional UPDATE per line (`available >= quantity`), so stock never goes below zero and a
 * rejection changes no stock at all. An order that already has an outcome gets the same reply
 * again (same type, payload and version) and its stock is not touched. A product listed twice
 * is reserved once, for the sum.
 */
export async function reserveStock(tx: ReservationTransaction, command: ReserveStock, causation: Causation): Promise<ReservationOutcome> {
  const order = await lockOrderReservation(tx, command.orderId);
  if (order.outcome_type !== null) {
    return reply(tx, order.outcome_type, order.outcome_payload!, order.outcome_version!, causation);
  }
  const lines = mergeLines(command.lines);
  const available = await lockStockItems(tx, stockableProductIds(lines));
  const decision = decideReservation(lines, available);
  if (decision.type === 'StockReserved') await holdUnits(tx, command.orderId, decision.lines);
  const payload = { orderId: command.orderId, lines: decision.lines } as StockReserved | StockReservationRejected;
  const [{ version }] = await tx.$queryRaw<[{ version: number }]>`
    UPDATE stock_reservation_orders
    SET outcome_type = ${decision.type}, outcome_payload = ${JSON.stringify(payload)}::jsonb,
        outcome_version = version + 1, version = version + 1, updated_at = now()
    WHERE order_id = ${command.orderId}::uuid
    RETURNING version`;
  return reply(tx, decision.type, payload, version, causation);
}

/**
 * ReleaseStock: the order's RESERVED units become available again and its lines RELEASED.
 * Without reserved lines (none yet, already released, or committed) nothing changes and the
 * reply lists no lines, so that the saga can move on.
 */
export async function releaseStock(tx: ReservationTransaction, command: ReleaseStock, causation: Causation): Promise<EventEnvelope<StockReleased>> {
  await lockOrderReservation(tx, command.orderId);
  const lines = await moveLines(tx, command.orderId, lineTransitions.release);
  return reply(tx, 'StockReleased', { orderId: command.orderId, lines }, await nextReplyVersion(tx, command.orderId), causation);
}

/**
 * CommitStock (at dispatch): the order's RESERVED units leave the warehouse — `reserved` goes
 * down, `available` stays — and its lines become COMMITTED. Without reserved lines nothing
 * changes and the reply lists no lines.
 */
export async function commitStock(tx: ReservationTransaction, command: CommitStock, causation: Causation): Promise<EventEnvelope<StockCommitted>> {
  await lockOrderReservation(tx, command.orderId);
  const lines = await moveLines(tx, command.orderId, lineTransitions.commit);
  return reply(tx, 'StockCommitted', { orderId: command.orderId, lines }, await nextReplyVersion(tx, command.orderId), causation);
}

/**
 * ReceiveReturnedStock: the order's parcel is back in the warehouse. Its COMMITTED units come
 * back into stock but held — `reserved` goes up, `available` stays — and its lines become
 * RETURNED. Without committed lines (never dispatched, or already received) nothing changes and
 * the reply lists no lines, as a ReleaseStock of nothing does, so that the saga can move on.
 */
export async function receiveReturnedStock(tx: ReservationTransaction, command: ReceiveReturnedStock, causation: Causation): Promise<EventEnvelope<ReturnedStockReceived>> {
  return settleReturn(tx, command.orderId, 'ReturnedStockReceived', lineTransitions.receiveReturn, causation);
}

/**
 * RestockReturn (the return's refund went through): the order's RETURNED units go on sale —
 * `reserved` down, `available` up — and its lines become RESTOCKED. Without returned lines
 * nothing changes and the reply lists no lines.
 */
export async function restockReturn(tx: ReservationTransaction, command: RestockReturn, causation: Causation): Promise<EventEnvelope<StockRestocked>> {
  return settleReturn(tx, command.orderId, 'StockRestocked', lineTransitions.restock, causation);
}

/**
 * WriteOffReturn (the refund failed): the order's RETURNED units are written off — `reserved`
 * down, `available` unchanged — and its lines become WRITTEN_OFF. Without returned lines nothing
 * changes and the reply lists no lines.
 */
export async function writeOffReturn(tx: ReservationTransaction, command: WriteOffReturn, causation: Causation): Promise<EventEnvelope<ReturnWrittenOff>> {
  return settleReturn(tx, command.orderId, 'ReturnWrittenOff', lineTransitions.writeOff, causation);
}

/**
 * A return command, once per order: the first moves the lines and keeps its reply; the same
 * command again (sent under an id of its own, so neither the bus nor the inbox can tell it is a
 * repeat) is answered with that reply again, same lines and version, and moves nothing. A
 * repeated reply takes no new version, so the orders context, which applies replies in strict
 * order, sees it as stale rather than waiting for a version that was skipped.
 */
async function settleReturn<T extends ReturnReplyType>(
  tx: ReservationTransaction,
  orderId: string,
  type: T,
  transition: LineTransition,
  causation: Causation,
): Promise<EventEnvelope<ReservationReplies[T]>> {
  await lockOrderReservation(tx, orderId);
  const [sent] = await tx.$queryRaw<{ payload: ReservationReplies[T]; version: number }[]>`
    SELECT payload, version FROM stock_return_replies WHERE order_id = ${orderId}::uuid AND type = ${type}`;
  if (sent) return reply(tx, type, sent.payload, sent.version, causation);
  const lines = await moveLines(tx, orderId, transition);
  const payload = { orderId, lines } as ReservationReplies[T];
  const version = await nextReplyVersion(tx, orderId);
  await tx.$executeRaw`
    INSERT INTO stock_return_replies (order_id, type, payload, version)
    VALUES (${orderId}::uuid, ${type}, ${JSON.stringify(payload)}::jsonb, ${version})`;
  return reply(tx, type, payload, version, causation);
}

/**
 * Moves the order's lines in `transition.from` to `transition.to`, and their units as the
 * transition says, under the order's lock (the caller's) and the stock items' locks. Without such
 * lines nothing changes. Returns the lines moved, in product-id order.
 */
async function moveLines(tx: ReservationTransaction, orderId: string, transition: LineTransition): Promise<OrderLineQuantity[]> {
  const lines = await linesIn(tx, orderId, transition.from);
  if (lines.length === 0) return lines;
  await lockStockItems(tx, lines.map((line) => line.productId));
  const { ids, quantities } = columns(lines);
  await tx.$executeRaw`
    UPDATE stock_items AS s
    SET available = s.available + ${transition.available}::int * l.quantity,
        reserved = s.reserved + ${transition.reserved}::int * l.quantity,
        version = s.version + 1, updated_at = now()
    FROM unnest(${ids}::uuid[], ${quantities}::int[]) AS l(product_id, quantity)
    WHERE s.product_id = l.product_id`;
  await tx.$executeRaw`
    UPDATE stock_reservations SET status = ${transition.to}, updated_at = now()
    WHERE order_id = ${orderId}::uuid AND status = ${transition.from}`;
  return lines;
}

/** The order's row, created by its first command, locked until the transaction ends. */
async function lockOrderReservation(tx: ReservationTransaction, orderId: string): Promise<OrderReservationRow> {
  await tx.$executeRaw`INSERT INTO stock_reservation_orders (order_id) VALUES (${orderId}::uuid) ON CONFLICT DO NOTHING`;
  const [row] = await tx.$queryRaw<OrderReservationRow[]>`
    SELECT outcome_type, outcome_payload, outcome_version, version
    FROM stock_reservation_orders WHERE order_id = ${orderId}::uuid
    FOR UPDATE`;
  return row!;
}

/**
 * Locks the stock items of these products in product-id order (the Sort runs below the row
 * locking, so rows are locked in the order listed) and returns their available units.
 */
async function lockStockItems(tx: ReservationTransaction, productIds: readonly string[]): Promise<Map<string, number>> {
  if (productIds.length === 0) return new Map();
  const rows = await tx.$queryRaw<{ product_id: string; available: number }[]>`
    SELECT product_id::text AS product_id, available FROM stock_items
    WHERE product_id = ANY(${[...productIds]}::uuid[])
    ORDER BY product_id
    FOR UPDATE`;
  return new Map(rows.map((row) => [row.product_id, row.available]));
}

/**
 * Moves the lines' units from available to reserved and records the order's lines. Called with
 * the stock items locked and the decision taken on them, so every conditional UPDATE matches;
 * one that does not throws, and the whole transaction (inbox row included) rolls back and is
 * retried, rather than reserving part of an order.
 */
async function holdUnits(tx: ReservationTransaction, orderId: string, lines: readonly OrderLineQuantity[]): Promise<void> {
  const { ids, quantities } = columns(lines);
  const updated = await tx.$executeRaw`
    UPDATE stock_items AS s
    SET available = s.available - l.quantity, reserved = s.reserved + l.quantity, version = s.version + 1, updated_at = now()
    FROM unnest(${ids}::uuid[], ${quantities}::int[]) AS l(product_id, quantity)
    WHERE s.product_id = l.product_id AND s.available >= l.quantity`;
  if (updated !== lines.length) {
    throw new Error(`Reserving stock for order ${orderId}: ${updated} of ${lines.length} lines had the units they had under lock; nothing was reserved`);
  }
  await tx.$executeRaw`
    INSERT INTO stock_reservations (order_id, product_id, quantity, status)
    SELECT ${orderId}::uuid, l.product_id, l.quantity, 'RESERVED'
    FROM unnest(${ids}::uuid[], ${quantities}::int[]) AS l(product_id, quantity)`;
}

async function linesIn(tx: ReservationTransaction, orderId: string, status: LineTransition['from']): Promise<OrderLineQuantity[]> {
  return tx.$queryRaw<OrderLineQuantity[]>`
    SELECT product_id::text AS "productId", quantity FROM stock_reservations
    WHERE order_id = ${orderId}::uuid AND status = ${status}
    ORDER BY product_id`;
}

async function nextReplyVersion(tx: ReservationTransaction, orderId: string): Promise<number> {
  const [{ version }] = await tx.$queryRaw<[{ version: number }]>`
    UPDATE stock_reservation_orders SET version = version + 1, updated_at = now()
    WHERE order_id = ${orderId}::uuid
    RETURNING version`;
  return version;
}

async function reply<T extends ReservationReplyType>(
  tx: ReservationTransaction,
  type: T,
  payload: ReservationReplies[T],
  version: number,
  causation: Causation,
): Promise<EventEnvelope<ReservationReplies[T]>> {
  const envelope = reservationReply(type, payload, version, causation);
  await appendToOutbox(tx, [envelope]);
  return envelope;
}

function columns(lines: readonly OrderLineQuantity[]): { ids: string[]; quantities: number[] } {
  return { ids: lines.map((line) => line.productId), quantities: lines.map((line) => line.quantity) };
}
