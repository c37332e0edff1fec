/**
 * The chaos benchmark's invariant check (scripts/bench/chaos-invariants.ts) on hand-made facts:
 * a consistent platform passes, and each kind of inconsistency the fault campaign of issue 10
 * found (stock held by a cancelled order, a payment left authorized, a shipment left created, a
 * read model behind its stream, a lost order, a missed subscription event) is reported as such.
 */
import { describe, expect, it } from 'vitest';
import { checkInvariants, checkSubscriptions, type OrderFacts, type PlatformFacts, type StoredOrderEvent } from '../scripts/bench/chaos-invariants.ts';

const productA = '00000000-0000-4000-8000-00000000000a';
const productB = '00000000-0000-4000-8000-00000000000b';
const customer = '00000000-0000-4000-8000-0000000000cc';
const t0 = Date.parse('2026-12-07T12:00:00Z');
const address = { name: 'N', line1: 'L', line2: null, city: 'C', postalCode: '1', country: 'DE' };

function placed(orderId: string, at = t0): StoredOrderEvent {
  return {
    version: 1,
    type: 'OrderPlaced',
    data: {
      orderId,
      customerId: customer,
      lines: [
        { productId: productA, quantity: 2, unitPrice: 100 },
        { productId: productB, quantity: 1, unitPrice: 50 },
      ],
      currency: 'EUR',
      total: 250,
      shippingAddress: address,
      idempotencyKey: `key-${orderId}`,
      at: new Date(at).toISOString(),
    },
    occurredAt: at,
  };
}

const then = (version: number, type: 'OrderConfirmed' | 'OrderCancelled', at: number, reason?: string): StoredOrderEvent => ({
  version,
  type,
  data: (type === 'OrderCancelled' ? { reason, at: new Date(at).toISOString() } : { at: new Date(at).toISOString() }) as StoredOrderEvent['data'],
  occurredAt: at,
});

/** A CONFIRMED order as every context should hold it. */
function confirmed(orderId: string, at = t0): OrderFacts {
  return {
    orderId,
    events: [placed(orderId, at), then(2, 'OrderConfirmed', at + 1_000)],
    summary: { status: 'CONFIRMED', reason: null, total: 250, itemCount: 3, version: 2 },
    timeline: ['PENDING', 'CONFIRMED'],
    reservations: [
      { productId: productA, quantity: 2, status: 'RESERVED' },
      { productId: productB, quantity: 1, status: 'RESERVED' },
    ],
    payment: { status: 'AUTHORIZED', amount: 250 },
    shipment: { status: 'CREATED', lines: [{ productId: productB, quantity: 1 }, { productId: productA, quantity: 2 }] },
  };
}

/** A customer-cancelled order, fully compensated. */
function cancelled(orderId: string, reason = 'CUSTOMER_CANCELLED'): OrderFacts {
  return {
    orderId,
    events: [placed(orderId), then(2, 'OrderCancelled', t0 + 2_000, reason)],
    summary: { status: 'CANCELLED', reason, total: 250, itemCount: 3, version: 2 },
    timeline: ['PENDING', 'CANCELLED'],
    reservations: [
      { productId: productA, quantity: 2, status: 'RELEASED' },
      { productId: productB, quantity: 1, status: 'RELEASED' },
    ],
    payment: { status: 'VOIDED', amount: 250 },
    shipment: { status: 'CANCELLED', lines: [] },
  };
}

/** The facts of these orders, with stock counters that match their reservations. */
function platformOf(orders: OrderFacts[], acknowledged = orders.map((o) => o.orderId)): PlatformFacts {
  const allReservations = orders.flatMap((o) => o.reservations);
  const reservedByProduct = new Map([productA, productB].map((p) => [p, allReservations.filter((r) => r.productId === p && r.status === 'RESERVED').reduce((s, r) => s + r.quantity, 0)]));
  return { orders, reservedByProduct, allReservations, acknowledged };
}

const kindsOf = (facts: PlatformFacts) => checkInvariants(facts).violations.map((v) => v.kind);

