/**
 * The Order aggregate, event-sourced: `decide(command, state)` returns the events a command
 * leads to (or throws a DomainError), `evolve(state, event)` folds one event into the state.
 * Pure: no clock (the command carries `at`), no database, no GraphQL. The saga's progress
 * (stock reserved, payment authorized…) lives in the saga's own state, not here: the order
 * records the milestones a customer sees.
 */
import { DomainError } from '../../../platform/errors/domain-error.ts';
import type { ShippingAddress } from '../../../platform/events/contracts/order-saga.ts';

export type OrderStatus = 'PENDING' | 'CONFIRMED' | 'REJECTED' | 'CANCELLED' | 'SHIPPED' | 'DELIVERED';
export type CancellationReason = 'PAYMENT_DECLINED' | 'TIMEOUT' | 'CUSTOMER_CANCELLED';
export type RejectionReason = 'OUT_OF_STOCK';

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
  | { type: 'OrderCancelled'; data: { reason: CancellationReason; at: string } }
  | { type: 'OrderShipped'; data: { at: string } }
  | { type: 'OrderDelivered'; data: { at: string } };

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
  reason: CancellationReason | RejectionReason | null;
  rejectedLines: UnavailableLine[];
  placedAt: string;
  updatedAt: string;
}

/** Before its first event an order does not exist. */
export type OrderState = Order | null;

export function evolve(state: OrderState, event: OrderEvent): OrderState {
  if (event.type === 'OrderPlaced') {
    const { orderId, at, ...placed } = event.data;
    return { id: orderId, ...placed, status: 'PENDING', reason: null, rejectedLines: [], placedAt: at, updatedAt: at };
  }
  if (!state) throw new Error(`${event.type} before OrderPlaced`);
  switch (event.type) {
    case 'OrderConfirmed':
      return { ...state, status: 'CONFIRMED', updatedAt: event.data.at };
    case 'OrderRejected':
      return { ...state, status: 'REJECTED', reason: event.data.reason, rejectedLines: event.data.lines, updatedAt: event.data.at };
    case 'OrderCancelled':
      return { ...state, status: 'CANCELLED', reason: event.data.reason, updatedAt: event.data.at };
    case 'OrderShipped':
      return { ...state, status: 'SHIPPED', updatedAt: event.data.at };
    case 'OrderDelivered':
      return { ...state, status: 'DELIVERED', updatedAt: event.data.at };
  }
}

export const fold = (events: readonly OrderEvent[], from: OrderState = null): OrderState => events.reduce(evolve, from);

// ── commands ───────────────────────────────────────────────────────────────────────────────
export type OrderCommand =
  | { type: 'PlaceOrder'; orderId: string; customerId: string; lines: PricedLine[]; currency: string; shippingAddress: ShippingAddress; idempotencyKey: string; at: string }
  | { type: 'ConfirmOrder'; at: string }
  | { type: 'RejectOrder'; lines: UnavailableLine[]; at: string }
  | { type: 'CancelOrder'; reason: CancellationReason; at: string }
  | { type: 'MarkShipped'; at: string }
  | { type: 'MarkDelivered'; at: string };

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
    case 'CancelOrder': {
      requireStatus(requireOrder(state), ['PENDING', 'CONFIRMED'], 'cancel');
      return [{ type: 'OrderCancelled', data: { reason: command.reason, at: command.at } }];
    }
    case 'MarkShipped': {
      requireStatus(requireOrder(state), ['CONFIRMED'], 'ship');
      return [{ type: 'OrderShipped', data: { at: command.at } }];
    }
    case 'MarkDelivered': {
      requireStatus(requireOrder(state), ['SHIPPED'], 'deliver');
      return [{ type: 'OrderDelivered', data: { at: command.at } }];
    }
  }
}
