/**
 * The shipping context's rules, in one place. Pure: the clock is given.
 *
 * A shipment's life is a path, so each status has one version:
 *
 *   (none) ─create─► CREATED (1) ─dispatch─► DISPATCHED (2) ─► IN_TRANSIT (3) ─► DELIVERED (4)
 *                                └─cancel──► CANCELLED (2)
 *
 * The saga creates and cancels (idempotently: a repeated command is answered again, a cancel of
 * nothing changes nothing); the carrier (an admin, here) advances one step at a time. Once
 * dispatched a parcel cannot be called back, so a late cancel changes nothing: the saga, hearing of
 * the dispatch, refuses the customer's cancellation (docs/decisions/0030).
 */
import { createHash } from 'node:crypto';
import { DomainError } from '../../../platform/errors/domain-error.ts';
import type {
  CreateShipment,
  ShipmentCancelled,
  ShipmentCreated,
  ShipmentDelivered,
  ShipmentDispatched,
  ShipmentInTransit,
  ShippingAddress,
  OrderLineQuantity,
} from '../../../platform/events/contracts/order-saga.ts';
import { deterministicUuid, isUuid } from '../../../platform/ids.ts';

export const shipmentStatuses = ['CREATED', 'DISPATCHED', 'IN_TRANSIT', 'DELIVERED', 'CANCELLED'] as const;
export type ShipmentStatus = (typeof shipmentStatuses)[number];

export interface Shipment {
  id: string;
  orderId: string;
  customerId: string;
  carrier: string;
  trackingNumber: string;
  status: ShipmentStatus;
  version: number;
}

export type ShipmentReply =
  | { type: 'ShipmentCreated'; version: number; payload: ShipmentCreated }
  | { type: 'ShipmentCancelled'; version: number; payload: ShipmentCancelled }
  | { type: 'ShipmentDispatched'; version: number; payload: ShipmentDispatched }
  | { type: 'ShipmentInTransit'; version: number; payload: ShipmentInTransit }
  | { type: 'ShipmentDelivered'; version: number; payload: ShipmentDelivered };

export type ShipmentDecision =
  | { kind: 'created'; shipment: Shipment; address: ShippingAddress; lines: OrderLineQuantity[]; reply: ShipmentReply }
  | { kind: 'changed'; shipment: Shipment; reply: ShipmentReply }
  | { kind: 'repeated'; reply: ShipmentReply }
  /** `expected`: the saga may well send it (a blind cancel); otherwise it points at a saga bug. */
  | { kind: 'ignored'; reason: string; expected: boolean };

/** A command that breaks the contract (bad ids, address or lines): a bug of the sender. */
export class InvalidShipmentCommand extends Error {
  override readonly name = 'InvalidShipmentCommand';
}

/** The (simulated) carrier every shipment goes with. */
export const carrier = 'Commerce Shipping Group';

const versionAt: Record<ShipmentStatus, number> = { CREATED: 1, DISPATCHED: 2, IN_TRANSIT: 3, DELIVERED: 4, CANCELLED: 2 };
/** Where the carrier can take a shipment from each status. */
const nextStatus: Partial<Record<ShipmentStatus, ShipmentStatus>> = { CREATED: 'DISPATCHED', DISPATCHED: 'IN_TRANSIT', IN_TRANSIT: 'DELIVERED' };
const maxLines = 50;

export const shipmentIdOf = (orderId: string): string => deterministicUuid('shipment', orderId);

/**
 * `CSG` and 16 digits derived from the order id: a re-sent CreateShipment can only ever give
 * the same number. 10¹⁶ numbers make a collision unlikely below ~10⁷ shipments; the unique
 * index refuses one rather than sharing a number.
 */
export function trackingNumberOf(orderId: string): string {
  const digits = createHash('sha256').update(`tracking:${orderId}`).digest().readBigUInt64BE(0) % 10n ** 16n;
  return `CSG${digits.toString().padStart(16, '0')}`;
}

