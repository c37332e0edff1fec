import { describe, expect, it } from 'vitest';
import { react, startSaga, type SagaDecision, type SagaMessage, type SagaState, type SagaStep } from '../subgraphs/orders/saga/order-saga.ts';

const initial: Omit<SagaState, 'step'> = {
  orderId: '00000000-0000-4000-8000-000000000001',
  customerId: '00000000-0000-4000-8000-000000000002',
  lines: [{ productId: '00000000-0000-4000-8000-000000000003', quantity: 2 }],
  amount: 3998,
  currency: 'EUR',
  paymentToken: 'tok_visa',
  shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
};

/** given the saga at `step`, when `message` arrives, then… */
function given(step: SagaStep) {
  const state: SagaState = { ...initial, step };
  return {
    when: (message: SagaMessage) => {
      const decision = react(state, message);
      return {
        then: (expected: { step: SagaStep; commands?: string[]; order?: SagaDecision['orderTransition']; deadline?: boolean }) => {
          expect(decision.state.step).toBe(expected.step);
          expect(decision.commands.map((c) => (c.late ? `${c.type} (late)` : c.type))).toEqual(expected.commands ?? []);
          expect(decision.orderTransition).toEqual(expected.order);
          if (expected.deadline !== undefined) expect(decision.awaitsDeadline).toBe(expected.deadline);
        },
      };
    },
  };
}

describe('the order saga', () => {
  it('starts by reserving stock, against a deadline', () => {
    const decision = startSaga(initial);
    expect(decision.state.step).toBe('RESERVING_STOCK');
    expect(decision.commands).toEqual([{ type: 'ReserveStock' }]);
    expect(decision.awaitsDeadline).toBe(true);
  });

  describe('when reserving stock', () => {
    it('authorizes the payment once the stock is reserved', () =>
      given('RESERVING_STOCK').when({ type: 'StockReserved' }).then({ step: 'AUTHORIZING_PAYMENT', commands: ['AuthorizePayment'], deadline: true }));
    it('rejects the order with the short lines when stock is missing, with nothing to undo', () =>
      given('RESERVING_STOCK')
        .when({ type: 'StockReservationRejected', payload: { orderId: initial.orderId, lines: [{ productId: initial.lines[0]!.productId, requested: 2, available: 1 }] } })
        .then({ step: 'REJECTED', order: { type: 'RejectOrder', lines: [{ productId: initial.lines[0]!.productId, requested: 2, available: 1 }] } }));
    it('releases any stock and cancels with TIMEOUT when the deadline passes', () =>
      given('RESERVING_STOCK').when({ type: 'DeadlinePassed' }).then({ step: 'CANCELLED', commands: ['ReleaseStock'], order: { type: 'CancelOrder', reason: 'TIMEOUT' } }));
    it('releases stock when the customer cancels', () =>
      given('RESERVING_STOCK').when({ type: 'CancellationRequested' }).then({ step: 'CANCELLED', commands: ['ReleaseStock'], order: { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED' } }));
  });

  describe('when authorizing the payment', () => {
    it('creates the shipment once the payment is authorized', () =>
      given('AUTHORIZING_PAYMENT').when({ type: 'PaymentAuthorized' }).then({ step: 'CREATING_SHIPMENT', commands: ['CreateShipment'], deadline: true }));
    it('releases the stock and cancels with PAYMENT_DECLINED when the payment is declined', () =>
      given('AUTHORIZING_PAYMENT').when({ type: 'PaymentDeclined' }).then({ step: 'CANCELLED', commands: ['ReleaseStock'], order: { type: 'CancelOrder', reason: 'PAYMENT_DECLINED' } }));
    it('releases the stock and voids a late authorization when the deadline passes', () =>
      given('AUTHORIZING_PAYMENT').when({ type: 'DeadlinePassed' }).then({ step: 'CANCELLED', commands: ['ReleaseStock', 'VoidPayment'], order: { type: 'CancelOrder', reason: 'TIMEOUT' } }));
  });

  describe('when creating the shipment', () => {
    it('confirms the order once the shipment exists, and waits for dispatch without a deadline', () =>
      given('CREATING_SHIPMENT').when({ type: 'ShipmentCreated' }).then({ step: 'AWAITING_DISPATCH', order: { type: 'ConfirmOrder' }, deadline: false }));
    it('undoes stock, payment and shipment when the deadline passes', () =>
      given('CREATING_SHIPMENT').when({ type: 'DeadlinePassed' }).then({ step: 'CANCELLED', commands: ['ReleaseStock', 'VoidPayment', 'CancelShipment'], order: { type: 'CancelOrder', reason: 'TIMEOUT' } }));
  });

  describe('when confirmed and awaiting dispatch', () => {
    it('captures the payment, commits the stock and marks the order shipped at dispatch', () =>
      given('AWAITING_DISPATCH').when({ type: 'ShipmentDispatched' }).then({ step: 'AWAITING_DELIVERY', commands: ['CapturePayment', 'CommitStock'], order: { type: 'MarkShipped' } }));
    it('undoes stock, payment and shipment when the customer cancels', () =>
      given('AWAITING_DISPATCH').when({ type: 'CancellationRequested' }).then({ step: 'CANCELLED', commands: ['ReleaseStock', 'VoidPayment', 'CancelShipment'], order: { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED' } }));
    it('has no deadline to miss', () => given('AWAITING_DISPATCH').when({ type: 'DeadlinePassed' }).then({ step: 'AWAITING_DISPATCH' }));
  });

  describe('when shipped', () => {
    it('marks the order delivered on delivery and ends', () =>
      given('AWAITING_DELIVERY').when({ type: 'ShipmentDelivered' }).then({ step: 'COMPLETED', order: { type: 'MarkDelivered' } }));
    it('leaves a cancellation to the order rules, which refuse it, and compensates nothing', () =>
      given('AWAITING_DELIVERY').when({ type: 'CancellationRequested' }).then({ step: 'AWAITING_DELIVERY', order: { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED' } }));
  });

  describe('when it already ended', () => {
    it('voids an authorization that arrives after a timeout, under a command id of its own', () =>
      given('CANCELLED').when({ type: 'PaymentAuthorized' }).then({ step: 'CANCELLED', commands: ['VoidPayment (late)'] }));
    it('releases a reservation that arrives after a timeout', () =>
      given('CANCELLED').when({ type: 'StockReserved' }).then({ step: 'CANCELLED', commands: ['ReleaseStock (late)'] }));
    it('cancels a shipment created after a timeout', () =>
      given('CANCELLED').when({ type: 'ShipmentCreated' }).then({ step: 'CANCELLED', commands: ['CancelShipment (late)'] }));
    it('ignores anything once the order was delivered', () => given('COMPLETED').when({ type: 'PaymentAuthorized' }).then({ step: 'COMPLETED' }));
    it('ignores a replayed reply of a step it has passed', () => given('AWAITING_DISPATCH').when({ type: 'StockReserved' }).then({ step: 'AWAITING_DISPATCH' }));
  });
});
