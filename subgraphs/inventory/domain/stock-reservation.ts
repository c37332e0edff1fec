/**
 * The inventory's rules for reserving stock for an order. Pure: the repository reads the
 * available units (under row locks) and applies what these functions decide.
 *
 * An order's reservation is all lines or none. Each reservation line is RESERVED, then either
 * RELEASED (its units go back to available) or COMMITTED (its units left the warehouse at
 * dispatch). When the order's parcel comes back, its COMMITTED lines become RETURNED (the units
 * are in the warehouse again but held, not for sale, until the return is settled), then either
 * RESTOCKED (on sale again) or WRITTEN_OFF (the refund failed: kept aside for an operator). A
 * line never goes back (`lineTransitions`).
 */
import type {
  CommitStock,
  OrderLineQuantity,
  ReceiveReturnedStock,
  ReleaseStock,
  ReserveStock,
  RestockReturn,
  StockReservationRejected,
  WriteOffReturn,
} from '../../../platform/events/contracts/order-saga.ts';
import type { EventEnvelope } from '../../../platform/events/envelope.ts';
import { isUuid } from '../../../platform/ids.ts';
import { maxStockLevel } from './stock.ts';

export type ReservationStatus = 'RESERVED' | 'RELEASED' | 'COMMITTED' | 'RETURNED' | 'RESTOCKED' | 'WRITTEN_OFF';

/**
 * A move of an order's lines from one status to the next, and what it does to their products'
 * stock, per unit of the line: `available` is what can be ordered, `reserved` what is on the
 * shelf but not for sale. Units that are COMMITTED (left the warehouse) or WRITTEN_OFF are in
 * neither, so for every product available + reserved + committed + written off only changes
 * by admin adjustments.
 */
export interface LineTransition {
  from: ReservationStatus;
  to: ReservationStatus;
  available: -1 | 0 | 1;
  reserved: -1 | 0 | 1;
}

/** Every move a reservation line can make; there are no others. */
export const lineTransitions = {
  /** ReleaseStock: reserved units go back on sale. */
  release: { from: 'RESERVED', to: 'RELEASED', available: 1, reserved: -1 },
  /** CommitStock, at dispatch: reserved units leave the warehouse. */
  commit: { from: 'RESERVED', to: 'COMMITTED', available: 0, reserved: -1 },
  /** ReceiveReturnedStock: the parcel is back; its units are held, not for sale. */
  receiveReturn: { from: 'COMMITTED', to: 'RETURNED', available: 0, reserved: 1 },
  /** RestockReturn, once the refund went through: held units go on sale. */
  restock: { from: 'RETURNED', to: 'RESTOCKED', available: 1, reserved: -1 },
  /** WriteOffReturn, when the refund failed: held units leave the stock. */
  writeOff: { from: 'RETURNED', to: 'WRITTEN_OFF', available: 0, reserved: -1 },
} as const satisfies Record<string, LineTransition>;

export type UnavailableLine = StockReservationRejected['lines'][number];

export type ReservationDecision =
  | { type: 'StockReserved'; lines: OrderLineQuantity[] }
  | { type: 'StockReservationRejected'; lines: UnavailableLine[] };

/**
 * A saga command inventory cannot act on (no order id, a quantity that is not a positive whole
 * number…). It is a bug of the sender, so the handler throws it: the bus retries, then parks
 * the command as a dead letter where someone will see it, and the saga's deadline compensates.
 */
export class InvalidSagaCommand extends Error {
  override readonly name = 'InvalidSagaCommand';
  readonly code = 'INVALID_SAGA_COMMAND';
}

/** The key stock levels are looked up by: product ids compare case-insensitively, as uuids do. */
export const productKey = (productId: string): string => productId.toLowerCase();

function orderIdOf(event: EventEnvelope): string {
  const { orderId } = event.payload as { orderId?: unknown };
  if (!isUuid(orderId)) throw new InvalidSagaCommand(`${event.type} ${event.eventId}: payload.orderId must be a uuid, got ${JSON.stringify(orderId)}`);
  // The inbox orders an order's commands by (aggregateType, aggregateId): they must name the same order.
  if (event.aggregateId !== orderId) throw new InvalidSagaCommand(`${event.type} ${event.eventId}: aggregateId ${event.aggregateId} is not payload.orderId ${orderId}`);
  return orderId;
}

/** The ReserveStock of a command envelope, its lines merged by product (`mergeLines`). */
export function reserveStockCommand(event: EventEnvelope): ReserveStock {
  const orderId = orderIdOf(event);
  const { lines } = event.payload as { lines?: unknown };
  if (!Array.isArray(lines) || lines.length === 0) throw new InvalidSagaCommand(`ReserveStock ${event.eventId}: an order needs at least one line`);
  for (const line of lines as Partial<OrderLineQuantity>[]) {
    const { productId, quantity } = line ?? {};
    if (typeof productId !== 'string' || productId.length === 0) throw new InvalidSagaCommand(`ReserveStock ${event.eventId}: every line needs a productId`);
    if (!Number.isInteger(quantity) || quantity! < 1 || quantity! > maxStockLevel) {
      throw new InvalidSagaCommand(`ReserveStock ${event.eventId}: quantity of ${productId} must be a whole number from 1 to ${maxStockLevel}, got ${JSON.stringify(quantity)}`);
    }
  }
  return { orderId, lines: mergeLines(lines as OrderLineQuantity[]) };
}

/**
 * One line per product, in the order products were first listed: a product listed twice is
 * reserved once, for the sum (a reservation row is keyed by order and product).
 */
export function mergeLines(lines: readonly OrderLineQuantity[]): OrderLineQuantity[] {
  const merged = new Map<string, OrderLineQuantity>();
  for (const { productId, quantity } of lines) {
    const seen = merged.get(productKey(productId));
    merged.set(productKey(productId), { productId: seen?.productId ?? productId, quantity: (seen?.quantity ?? 0) + quantity });
  }
  return [...merged.values()];
}

export function releaseStockCommand(event: EventEnvelope): ReleaseStock {
  return { orderId: orderIdOf(event) };
}

export function commitStockCommand(event: EventEnvelope): CommitStock {
  return { orderId: orderIdOf(event) };
}

export function receiveReturnedStockCommand(event: EventEnvelope): ReceiveReturnedStock {
  return { orderId: orderIdOf(event) };
}

export function restockReturnCommand(event: EventEnvelope): RestockReturn {
  return { orderId: orderIdOf(event) };
}

export function writeOffReturnCommand(event: EventEnvelope): WriteOffReturn {
  return { orderId: orderIdOf(event) };
}

/** The products of these lines that stock can exist for (a product id that is no uuid has none). */
export const stockableProductIds = (lines: readonly OrderLineQuantity[]): string[] => lines.map((l) => l.productId).filter(isUuid).map(productKey);

/**
 * All or nothing: every line is reserved when each has enough available units, otherwise the
 * order is rejected with EVERY line that is short and what was available of it (0 for a
 * product inventory has no stock record of).
 */
export function decideReservation(lines: readonly OrderLineQuantity[], available: ReadonlyMap<string, number>): ReservationDecision {
  const short = lines
    .map((line) => ({ productId: line.productId, requested: line.quantity, available: available.get(productKey(line.productId)) ?? 0 }))
    .filter((line) => line.available < line.requested);
  return short.length > 0 ? { type: 'StockReservationRejected', lines: short } : { type: 'StockReserved', lines: [...lines] };
}
