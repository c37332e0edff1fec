/**
 * The Order aggregate's rules, without a database: given the events so far, when a command
 * arrives, then these events (or this refusal). Grouped by the state the order is in.
 */
import { describe, expect, it } from 'vitest';
import { DomainError } from '../platform/errors/domain-error.ts';
import {
  checkLines,
  checkShippingAddress,
  decide,
  fold,
  maxOrderTotal,
  type OrderCommand,
  type OrderEvent,
  type PricedLine,
} from '../subgraphs/orders/domain/order.ts';

const orderId = '0b8e4a52-3f6c-4f7e-9d1a-2c5b7e8f9a01';
const customerId = '7d2c9e1f-5a4b-4c3d-8e7f-6a5b4c3d2e1f';
const hammer = '11111111-1111-4111-8111-111111111111';
const nails = '22222222-2222-4222-8222-222222222222';
const address = { name: 'Ada Lovelace', line1: '12 St James Square', line2: null, city: 'London', postalCode: 'SW1Y 4JH', country: 'GB' };
const lines: PricedLine[] = [
  { productId: hammer, quantity: 1, unitPrice: 1_999 },
  { productId: nails, quantity: 3, unitPrice: 250 },
];
const at = (minute: number) => `2026-11-21T10:${String(minute).padStart(2, '0')}:00.000Z`;

const placeOrder = (overrides: Partial<Extract<OrderCommand, { type: 'PlaceOrder' }>> = {}): OrderCommand => ({
  type: 'PlaceOrder',
  orderId,
  customerId,
  lines,
  currency: 'EUR',
  shippingAddress: address,
  idempotencyKey: 'key-1',
  at: at(0),
  ...overrides,
});

const placed: OrderEvent = {
  type: 'OrderPlaced',
  data: { orderId, customerId, lines, currency: 'EUR', total: 2_749, shippingAddress: address, idempotencyKey: 'key-1', at: at(0) },
};
const confirmed: OrderEvent = { type: 'OrderConfirmed', data: { at: at(1) } };
const rejected: OrderEvent = { type: 'OrderRejected', data: { reason: 'OUT_OF_STOCK', lines: [{ productId: nails, requested: 3, available: 1 }], at: at(1) } };
const cancelled: OrderEvent = { type: 'OrderCancelled', data: { reason: 'CUSTOMER_CANCELLED', at: at(2) } };
const shipped: OrderEvent = { type: 'OrderShipped', data: { at: at(3) } };
const delivered: OrderEvent = { type: 'OrderDelivered', data: { at: at(4) } };