export function checkCreateShipment(request: CreateShipment): CreateShipment {
  const invalid = (message: string) => new InvalidShipmentCommand(`CreateShipment.${message}`);
  if (!isUuid(request.orderId)) throw invalid('orderId must be a UUID');
  if (!isUuid(request.customerId)) throw invalid('customerId must be a UUID');
  const a = request.address;
  if (!a || typeof a !== 'object') throw invalid('address is required');
  const text = (value: unknown, max: number) => typeof value === 'string' && value.trim().length > 0 && value.length <= max;
  if (!text(a.name, 200) || !text(a.line1, 200) || !text(a.city, 100) || !text(a.postalCode, 20)) {
    throw invalid('address needs a name, line1, city and postalCode within their lengths');
  }
  if (a.line2 != null && (typeof a.line2 !== 'string' || a.line2.length > 200)) throw invalid('address.line2 must be at most 200 characters');
  if (typeof a.country !== 'string' || !/^[A-Z]{2}$/.test(a.country)) throw invalid('address.country must be an ISO 3166-1 alpha-2 code');
  if (!Array.isArray(request.lines) || request.lines.length < 1 || request.lines.length > maxLines) throw invalid(`lines must hold 1 to ${maxLines} lines`);
  const products = new Set<string>();
  for (const line of request.lines) {
    if (!isUuid(line.productId) || !Number.isInteger(line.quantity) || line.quantity < 1) throw invalid('lines need a product UUID and a positive quantity');
    if (products.has(line.productId)) throw invalid('lines must name each product once');
    products.add(line.productId);
  }
  return request;
}

export function decideCreate(shipment: Shipment | null, request: CreateShipment): ShipmentDecision {
  if (shipment?.status === 'CANCELLED') return { kind: 'ignored', reason: 'the shipment of this order was cancelled', expected: false };
  if (shipment) return { kind: 'repeated', reply: replyFor({ ...shipment, status: 'CREATED' }) };
  const created: Shipment = {
    id: shipmentIdOf(request.orderId),
    orderId: request.orderId,
    customerId: request.customerId,
    carrier,
    trackingNumber: trackingNumberOf(request.orderId),
    status: 'CREATED',
    version: versionAt.CREATED,
  };
  return { kind: 'created', shipment: created, address: request.address, lines: request.lines, reply: replyFor(created) };
}

export function decideCancel(shipment: Shipment | null): ShipmentDecision {
  if (!shipment) return { kind: 'ignored', reason: 'there is no shipment to cancel', expected: true };
  if (shipment.status === 'CREATED') return changed({ ...shipment, status: 'CANCELLED' });
  if (shipment.status === 'CANCELLED') return { kind: 'repeated', reply: replyFor(shipment) };
  // Expected: a customer's cancellation can cross the dispatch; the saga hears ShipmentDispatched and refuses it (docs/decisions/0030).
  return { kind: 'ignored', reason: `the shipment is ${describe(shipment.status)} already: it cannot be called back`, expected: true };
}

/** The carrier moves the shipment one step on; anything else is a CONFLICT. */
export function advance(shipment: Shipment, to: ShipmentStatus): ShipmentDecision {
  const next = nextStatus[shipment.status];
  if (!next) throw new DomainError('CONFLICT', `The shipment is ${describe(shipment.status)}: it cannot move any more`, 'to');
  if (to !== next) throw new DomainError('CONFLICT', `From ${shipment.status} a shipment can only move to ${next}, not to ${to}`, 'to');
  return changed({ ...shipment, status: to });
}

function changed(shipment: Shipment): ShipmentDecision {
  const next = { ...shipment, version: versionAt[shipment.status] };
  return { kind: 'changed', shipment: next, reply: replyFor(next) };
}

const describe = (status: ShipmentStatus) => status.toLowerCase().replace('_', ' ');

/** The reply event of the step that led to `shipment.status`. */
function replyFor(shipment: Shipment): ShipmentReply {
  const { orderId, id: shipmentId } = shipment;
  const version = versionAt[shipment.status];
  switch (shipment.status) {
    case 'CREATED':
      return { type: 'ShipmentCreated', version, payload: { orderId, shipmentId, carrier: shipment.carrier, trackingNumber: shipment.trackingNumber } };
    case 'CANCELLED':
      return { type: 'ShipmentCancelled', version, payload: { orderId, shipmentId } };
    case 'DISPATCHED':
      return { type: 'ShipmentDispatched', version, payload: { orderId, shipmentId } };
    case 'IN_TRANSIT':
      return { type: 'ShipmentInTransit', version, payload: { orderId, shipmentId } };
    case 'DELIVERED':
      return { type: 'ShipmentDelivered', version, payload: { orderId, shipmentId } };
  }
}
