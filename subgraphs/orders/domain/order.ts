/**
 * The Order aggregate, event-sourced: `decide(command, state)` returns the events a command
 * leads to (or throws a DomainError), `evolve(state, event)` folds one event into the state.
 * Pure: no clock (the command carries `at`), no database, no GraphQL. The saga's progress
 * (stock reserved, payment authorized…) lives in the saga's own state, not here: the order
 * records the milestones a customer sees.
 */
import { DomainError } from '../../../platform/errors/domain-error.ts';
import type { ShippingAddress } from '../../../platform/events/contracts/order-saga.ts';

export type OrderStatus =
  | 'PENDING'
  | 'CONFIRMED'
  | 'REJECTED'
  | 'CANCELLING'
  | 'CANCELLED'
  | 'SHIPPED'
  | 'DELIVERED'
  | 'RETURN_REQUESTED'
  | 'RETURN_RECEIVED'
  | 'REFUNDED'
  | 'REFUND_FAILED';
export type CancellationReason = 'PAYMENT_DECLINED' | 'TIMEOUT' | 'CUSTOMER_CANCELLED';
export type RejectionReason = 'OUT_OF_STOCK';
export type RefundFailureReason = 'REFUND_DECLINED';
/** Why shipping could not stop the shipment of an order whose customer asked to cancel it. */
export type CancellationRefusal = 'ALREADY_DISPATCHED';

/** What other contexts said of the order's payment and shipment (their replies to the saga). */
export type PaymentStatus = 'AUTHORIZED' | 'DECLINED' | 'CAPTURED' | 'VOIDED' | 'REFUNDED' | 'REFUND_FAILED';
export type ShipmentStatus = 'CREATED' | 'CANCELLED' | 'DISPATCHED' | 'IN_TRANSIT' | 'DELIVERED';

/** A customer's request to cancel: PENDING until shipping stopped the shipment (ACCEPTED) or could not (REFUSED). */
export interface Cancellation {
  requestedAt: string;
  outcome: 'PENDING' | 'ACCEPTED' | 'REFUSED';
  refusal: CancellationRefusal | null;
  resolvedAt: string | null;
}

export interface PricedLine {
  productId: string;
  quantity: number;
  /** Minor units, from the orders context's copy of catalog prices at the time of placing. */
  unitPrice: number;
}

export interface UnavailableLine {
  productId: string;
  requested: number;
  available: number;
}

// ── events ─────────────────────────────────────────────────────────────────────────────────
export type OrderEvent =
  | { type: 'OrderPlaced'; data: { orderId: string; customerId: string; lines: PricedLine[]; currency: string; total: number; shippingAddress: ShippingAddress; idempotencyKey: string; at: string } }
  | { type: 'OrderConfirmed'; data: { at: string } }
  | { type: 'OrderRejected'; data: { reason: RejectionReason; lines: UnavailableLine[]; at: string } }
  /** `shipmentStatus`: set when shipping's answer (ShipmentCancelled) is what cancelled the order. */
  | { type: 'OrderCancelled'; data: { reason: CancellationReason; at: string; shipmentStatus?: ShipmentStatus } }
  | { type: 'OrderShipped'; data: { at: string } }
  | { type: 'OrderDelivered'; data: { at: string } }
  | { type: 'CancellationRequested'; data: { at: string } }
  | { type: 'CancellationRefused'; data: { reason: CancellationRefusal; at: string } }
  | { type: 'ReturnRequested'; data: { at: string } }
  | { type: 'ReturnReceived'; data: { at: string } }
  | { type: 'OrderRefunded'; data: { amount: number; at: string } }
  | { type: 'RefundFailed'; data: { reason: RefundFailureReason; at: string } }
  /** Private: the order learnt a new state of its payment or shipment (they change what its view shows). */
  | { type: 'PaymentUpdated'; data: { status: PaymentStatus; at: string } }
  | { type: 'ShipmentUpdated'; data: { status: ShipmentStatus; at: string } };

// ── state ──────────────────────────────────────────────────────────────────────────────────
export interface Order {
  id: string;
  customerId: string;
  status: OrderStatus;
  lines: PricedLine[];
  currency: string;
  total: number;
  shippingAddress: ShippingAddress;
  idempotencyKey: string;
  reason: CancellationReason | RejectionReason | RefundFailureReason | null;
  rejectedLines: UnavailableLine[];
  cancellation: Cancellation | null;
  paymentStatus: PaymentStatus | null;
  shipmentStatus: ShipmentStatus | null;
  deliveredAt: string | null;
  placedAt: string;
  /** When the status last changed. */
  updatedAt: string;
}

/** Before its first event an order does not exist. */
export type OrderState = Order | null;

