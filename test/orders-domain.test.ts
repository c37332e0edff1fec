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
