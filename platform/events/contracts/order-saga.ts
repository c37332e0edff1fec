/**
 * The order saga's messages: commands the orders context sends (imperative names) and the
 * replies inventory, payments and shipping publish (past tense). Commands travel as event
 * envelopes with `source: 'orders'`, `aggregateType: 'Order'`, `aggregateId: orderId`, and a
 * DETERMINISTIC `eventId` (`commandId(orderId, type)`), so a command sent again after a crash is
 * the same message and is applied once downstream. Each downstream context is also idempotent by
 * `orderId` in its own tables. Replies carry `aggregateType` of the replying aggregate
 * (`StockReservation`, `Payment`, `Shipment`) with `aggregateId: orderId`.
 */
import { deterministicUuid } from '../../ids.ts';

export interface OrderLineQuantity {
  productId: string;
  quantity: number;
}

/** The id of the saga's command `type` for an order: the same every time it is sent. */
export function commandId(orderId: string, type: SagaCommandType): string {
  return deterministicUuid('order-saga-command', `${orderId}:${type}`);
}

// ── inventory ──────────────────────────────────────────────────────────────────────────────
/** Reserve all lines or none. */
export interface ReserveStock { orderId: string; lines: OrderLineQuantity[] }
export interface StockReserved { orderId: string; lines: OrderLineQuantity[] }
export interface StockReservationRejected {
  orderId: string;
  /** The lines that could not be reserved, with what was available. */
  lines: { productId: string; requested: number; available: number }[];
}
/** Give reserved units back (payment declined, timeout, cancellation). No-op when none. */
export interface ReleaseStock { orderId: string }
export interface StockReleased { orderId: string; lines: OrderLineQuantity[] }
/** Reserved units leave the warehouse (at dispatch): reserved decreases, available unchanged. */
export interface CommitStock { orderId: string }
export interface StockCommitted { orderId: string; lines: OrderLineQuantity[] }
/**
 * A returned parcel reached the warehouse: the order's committed units come back into stock but
 * are HELD (reserved, not for sale) until the return is settled. No-op when nothing was committed.
 */
export interface ReceiveReturnedStock { orderId: string }
export interface ReturnedStockReceived { orderId: string; lines: OrderLineQuantity[] }
/** The return's refund went through: the held units go on sale again (reserved → available). */
export interface RestockReturn { orderId: string }
export interface StockRestocked { orderId: string; lines: OrderLineQuantity[] }
/**
 * Compensation when the refund failed: the held units are written off (reserved decreases,
 * available unchanged), kept aside for an operator to settle with the customer.
 */
export interface WriteOffReturn { orderId: string }
export interface ReturnWrittenOff { orderId: string; lines: OrderLineQuantity[] }

// ── payments ───────────────────────────────────────────────────────────────────────────────
export interface AuthorizePayment {
  orderId: string;
  customerId: string;
  /** Minor units. */
  amount: number;
  currency: string;
  /** The client's payment token, e.g. `tok_visa`; never card data. */
  paymentToken: string;
}
export interface PaymentAuthorized { orderId: string; paymentId: string; amount: number; currency: string }
export interface PaymentDeclined { orderId: string; reason: string }
export interface CapturePayment { orderId: string }
export interface PaymentCaptured { orderId: string; paymentId: string; amount: number; currency: string }
/** Cancel an authorization that was not captured. No-op when there is none. */
export interface VoidPayment { orderId: string }
export interface PaymentVoided { orderId: string; paymentId: string }
/** Give a captured payment back (a return). Idempotent at the provider by the payment's key. */
export interface RefundPayment { orderId: string }
export interface PaymentRefunded { orderId: string; paymentId: string; amount: number }
/** The provider declined the refund (e.g. the card was closed): the payment stays captured. */
export interface PaymentRefundFailed { orderId: string; paymentId: string; reason: string }

// ── shipping ───────────────────────────────────────────────────────────────────────────────
export interface ShippingAddress {
  name: string;
  line1: string;
  line2?: string | null;
  city: string;
  postalCode: string;
  /** ISO 3166-1 alpha-2. */
  country: string;
}
export interface CreateShipment { orderId: string; customerId: string; address: ShippingAddress; lines: OrderLineQuantity[] }
export interface ShipmentCreated { orderId: string; shipmentId: string; carrier: string; trackingNumber: string }
/** Cancel a shipment not yet dispatched. No-op when there is none. */
export interface CancelShipment { orderId: string }
export interface ShipmentCancelled { orderId: string; shipmentId: string }
export interface ShipmentDispatched { orderId: string; shipmentId: string }
export interface ShipmentInTransit { orderId: string; shipmentId: string }
export interface ShipmentDelivered { orderId: string; shipmentId: string }

export const sagaCommandTypes = [
  'ReserveStock', 'ReleaseStock', 'CommitStock', 'ReceiveReturnedStock', 'RestockReturn', 'WriteOffReturn',
  'AuthorizePayment', 'CapturePayment', 'VoidPayment', 'RefundPayment',
  'CreateShipment', 'CancelShipment',
] as const;
export type SagaCommandType = (typeof sagaCommandTypes)[number];

/** What each downstream context consumes. */
export const inventorySagaCommands = ['ReserveStock', 'ReleaseStock', 'CommitStock', 'ReceiveReturnedStock', 'RestockReturn', 'WriteOffReturn'] as const;
export const paymentsSagaCommands = ['AuthorizePayment', 'CapturePayment', 'VoidPayment', 'RefundPayment'] as const;
export const shippingSagaCommands = ['CreateShipment', 'CancelShipment'] as const;

/** Replies the orders context consumes. */
export const sagaReplyTypes = [
  'StockReserved', 'StockReservationRejected', 'StockReleased', 'StockCommitted',
  'ReturnedStockReceived', 'StockRestocked', 'ReturnWrittenOff',
  'PaymentAuthorized', 'PaymentDeclined', 'PaymentCaptured', 'PaymentVoided', 'PaymentRefunded', 'PaymentRefundFailed',
  'ShipmentCreated', 'ShipmentCancelled', 'ShipmentDispatched', 'ShipmentInTransit', 'ShipmentDelivered',
] as const;