export function evolve(state: OrderState, event: OrderEvent): OrderState {
  if (event.type === 'OrderPlaced') {
    const { orderId, at, ...placed } = event.data;
    return {
      id: orderId,
      ...placed,
      status: 'PENDING',
      reason: null,
      rejectedLines: [],
      cancellation: null,
      paymentStatus: null,
      shipmentStatus: null,
      deliveredAt: null,
      placedAt: at,
      updatedAt: at,
    };
  }
  if (!state) throw new Error(`${event.type} before OrderPlaced`);
  const at = event.data.at;
  const moved = (status: OrderStatus): Order => ({ ...state, status, updatedAt: at });
  switch (event.type) {
    // Transitions the saga makes on a payment or shipment reply also tell the order that state.
    case 'OrderConfirmed':
      return { ...moved('CONFIRMED'), shipmentStatus: 'CREATED' };
    case 'OrderRejected':
      return { ...moved('REJECTED'), reason: event.data.reason, rejectedLines: event.data.lines };
    case 'OrderCancelled': {
      return {
        ...moved('CANCELLED'),
        reason: event.data.reason,
        cancellation: cancellationAfter(state.cancellation, event),
        ...(event.data.reason === 'PAYMENT_DECLINED' ? { paymentStatus: 'DECLINED' as const } : {}),
        ...(event.data.shipmentStatus ? { shipmentStatus: event.data.shipmentStatus } : {}),
      };
    }
    case 'OrderShipped':
      return { ...moved('SHIPPED'), shipmentStatus: 'DISPATCHED' };
    case 'OrderDelivered':
      return { ...moved('DELIVERED'), shipmentStatus: 'DELIVERED', deliveredAt: at };
    case 'CancellationRequested':
      return { ...moved('CANCELLING'), cancellation: cancellationAfter(state.cancellation, event) };
    case 'CancellationRefused':
      // The status stays CANCELLING until the event that follows it (OrderShipped) moves it on.
      return { ...state, cancellation: cancellationAfter(state.cancellation, event) };
    case 'ReturnRequested':
      return moved('RETURN_REQUESTED');
    case 'ReturnReceived':
      return moved('RETURN_RECEIVED');
    case 'OrderRefunded':
      return { ...moved('REFUNDED'), paymentStatus: 'REFUNDED' };
    case 'RefundFailed':
      return { ...moved('REFUND_FAILED'), reason: event.data.reason, paymentStatus: 'REFUND_FAILED' };
    case 'PaymentUpdated':
      return { ...state, paymentStatus: event.data.status };
    case 'ShipmentUpdated':
      return { ...state, shipmentStatus: event.data.status };
  }
}

/**
 * The customer's request to cancel after `event`: one rule for the aggregate and its projections
 * (projections/order-summary.ts). A snapshot taken before requests existed has none (undefined).
 */
export function cancellationAfter(cancellation: Cancellation | null | undefined, event: OrderEvent): Cancellation | null {
  const current = cancellation ?? null;
  switch (event.type) {
    case 'CancellationRequested':
      return { requestedAt: event.data.at, outcome: 'PENDING', refusal: null, resolvedAt: null };
    case 'OrderCancelled':
      return current && { ...current, outcome: 'ACCEPTED', resolvedAt: event.data.at };
    case 'CancellationRefused':
      return current && { ...current, outcome: 'REFUSED', refusal: event.data.reason, resolvedAt: event.data.at };
    default:
      return current;
  }
}

export const fold = (events: readonly OrderEvent[], from: OrderState = null): OrderState => events.reduce(evolve, from);

// ── commands ───────────────────────────────────────────────────────────────────────────────
export type OrderCommand =
  | { type: 'PlaceOrder'; orderId: string; customerId: string; lines: PricedLine[]; currency: string; shippingAddress: ShippingAddress; idempotencyKey: string; at: string }
  | { type: 'ConfirmOrder'; at: string }
  | { type: 'RejectOrder'; lines: UnavailableLine[]; at: string }
  | { type: 'CancelOrder'; reason: CancellationReason; at: string; shipmentStatus?: ShipmentStatus }
  | { type: 'MarkShipped'; at: string }
  | { type: 'MarkDelivered'; at: string }
  | { type: 'RequestCancellation'; at: string }
  | { type: 'RequestReturn'; at: string; windowMs: number }
  | { type: 'ReceiveReturn'; at: string }
  | { type: 'MarkRefunded'; at: string }
  | { type: 'MarkRefundFailed'; reason: RefundFailureReason; at: string }
  | { type: 'RecordPayment'; status: PaymentStatus; at: string }
  | { type: 'RecordShipment'; status: ShipmentStatus; at: string };

