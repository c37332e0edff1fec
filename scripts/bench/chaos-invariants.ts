/**
 * What must hold for every order once the platform has quiesced after the faults, checked over
 * facts read from each context's own database (chaos-snapshot.ts). Pure, so it can be tested on
 * hand-made inconsistent data (test/chaos-invariants.test.ts).
 *
 * The order's truth is its event stream, folded with the aggregate's own `evolve`; every other
 * context and the read models must agree with it:
 * - stock: a live order (CONFIRMED) holds a RESERVED line per product with its quantity, a
 *   shipped one COMMITTED lines; a cancelled or rejected order holds nothing; and each product's
 *   `reserved` counter equals the sum of its RESERVED lines;
 * - payments: AUTHORIZED for the order's total when CONFIRMED, CAPTURED once shipped; none,
 *   DECLINED or VOIDED for a cancelled or rejected order;
 * - shipments: CREATED with the order's lines when CONFIRMED; none or CANCELLED otherwise;
 * - projections: the summary (status, reason, total, items, version) and the timeline equal the
 *   stream's;
 * - acknowledged: every order a client was given an id for exists;
 * - stuck: no order is still PENDING after the quiesce.
 * Orders cancelled as TIMEOUT are counted apart: the platform's own outage must cancel none.
 */
import { evolve, type Order, type OrderEvent, type OrderState, type OrderStatus } from '../../subgraphs/orders/domain/order.ts';
import { statusAfter } from '../../subgraphs/orders/projections/order-summary.ts';

export interface StoredOrderEvent {
  version: number;
  type: OrderEvent['type'];
  data: OrderEvent['data'];
  /** Wall-clock ms the event was stored. */
  occurredAt: number;
}

export interface OrderFacts {
  orderId: string;
  /** The order's stream, by version. */
  events: StoredOrderEvent[];
  summary?: { status: string; reason: string | null; total: number; itemCount: number; version: number };
  /** Statuses of the order's timeline read model, by position. */
  timeline: string[];
  reservations: { productId: string; quantity: number; status: string }[];
  payment?: { status: string; amount: number };
  shipment?: { status: string; lines: { productId: string; quantity: number }[] };
}

export interface PlatformFacts {
  orders: OrderFacts[];
  /** Each product's `reserved` counter in inventory. */
  reservedByProduct: Map<string, number>;
  /** Every reservation line in inventory, whatever its order. */
  allReservations: { productId: string; quantity: number; status: string }[];
  /** Order ids the clients were given by placeOrder. */
  acknowledged: readonly string[];
}

export type ViolationKind = 'acknowledged' | 'stuck' | 'stock' | 'payments' | 'shipments' | 'projections';
export const violationKinds: readonly ViolationKind[] = ['acknowledged', 'stuck', 'stock', 'payments', 'shipments', 'projections'];

export interface Violation {
  kind: ViolationKind;
  /** The order, or the product for a stock counter. */
  subject: string;
  detail: string;
}

export interface InvariantReport {
  orders: number;
  byStatus: Map<string, number>;
  /** Orders cancelled with reason TIMEOUT. */
  timedOut: string[];
  violations: Violation[];
}

/** The order its stream says, and the first problem folding it (a gap or a bad first event). */
export function foldStream(events: readonly StoredOrderEvent[]): { order: Order | null; problem?: string } {
  let state: OrderState = null;
  for (const [index, event] of [...events].sort((a, b) => a.version - b.version).entries()) {
    if (event.version !== index + 1) return { order: state, problem: `stream has version ${event.version} where ${index + 1} was expected` };
    try {
      state = evolve(state, { type: event.type, data: event.data } as OrderEvent);
    } catch (error) {
      return { order: state, problem: (error as Error).message };
    }
  }
  return { order: state };
}

/** The status after each event, in version order (events that change the payment or shipment keep the status). */
export function statusesOf(events: readonly StoredOrderEvent[]): OrderStatus[] {
  let status: OrderStatus | null = null;
  return [...events].sort((a, b) => a.version - b.version).map((event) => (status = statusAfter(event, status)));
}

/** How often each value occurs. */
export const countsOf = (values: readonly string[]) => values.reduce((counts, value) => counts.set(value, (counts.get(value) ?? 0) + 1), new Map<string, number>());

const linesKey = (lines: readonly { productId: string; quantity: number }[]) =>
  lines
    .map((line) => `${line.productId.toLowerCase()}×${line.quantity}`)
    .sort()
    .join(',');