const confirm: OrderCommand = { type: 'ConfirmOrder', at: at(1) };
const reject: OrderCommand = { type: 'RejectOrder', lines: [{ productId: nails, requested: 3, available: 1 }], at: at(1) };
const cancel: OrderCommand = { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED', at: at(2) };
const ship: OrderCommand = { type: 'MarkShipped', at: at(3) };
const deliver: OrderCommand = { type: 'MarkDelivered', at: at(4) };

/** given(events).when(command).then(events) | .thenRefuses(code, message) */
function given(...history: OrderEvent[]) {
  return {
    when(command: OrderCommand) {
      return {
        then(expected: OrderEvent[]) {
          expect(decide(command, fold(history))).toEqual(expected);
        },
        thenRefuses(code: DomainError['code'], message?: RegExp, field?: string) {
          let refusal: unknown;
          try {
            decide(command, fold(history));
          } catch (error) {
            refusal = error;
          }
          expect(refusal).toBeInstanceOf(DomainError);
          expect((refusal as DomainError).code).toBe(code);
          if (message) expect((refusal as DomainError).message).toMatch(message);
          if (field) expect((refusal as DomainError).field).toBe(field);
        },
      };
    },
  };
}

describe('When the order does not exist yet', () => {
  it('places it: OrderPlaced with the total of quantity × unit price', () => {
    given().when(placeOrder()).then([placed]);
  });

  it('refuses an order without lines', () => {
    given().when(placeOrder({ lines: [] })).thenRefuses('BAD_USER_INPUT', /1 to 50 lines/, 'input.lines');
  });

  it('refuses more than 50 lines', () => {
    const many = Array.from({ length: 51 }, (_, i) => ({ productId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, quantity: 1, unitPrice: 1 }));
    given().when(placeOrder({ lines: many })).thenRefuses('BAD_USER_INPUT', /1 to 50 lines/, 'input.lines');
  });

  it.each([0, 100, 1.5, -1])('refuses a quantity of %s, naming the line', (quantity) => {
    given()
      .when(placeOrder({ lines: [lines[0]!, { ...lines[1]!, quantity }] }))
      .thenRefuses('BAD_USER_INPUT', /Quantity must be 1 to 99/, 'input.lines[1].quantity');
  });

  it('refuses the same product on two lines', () => {
    given()
      .when(placeOrder({ lines: [lines[0]!, { ...lines[0]!, quantity: 2 }] }))
      .thenRefuses('BAD_USER_INPUT', /more than one line/, 'input.lines[1].productId');
  });

  it('refuses a total beyond what an order can carry', () => {
    given()
      .when(placeOrder({ lines: [{ productId: hammer, quantity: 99, unitPrice: Math.ceil(maxOrderTotal / 99) + 1 }] }))
      .thenRefuses('BAD_USER_INPUT', /total/, 'input.lines');
  });

  it('refuses an address without a city, and a country that is not a two-letter code', () => {
    given().when(placeOrder({ shippingAddress: { ...address, city: '  ' } })).thenRefuses('BAD_USER_INPUT', /city/, 'input.shippingAddress.city');
    given().when(placeOrder({ shippingAddress: { ...address, country: 'Germany' } })).thenRefuses('BAD_USER_INPUT', /ISO 3166-1/, 'input.shippingAddress.country');
  });

  it.each([
    ['confirming', confirm],
    ['cancelling', cancel],
    ['shipping', ship],
  ])('answers NOT_FOUND to %s it', (_label, command) => {
    given().when(command).thenRefuses('NOT_FOUND');
  });
});

describe('When pending', () => {
  it('is confirmed: OrderConfirmed', () => {
    given(placed).when(confirm).then([confirmed]);
  });

  it('is rejected for lack of stock: OrderRejected with the lines short of stock', () => {
    given(placed).when(reject).then([rejected]);
  });

  it('is cancelled: OrderCancelled with the reason', () => {
    given(placed).when(cancel).then([cancelled]);
    given(placed).when({ type: 'CancelOrder', reason: 'TIMEOUT', at: at(9) }).then([{ type: 'OrderCancelled', data: { reason: 'TIMEOUT', at: at(9) } }]);
  });

  it('cannot be placed again: CONFLICT', () => {
    given(placed).when(placeOrder()).thenRefuses('CONFLICT', /exists already/);
  });

  it('cannot be shipped before it is confirmed: CONFLICT', () => {
    given(placed).when(ship).thenRefuses('CONFLICT', /Cannot ship an order that is pending/);
  });

  it('cannot be delivered: CONFLICT', () => {
    given(placed).when(deliver).thenRefuses('CONFLICT');
  });
});

describe('When confirmed', () => {
  it('is shipped: OrderShipped', () => {
    given(placed, confirmed).when(ship).then([shipped]);
  });

  it('can still be cancelled (the saga refunds): OrderCancelled', () => {
    given(placed, confirmed).when(cancel).then([cancelled]);
  });

  it('cannot be confirmed twice or rejected: CONFLICT', () => {
    given(placed, confirmed).when(confirm).thenRefuses('CONFLICT', /Cannot confirm an order that is confirmed/);
    given(placed, confirmed).when(reject).thenRefuses('CONFLICT');
  });
});

describe('When rejected', () => {
  it('cannot be confirmed, cancelled or shipped: CONFLICT', () => {
    given(placed, rejected).when(confirm).thenRefuses('CONFLICT', /rejected/);
    given(placed, rejected).when(cancel).thenRefuses('CONFLICT', /Cannot cancel an order that is rejected/);
    given(placed, rejected).when(ship).thenRefuses('CONFLICT');
  });
});

describe('When cancelled', () => {
  it('cannot be confirmed: CONFLICT', () => {
    given(placed, cancelled).when(confirm).thenRefuses('CONFLICT', /Cannot confirm an order that is cancelled/);
  });

  it('cannot be cancelled again, rejected or shipped: CONFLICT', () => {
    given(placed, cancelled).when(cancel).thenRefuses('CONFLICT');
    given(placed, cancelled).when(reject).thenRefuses('CONFLICT');
    given(placed, confirmed, cancelled).when(ship).thenRefuses('CONFLICT');
  });
});

describe('When shipped', () => {
  it('is delivered: OrderDelivered', () => {
    given(placed, confirmed, shipped).when(deliver).then([delivered]);
  });

  it('cannot be cancelled any more: CONFLICT', () => {
    given(placed, confirmed, shipped).when(cancel).thenRefuses('CONFLICT', /Cannot cancel an order that is shipped/);
  });
});

describe('When delivered', () => {
  it('cannot be cancelled: CONFLICT', () => {
    given(placed, confirmed, shipped, delivered).when(cancel).thenRefuses('CONFLICT', /Cannot cancel an order that is delivered/);
  });

  it('cannot be shipped or delivered again: CONFLICT', () => {
    given(placed, confirmed, shipped, delivered).when(ship).thenRefuses('CONFLICT');
    given(placed, confirmed, shipped, delivered).when(deliver).thenRefuses('CONFLICT');
  });
});

describe('evolving the state from the events', () => {
  it('a placed order is pending, with its lines, total and address', () => {
    expect(fold([placed])).toEqual({
      id: orderId,
      customerId,
      status: 'PENDING',
      lines,
      currency: 'EUR',
      total: 2_749,
      shippingAddress: address,
      idempotencyKey: 'key-1',
      reason: null,
      rejectedLines: [],
      cancellation: null,
      paymentStatus: null,
      shipmentStatus: null,
      deliveredAt: null,
      placedAt: at(0),
      updatedAt: at(0),
    });
  });

  it('follows each status change and records when it happened', () => {
    expect(fold([placed, confirmed, shipped, delivered])).toMatchObject({ status: 'DELIVERED', reason: null, placedAt: at(0), updatedAt: at(4) });
  });

  it('keeps the reason of a rejection and the lines that were short', () => {
    expect(fold([placed, rejected])).toMatchObject({ status: 'REJECTED', reason: 'OUT_OF_STOCK', rejectedLines: rejected.data.lines });
  });

  it('keeps the reason of a cancellation', () => {
    expect(fold([placed, cancelled])).toMatchObject({ status: 'CANCELLED', reason: 'CUSTOMER_CANCELLED', updatedAt: at(2) });
  });

  it('refuses a stream that does not start with OrderPlaced', () => {
    expect(() => fold([confirmed])).toThrow(/before OrderPlaced/);
  });
});

describe('checking what a customer sends, before pricing', () => {
  it('accepts lines of distinct products with 1 to 99 units', () => {
    expect(checkLines([{ productId: hammer, quantity: 99 }, { productId: nails, quantity: 1 }])).toHaveLength(2);
  });

  it('trims the address and upper-cases the country', () => {
    expect(checkShippingAddress({ ...address, name: '  Ada  ', line2: '  ', country: 'gb' })).toEqual({ ...address, name: 'Ada', line2: null, country: 'GB' });
  });
});

describe('A cancellation request (resolved by the saga)', () => {
  const request: OrderCommand = { type: 'RequestCancellation', at: at(2) };
  const requested: OrderEvent = { type: 'CancellationRequested', data: { at: at(2) } };

  it('puts a pending or confirmed order in CANCELLING, and asking again changes nothing', () => {
    given(placed).when(request).then([requested]);
    given(placed, confirmed).when(request).then([requested]);
    given(placed, confirmed, requested).when(request).then([]);
    expect(fold([placed, confirmed, requested])).toMatchObject({ status: 'CANCELLING', cancellation: { requestedAt: at(2), outcome: 'PENDING', refusal: null, resolvedAt: null } });
  });

  it('is refused with CANCELLATION_REFUSED once the order was dispatched', () => {
    for (const history of [[placed, confirmed, shipped], [placed, confirmed, shipped, delivered]]) {
      given(...history).when(request).thenRefuses('CANCELLATION_REFUSED', /dispatched already/);
    }
  });

  it('ends CANCELLED with the request accepted once shipping stopped the shipment', () => {
    given(placed, confirmed, requested).when(cancel).then([cancelled]);
    // Shipping's answer cancelled it: the order knows its shipment is cancelled, so a repeat of that answer adds nothing.
    const stopped: OrderEvent = { type: 'OrderCancelled', data: { reason: 'CUSTOMER_CANCELLED', at: at(2), shipmentStatus: 'CANCELLED' } };
    given(placed, confirmed, requested).when({ ...cancel, shipmentStatus: 'CANCELLED' } as OrderCommand).then([stopped]);
    given(placed, confirmed, requested, stopped).when({ type: 'RecordShipment', status: 'CANCELLED', at: at(3) }).then([]);
    expect(fold([placed, confirmed, requested, cancelled])).toMatchObject({ status: 'CANCELLED', reason: 'CUSTOMER_CANCELLED', cancellation: { outcome: 'ACCEPTED', resolvedAt: at(2) } });
  });

  it('is refused and the order ships when shipping had dispatched it already', () => {
    const refused: OrderEvent = { type: 'CancellationRefused', data: { reason: 'ALREADY_DISPATCHED', at: at(3) } };
    given(placed, confirmed, requested).when(ship).then([refused, shipped]);
    expect(fold([placed, confirmed, requested, refused])).toMatchObject({ status: 'CANCELLING', cancellation: { outcome: 'REFUSED', refusal: 'ALREADY_DISPATCHED' } });
    expect(fold([placed, confirmed, requested, refused, shipped])).toMatchObject({ status: 'SHIPPED', reason: null, cancellation: { outcome: 'REFUSED', refusal: 'ALREADY_DISPATCHED', resolvedAt: at(3) } });
  });
});

describe('A return', () => {
  const day = 86_400_000;
  const deliveredAt = Date.parse(at(4));
  const askAt = (ms: number) => new Date(deliveredAt + ms).toISOString();
  const returnRequested: OrderEvent = { type: 'ReturnRequested', data: { at: at(5) } };
  const received: OrderEvent = { type: 'ReturnReceived', data: { at: at(6) } };

  it('may be asked within the window after delivery, and asking again changes nothing', () => {
    given(placed, confirmed, shipped, delivered).when({ type: 'RequestReturn', at: askAt(30 * day), windowMs: 30 * day }).then([{ type: 'ReturnRequested', data: { at: askAt(30 * day) } }]);
    given(placed, confirmed, shipped, delivered, returnRequested).when({ type: 'RequestReturn', at: at(6), windowMs: 30 * day }).then([]);
  });

  it('is refused after the window, and before delivery', () => {
    given(placed, confirmed, shipped, delivered).when({ type: 'RequestReturn', at: askAt(30 * day + 1), windowMs: 30 * day }).thenRefuses('CONFLICT', /within 30 days of its delivery/);
    given(placed, confirmed, shipped).when({ type: 'RequestReturn', at: at(5), windowMs: 30 * day }).thenRefuses('CONFLICT', /Cannot return an order that is shipped/);
  });

  it('is received only when asked for, then refunded or failed with the reason', () => {
    given(placed, confirmed, shipped, delivered).when({ type: 'ReceiveReturn', at: at(6) }).thenRefuses('CONFLICT');
    given(placed, confirmed, shipped, delivered, returnRequested).when({ type: 'ReceiveReturn', at: at(6) }).then([received]);
    given(placed, confirmed, shipped, delivered, returnRequested, received).when({ type: 'MarkRefunded', at: at(7) }).then([{ type: 'OrderRefunded', data: { amount: 2_749, at: at(7) } }]);
    const failed: OrderEvent = { type: 'RefundFailed', data: { reason: 'REFUND_DECLINED', at: at(7) } };
    given(placed, confirmed, shipped, delivered, returnRequested, received).when({ type: 'MarkRefundFailed', reason: 'REFUND_DECLINED', at: at(7) }).then([failed]);
    expect(fold([placed, confirmed, shipped, delivered, returnRequested, received, failed])).toMatchObject({ status: 'REFUND_FAILED', reason: 'REFUND_DECLINED', paymentStatus: 'REFUND_FAILED' });
  });
});

describe('Payment and shipment states the order learns', () => {
  it('are recorded when new and dropped when the order knows them already', () => {
    given(placed).when({ type: 'RecordPayment', status: 'AUTHORIZED', at: at(1) }).then([{ type: 'PaymentUpdated', data: { status: 'AUTHORIZED', at: at(1) } }]);
    given(placed, { type: 'PaymentUpdated', data: { status: 'AUTHORIZED', at: at(1) } }).when({ type: 'RecordPayment', status: 'AUTHORIZED', at: at(2) }).then([]);
    // Confirming means the shipment was created: a late repeat of ShipmentCreated changes nothing.
    given(placed, confirmed).when({ type: 'RecordShipment', status: 'CREATED', at: at(2) }).then([]);
    given(placed, confirmed, cancelled).when({ type: 'RecordShipment', status: 'CANCELLED', at: at(3) }).then([{ type: 'ShipmentUpdated', data: { status: 'CANCELLED', at: at(3) } }]);
  });

  it('keep the status and the time it last changed', () => {
    expect(fold([placed, confirmed, { type: 'PaymentUpdated', data: { status: 'VOIDED', at: at(9) } }])).toMatchObject({ status: 'CONFIRMED', paymentStatus: 'VOIDED', updatedAt: at(1) });
  });
});