export const maxLines = 50;
export const maxQuantity = 99;
/** GraphQL's Int (and the projections' integer column) ends at 2³¹−1 minor units. */
export const maxOrderTotal = 2_147_483_647;

const conflict = (message: string) => new DomainError('CONFLICT', message);
const invalid = (message: string, field: string) => new DomainError('BAD_USER_INPUT', message, field);

// ── rules of placing an order (checked before pricing, and again by decide) ────────────────
export interface RequestedLine {
  productId: string;
  quantity: number;
}

/** 1 to 50 lines, each product once, 1 to 99 units each. Returns the lines unchanged. */
export function checkLines<L extends RequestedLine>(lines: readonly L[]): L[] {
  if (lines.length < 1 || lines.length > maxLines) throw invalid(`An order has 1 to ${maxLines} lines`, 'input.lines');
  const seen = new Set<string>();
  lines.forEach((line, index) => {
    if (!Number.isInteger(line.quantity) || line.quantity < 1 || line.quantity > maxQuantity) {
      throw invalid(`Quantity must be 1 to ${maxQuantity}`, `input.lines[${index}].quantity`);
    }
    // One line per product: the saga reserves, and inventory reports, per product.
    if (seen.has(line.productId)) throw invalid(`Product ${line.productId} is on more than one line: order it on one line`, `input.lines[${index}].productId`);
    seen.add(line.productId);
  });
  return [...lines];
}

function checkPricedLines(lines: readonly PricedLine[]): PricedLine[] {
  checkLines(lines);
  lines.forEach((line, index) => {
    if (!Number.isInteger(line.unitPrice) || line.unitPrice < 0) throw invalid('A unit price is a whole, non-negative number of minor units', `input.lines[${index}]`);
  });
  return lines.map(({ productId, quantity, unitPrice }) => ({ productId, quantity, unitPrice }));
}

/** The sum of the lines; BAD_USER_INPUT beyond what an order can carry. */
export function orderTotal(lines: readonly PricedLine[]): number {
  const total = lines.reduce((sum, line) => sum + line.quantity * line.unitPrice, 0);
  if (total > maxOrderTotal) throw invalid(`An order's total must be at most ${maxOrderTotal} minor units: split it into several orders`, 'input.lines');
  return total;
}

const addressLimits = { name: 100, line1: 200, line2: 200, city: 100, postalCode: 20 } as const;

/** A deliverable address: required parts present, sizes bounded, country as ISO 3166-1 alpha-2. Returns it trimmed. */
export function checkShippingAddress(address: ShippingAddress): ShippingAddress {
  const part = (key: keyof typeof addressLimits, required: boolean): string | null => {
    const value = (address[key] ?? '').trim();
    const field = `input.shippingAddress.${key}`;
    if (required && value.length === 0) throw invalid(`The shipping address needs a ${key}`, field);
    if (value.length > addressLimits[key]) throw invalid(`${key} must be at most ${addressLimits[key]} characters`, field);
    return value.length === 0 ? null : value;
  };
  const postalCode = part('postalCode', true)!;
  if (!/^[A-Za-z0-9][A-Za-z0-9 -]*$/.test(postalCode)) throw invalid('postalCode may hold letters, digits, spaces and dashes', 'input.shippingAddress.postalCode');
  const country = address.country.trim().toUpperCase();
  if (!/^[A-Z]{2}$/.test(country)) throw invalid('country must be a two-letter ISO 3166-1 code, e.g. DE', 'input.shippingAddress.country');
  return { name: part('name', true)!, line1: part('line1', true)!, line2: part('line2', false), city: part('city', true)!, postalCode, country };
}

function requireOrder(state: OrderState): Order {
  if (!state) throw new DomainError('NOT_FOUND', 'No such order');
  return state;
}

function requireStatus(order: Order, allowed: readonly OrderStatus[], action: string): void {
  if (!allowed.includes(order.status)) throw conflict(`Cannot ${action} an order that is ${order.status.toLowerCase()}`);
}

/** The statuses a customer's cancellation is refused in because the parcel left (CANCELLATION_REFUSED). */
const dispatched: readonly OrderStatus[] = ['SHIPPED', 'DELIVERED', 'RETURN_REQUESTED', 'RETURN_RECEIVED', 'REFUNDED', 'REFUND_FAILED'];

export const alreadyDispatched = () =>
  new DomainError('CANCELLATION_REFUSED', 'The order was dispatched already: it can no longer be cancelled (return it once delivered)', undefined, 'ALREADY_DISPATCHED');