export function checkInvariants(facts: PlatformFacts): InvariantReport {
  const violations: Violation[] = [];
  const report: InvariantReport = { orders: facts.orders.length, byStatus: new Map(), timedOut: [], violations };
  const add = (kind: ViolationKind, subject: string, detail: string) => violations.push({ kind, subject, detail });
  const known = new Set(facts.orders.filter((o) => o.events.length > 0).map((o) => o.orderId));
  for (const id of facts.acknowledged) if (!known.has(id)) add('acknowledged', id, 'a client was given this order id, but the order has no events');

  for (const facts_ of facts.orders) {
    const { orderId } = facts_;
    const { order, problem } = foldStream(facts_.events);
    if (!order) continue;
    if (problem) add('projections', orderId, `event stream: ${problem}`);
    report.byStatus.set(order.status, (report.byStatus.get(order.status) ?? 0) + 1);
    if (order.status === 'CANCELLED' && order.reason === 'TIMEOUT') report.timedOut.push(orderId);
    if (order.status === 'PENDING') add('stuck', orderId, 'still PENDING after the quiesce');
    checkProjection(order, facts_, add);
    checkStock(order, facts_, add);
    checkPayment(order, facts_, add);
    checkShipment(order, facts_, add);
  }
  checkStockCounters(facts, add);
  return report;
}

type Add = (kind: ViolationKind, subject: string, detail: string) => void;

function checkProjection(order: Order, facts: OrderFacts, add: Add): void {
  const { summary } = facts;
  const version = Math.max(...facts.events.map((e) => e.version));
  if (!summary) return add('projections', order.id, 'no order summary');
  const itemCount = order.lines.reduce((sum, line) => sum + line.quantity, 0);
  const expected = { status: order.status, reason: order.reason, total: order.total, itemCount, version };
  const differing = (Object.keys(expected) as (keyof typeof expected)[]).filter((key) => summary[key] !== expected[key]);
  if (differing.length > 0) add('projections', order.id, `summary ${differing.map((key) => `${key} ${summary[key]} ≠ ${expected[key]}`).join(', ')}`);
  const timeline = statusesOf(facts.events).join('→');
  if (facts.timeline.join('→') !== timeline) add('projections', order.id, `timeline ${facts.timeline.join('→') || '(none)'} ≠ ${timeline}`);
}

const returnStatuses: ReadonlySet<string> = new Set(['RETURN_REQUESTED', 'RETURN_RECEIVED', 'REFUNDED', 'REFUND_FAILED']);

function checkStock(order: Order, facts: OrderFacts, add: Add): void {
  const held = facts.reservations.filter((line) => line.status === 'RESERVED' || line.status === 'COMMITTED');
  const describe = () => facts.reservations.map((r) => `${r.productId.slice(0, 8)}×${r.quantity} ${r.status}`).join(', ') || 'none';
  if (order.status === 'CANCELLED' || order.status === 'REJECTED') {
    if (held.length > 0) add('stock', order.id, `${order.status} order still holds stock: ${describe()}`);
    return;
  }
  // In flight (a cancellation waits for shipping), or returned: their lines move on by themselves.
  if (order.status === 'PENDING' || order.status === 'CANCELLING' || returnStatuses.has(order.status)) return;
  const wanted = order.status === 'CONFIRMED' ? 'RESERVED' : 'COMMITTED';
  if (facts.reservations.some((line) => line.status !== wanted) || linesKey(facts.reservations) !== linesKey(order.lines)) {
    add('stock', order.id, `${order.status} order's lines should be ${wanted} as ordered (${linesKey(order.lines)}), are: ${describe()}`);
  }
}

function checkPayment(order: Order, facts: OrderFacts, add: Add): void {
  const status = facts.payment?.status;
  if (order.status === 'CANCELLED' || order.status === 'REJECTED') {
    if (status === 'AUTHORIZED' || status === 'CAPTURED') add('payments', order.id, `${order.status} order's payment is ${status}`);
    return;
  }
  if (order.status === 'PENDING' || order.status === 'CANCELLING' || returnStatuses.has(order.status)) return;
  const wanted = order.status === 'CONFIRMED' ? 'AUTHORIZED' : 'CAPTURED';
  if (status !== wanted) add('payments', order.id, `${order.status} order's payment is ${status ?? 'missing'}, expected ${wanted}`);
  else if (facts.payment!.amount !== order.total) add('payments', order.id, `payment of ${facts.payment!.amount} for an order of ${order.total}`);
}

function checkShipment(order: Order, facts: OrderFacts, add: Add): void {
  const status = facts.shipment?.status;
  if (order.status === 'CANCELLED' || order.status === 'REJECTED') {
    if (status !== undefined && status !== 'CANCELLED') add('shipments', order.id, `${order.status} order's shipment is ${status}`);
    return;
  }
  if (order.status === 'PENDING') return;
  const allowed: Record<string, string[]> = {
    CONFIRMED: ['CREATED'],
    CANCELLING: ['CREATED', 'CANCELLED', 'DISPATCHED'],
    SHIPPED: ['DISPATCHED', 'IN_TRANSIT'],
    DELIVERED: ['DELIVERED'],
    ...Object.fromEntries([...returnStatuses].map((status) => [status, ['DELIVERED']])),
  };
  if (!status || !allowed[order.status]!.includes(status)) add('shipments', order.id, `${order.status} order's shipment is ${status ?? 'missing'}`);
  else if (linesKey(facts.shipment!.lines) !== linesKey(order.lines)) add('shipments', order.id, `shipment lines ${linesKey(facts.shipment!.lines)} ≠ order lines ${linesKey(order.lines)}`);
}

