/**
 * Inventory's replies to the order saga, about the `StockReservation` aggregate of an order
 * (aggregateId = orderId): version 1 is the outcome of its ReserveStock, each later reply +1.
 */
import type { StockCommitted, StockReleased, StockReservationRejected, StockReserved } from '../../../platform/events/contracts/order-saga.ts';
import { createEnvelope, type Causation, type EventEnvelope } from '../../../platform/events/envelope.ts';

export interface ReservationReplies {
  StockReserved: StockReserved;
  StockReservationRejected: StockReservationRejected;
  StockReleased: StockReleased;
  StockCommitted: StockCommitted;
}

export type ReservationReplyType = keyof ReservationReplies;

export function reservationReply<T extends ReservationReplyType>(
  type: T,
  payload: ReservationReplies[T],
  version: number,
  causation: Causation,
): EventEnvelope<ReservationReplies[T]> {
  return createEnvelope('inventory', { type, aggregateType: 'StockReservation', aggregateId: payload.orderId, aggregateVersion: version, payload }, causation);
}