export function decide(command: OrderCommand, state: OrderState): OrderEvent[] {
  switch (command.type) {
    case 'PlaceOrder': {
      if (state) throw conflict('This order exists already');
      const lines = checkPricedLines(command.lines);
      if (!/^[A-Z]{3}$/.test(command.currency)) throw invalid('currency must be an ISO 4217 code', 'input.lines');
      const total = orderTotal(lines);
      const { type: _type, ...placed } = command;
      return [{ type: 'OrderPlaced', data: { ...placed, lines, shippingAddress: checkShippingAddress(command.shippingAddress), total } }];
    }
    case 'ConfirmOrder': {
      requireStatus(requireOrder(state), ['PENDING'], 'confirm');
      return [{ type: 'OrderConfirmed', data: { at: command.at } }];
    }
    case 'RejectOrder': {
      requireStatus(requireOrder(state), ['PENDING'], 'reject');
      return [{ type: 'OrderRejected', data: { reason: 'OUT_OF_STOCK', lines: command.lines, at: command.at } }];
    }
    case 'RequestCancellation': {
      const order = requireOrder(state);
      if (order.status === 'CANCELLING') return []; // asked again while it is being resolved
      if (dispatched.includes(order.status)) throw alreadyDispatched();
      requireStatus(order, ['PENDING', 'CONFIRMED'], 'cancel');
      return [{ type: 'CancellationRequested', data: { at: command.at } }];
    }
    case 'CancelOrder': {
      requireStatus(requireOrder(state), ['PENDING', 'CONFIRMED', 'CANCELLING'], 'cancel');
      return [{ type: 'OrderCancelled', data: { reason: command.reason, at: command.at, ...(command.shipmentStatus ? { shipmentStatus: command.shipmentStatus } : {}) } }];
    }
    case 'MarkShipped': {
      const order = requireOrder(state);
      requireStatus(order, ['CONFIRMED', 'CANCELLING'], 'ship');
      const shipped: OrderEvent = { type: 'OrderShipped', data: { at: command.at } };
      // Shipping dispatched the parcel before it heard of the cancellation: the request is refused.
      return order.status === 'CANCELLING' ? [{ type: 'CancellationRefused', data: { reason: 'ALREADY_DISPATCHED', at: command.at } }, shipped] : [shipped];
    }
    case 'MarkDelivered': {
      requireStatus(requireOrder(state), ['SHIPPED'], 'deliver');
      return [{ type: 'OrderDelivered', data: { at: command.at } }];
    }
    case 'RequestReturn': {
      const order = requireOrder(state);
      if (order.status === 'RETURN_REQUESTED') return [];
      requireStatus(order, ['DELIVERED'], 'return');
      if (Date.parse(command.at) - Date.parse(order.deliveredAt ?? order.updatedAt) > command.windowMs) {
        throw new DomainError('CONFLICT', `An order can be returned within ${formatWindow(command.windowMs)} of its delivery`, undefined, 'RETURN_WINDOW_CLOSED');
      }
      return [{ type: 'ReturnRequested', data: { at: command.at } }];
    }
    case 'ReceiveReturn': {
      const order = requireOrder(state);
      // Received already (a retry, also once the refund settled): nothing more to record.
      if (order.status === 'RETURN_RECEIVED' || order.status === 'REFUNDED' || order.status === 'REFUND_FAILED') return [];
      requireStatus(order, ['RETURN_REQUESTED'], 'receive the return of');
      return [{ type: 'ReturnReceived', data: { at: command.at } }];
    }
    case 'MarkRefunded': {
      const order = requireOrder(state);
      requireStatus(order, ['RETURN_RECEIVED'], 'refund');
      return [{ type: 'OrderRefunded', data: { amount: order.total, at: command.at } }];
    }
    case 'MarkRefundFailed': {
      requireStatus(requireOrder(state), ['RETURN_RECEIVED'], 'fail the refund of');
      return [{ type: 'RefundFailed', data: { reason: command.reason, at: command.at } }];
    }
    case 'RecordPayment': {
      const order = requireOrder(state);
      return order.paymentStatus === command.status ? [] : [{ type: 'PaymentUpdated', data: { status: command.status, at: command.at } }];
    }
    case 'RecordShipment': {
      const order = requireOrder(state);
      return order.shipmentStatus === command.status ? [] : [{ type: 'ShipmentUpdated', data: { status: command.status, at: command.at } }];
    }
  }
}

/** The return window in days (or hours, minutes, seconds when shorter), for messages. */
function formatWindow(ms: number): string {
  const units: [number, string][] = [[86_400_000, 'day'], [3_600_000, 'hour'], [60_000, 'minute'], [1_000, 'second']];
  const [size, name] = units.find(([size]) => ms >= size && ms % size === 0) ?? [1, 'millisecond'];
  const count = ms / size;
  return `${count} ${name}${count === 1 ? '' : 's'}`;
}
