/**
 * Inventory's replies to the order saga, about the `StockReservation` aggregate of an order
 * (aggregateId = orderId): version 1 is the outcome of its ReserveStock, each later reply +1,
 * without holes (the orders context applies them in strict order). A reply answered again to a
 * repeated command keeps the version it was first sent with.
 */
import type {
  ReturnedStockReceived,
  ReturnWrittenOff,
  sagaReplyTypes,
  StockCommitted,
  StockReleased,
  StockReservationRejected,
  StockReserved,
  StockRestocked,
} from '../../../platform/events/contracts/order-saga.ts';
import { createEnvelope, type Causation, type EventEnvelope } from '../../../platform/events/envelope.ts';

export interface ReservationReplies {
  StockReserved: StockReserved;
  StockReservationRejected: StockReservationRejected;
  StockReleased: StockReleased;
  StockCommitted: StockCommitted;
  ReturnedStockReceived: ReturnedStockReceived;
  StockRestocked: StockRestocked;
  ReturnWrittenOff: ReturnWrittenOff;
}

export type ReservationReplyType = keyof ReservationReplies;

/** The replies to the return commands, each kept per order to be answered again as it was. */
export type ReturnReplyType = 'ReturnedStockReceived' | 'StockRestocked' | 'ReturnWrittenOff';

/** Every reply inventory sends to the order saga. */
export const reservationReplyTypes = [
  'StockReserved', 'StockReservationRejected', 'StockReleased', 'StockCommitted',
  'ReturnedStockReceived', 'StockRestocked', 'ReturnWrittenOff',
] as const satisfies readonly ReservationReplyType[] & readonly (typeof sagaReplyTypes)[number][];

export function reservationReply<T extends ReservationReplyType>(
  type: T,
  payload: ReservationReplies[T],
  version: number,
  causation: Causation,
): EventEnvelope<ReservationReplies[T]> {
  return createEnvelope('inventory', { type, aggregateType: 'StockReservation', aggregateId: payload.orderId, aggregateVersion: version, payload }, causation);
}