describe('the chaos benchmark invariant check', () => {
  it('finds nothing wrong with a confirmed and a fully compensated cancelled order', () => {
    const report = checkInvariants(platformOf([confirmed('00000000-0000-4000-8000-000000000001'), cancelled('00000000-0000-4000-8000-000000000002')]));
    expect(report.violations).toEqual([]);
    expect(Object.fromEntries(report.byStatus)).toEqual({ CONFIRMED: 1, CANCELLED: 1 });
    expect(report.timedOut).toEqual([]);
  });

  it('reports stock still held, a payment left authorized and a shipment left created by a cancelled order', () => {
    const order = cancelled('00000000-0000-4000-8000-000000000003');
    order.reservations[0]!.status = 'RESERVED';
    order.payment!.status = 'AUTHORIZED';
    order.shipment!.status = 'CREATED';
    expect(kindsOf(platformOf([order])).sort()).toEqual(['payments', 'shipments', 'stock']);
  });

  it("reports a product's reserved counter that disagrees with its reservation lines", () => {
    const facts = platformOf([confirmed('00000000-0000-4000-8000-000000000004')]);
    facts.reservedByProduct.set(productA, 7);
    expect(checkInvariants(facts).violations).toEqual([{ kind: 'stock', subject: productA, detail: "product's reserved counter is 7, its RESERVED lines sum to 2" }]);
  });

  it('reports a confirmed order missing its payment, paid the wrong amount, or shipping other lines', () => {
    const unpaid = confirmed('00000000-0000-4000-8000-000000000005');
    delete unpaid.payment;
    const wrongAmount = confirmed('00000000-0000-4000-8000-000000000006');
    wrongAmount.payment!.amount = 249;
    const otherLines = confirmed('00000000-0000-4000-8000-000000000007');
    otherLines.shipment!.lines = [{ productId: productA, quantity: 2 }];
    expect(kindsOf(platformOf([unpaid, wrongAmount, otherLines]))).toEqual(['payments', 'payments', 'shipments']);
  });

  it('reports a read model behind its stream, and a timeline that lost a status', () => {
    const behind = confirmed('00000000-0000-4000-8000-000000000008');
    behind.summary = { ...behind.summary!, status: 'PENDING', version: 1 };
    const gap = confirmed('00000000-0000-4000-8000-000000000009');
    gap.timeline = ['CONFIRMED'];
    const violations = checkInvariants(platformOf([behind, gap])).violations;
    expect(violations.map((v) => v.kind)).toEqual(['projections', 'projections']);
    expect(violations[0]!.detail).toBe('summary status PENDING ≠ CONFIRMED, version 1 ≠ 2');
  });

  it('reports an order a client was given an id for that does not exist, and an order still PENDING', () => {
    const pending = confirmed('00000000-0000-4000-8000-00000000000a');
    pending.events = pending.events.slice(0, 1);
    pending.summary = { ...pending.summary!, status: 'PENDING', version: 1 };
    pending.timeline = ['PENDING'];
    const lost = '00000000-0000-4000-8000-0000000000ff';
    expect(kindsOf(platformOf([pending], [pending.orderId, lost])).sort()).toEqual(['acknowledged', 'stuck']);
  });

  it('counts orders cancelled as TIMEOUT apart from the violations', () => {
    const report = checkInvariants(platformOf([cancelled('00000000-0000-4000-8000-00000000000b', 'TIMEOUT')]));
    expect(report.violations).toEqual([]);
    expect(report.timedOut).toEqual(['00000000-0000-4000-8000-00000000000b']);
  });
});

describe('the chaos benchmark subscription check', () => {
  const order = confirmed('00000000-0000-4000-8000-000000000010', t0 + 60_000);
  const customerOf = new Map([[order.orderId, customer]]);
  const subscriber = (received: { status: string; at: number }[], gaps: { from: number; to?: number; cause: string }[] = []) => ({
    name: 'subscriber 0',
    customerId: customer,
    subscribedAt: t0,
    received: received.map((r) => ({ orderId: order.orderId, ...r })),
    gaps,
  });

  it('is satisfied when a subscriber heard every status of its orders, in order', () => {
    const report = checkSubscriptions([order], customerOf, [subscriber([{ status: 'PENDING', at: t0 + 60_100 }, { status: 'CONFIRMED', at: t0 + 61_100 }])]);
    expect(report).toEqual({ expected: 2, missedWhileSubscribed: [], missedWhileAway: new Map(), staleLast: [], duplicates: 0 });
  });

  it('reports a change missed while subscribed as the platform losing it', () => {
    const report = checkSubscriptions([order], customerOf, [subscriber([{ status: 'PENDING', at: t0 + 60_100 }])]);
    expect(report.missedWhileSubscribed).toEqual([{ subscriber: 'subscriber 0', orderId: order.orderId, status: 'CONFIRMED', at: t0 + 61_000 }]);
  });

  it('counts a change missed while the client itself was reconnecting apart', () => {
    const report = checkSubscriptions([order], customerOf, [subscriber([{ status: 'PENDING', at: t0 + 60_100 }], [{ from: t0 + 60_500, to: t0 + 62_000, cause: 'socket closed' }])]);
    expect(report.missedWhileSubscribed).toEqual([]);
    expect(report.missedWhileAway).toEqual(new Map([['socket closed', 1]]));
  });

  it('reports an older status heard after the final one, and a status heard twice', () => {
    const report = checkSubscriptions([order], customerOf, [
      subscriber([
        { status: 'CONFIRMED', at: t0 + 61_100 },
        { status: 'PENDING', at: t0 + 61_200 },
        { status: 'PENDING', at: t0 + 61_300 },
      ]),
    ]);
    expect(report.staleLast).toEqual([{ subscriber: 'subscriber 0', orderId: order.orderId, heard: 'PENDING', final: 'CONFIRMED' }]);
    expect(report.duplicates).toBe(1);
  });
});