/** Each product's `reserved` counter is the sum of its RESERVED lines and its held returns (RETURNED), whichever orders they are of. */
function checkStockCounters(facts: PlatformFacts, add: Add): void {
  const sums = new Map<string, number>();
  for (const line of facts.allReservations) {
    if (line.status === 'RESERVED' || line.status === 'RETURNED') sums.set(line.productId.toLowerCase(), (sums.get(line.productId.toLowerCase()) ?? 0) + line.quantity);
  }
  const products = new Set([...sums.keys(), ...[...facts.reservedByProduct.keys()].map((id) => id.toLowerCase())]);
  const counters = new Map([...facts.reservedByProduct].map(([id, reserved]) => [id.toLowerCase(), reserved]));
  for (const product of products) {
    const counter = counters.get(product) ?? 0;
    const sum = sums.get(product) ?? 0;
    if (counter !== sum) add('stock', product, `product's reserved counter is ${counter}, its RESERVED lines sum to ${sum}`);
  }
}

// ── subscriptions ──────────────────────────────────────────────────────────────────────────

export interface SubscriberRecord {
  name: string;
  customerId: string;
  /** Wall-clock ms from which the subscriber was subscribed. */
  subscribedAt: number;
  received: { orderId: string; status: string; at: number }[];
  gaps: { from: number; to?: number; cause: string }[];
}

export interface SubscriptionReport {
  /** Status changes a subscriber should have heard. */
  expected: number;
  /** Missed while the subscriber was subscribed: the platform's loss. */
  missedWhileSubscribed: { subscriber: string; orderId: string; status: string; /** When the change was stored. */ at: number }[];
  /** Missed while the subscriber was disconnected or re-subscribing (no client resume), by the gap's cause. */
  missedWhileAway: Map<string, number>;
  /** Orders whose final status a subscriber heard, but then an older one after it. */
  staleLast: { subscriber: string; orderId: string; heard: string; final: string }[];
  /** Status changes heard more than once by one subscriber. */
  duplicates: number;
}

/**
 * Judges what each subscriber heard against the streams. A change is expected from a subscriber
 * when its order was placed after the subscriber first subscribed (`marginMs` later, so the
 * subscription's own start is not judged). It counts as missed while away when it was stored
 * within `marginMs` before a gap began or before the gap ended (a notification in flight at
 * the close is lost with the socket), else as missed while subscribed.
 */
export function checkSubscriptions(orders: readonly OrderFacts[], customerOf: ReadonlyMap<string, string>, subscribers: readonly SubscriberRecord[], marginMs = 5_000): SubscriptionReport {
  const report: SubscriptionReport = { expected: 0, missedWhileSubscribed: [], missedWhileAway: new Map(), staleLast: [], duplicates: 0 };
  for (const subscriber of subscribers) {
    const heard = new Map<string, string[]>();
    for (const update of subscriber.received) heard.set(update.orderId, [...(heard.get(update.orderId) ?? []), update.status]);
    const away = (at: number) => subscriber.gaps.find((gap) => at >= gap.from - marginMs && at <= (gap.to ?? Number.POSITIVE_INFINITY) + marginMs);
    for (const order of orders) {
      if (customerOf.get(order.orderId) !== subscriber.customerId || order.events.length === 0) continue;
      const events = [...order.events].sort((a, b) => a.version - b.version);
      if (events[0]!.occurredAt < subscriber.subscribedAt + marginMs) continue;
      const statuses = heard.get(order.orderId) ?? [];
      const along = statusesOf(events);
      // A status is heard once per event that left the order in it (a payment or shipment change keeps it): more is a duplicate.
      const expectedCounts = countsOf(along);
      for (const [status, count] of countsOf(statuses)) report.duplicates += Math.max(0, count - (expectedCounts.get(status) ?? 0));
      for (const [index, event] of events.entries()) {
        report.expected += 1;
        const status = along[index]!;
        if (statuses.includes(status)) continue;
        const gap = away(event.occurredAt);
        if (gap) report.missedWhileAway.set(gap.cause, (report.missedWhileAway.get(gap.cause) ?? 0) + 1);
        else report.missedWhileSubscribed.push({ subscriber: subscriber.name, orderId: order.orderId, status, at: event.occurredAt });
      }
      const final = along.at(-1)!;
      if (statuses.includes(final) && statuses.at(-1) !== final) {
        report.staleLast.push({ subscriber: subscriber.name, orderId: order.orderId, heard: statuses.at(-1)!, final });
      }
    }
  }
  return report;
}
