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
function given(step: SagaStep, extra: Partial<SagaState> = {}) {
  const state: SagaState = { ...initial, ...extra, step };
  return {
    when: (message: SagaMessage) => {
      const decision = react(state, message);
      return {
        then: (expected: { step: SagaStep; commands?: string[]; order?: SagaDecision['orderTransition']; deadline?: boolean; state?: Partial<SagaState> }) => {
          expect(decision.state.step).toBe(expected.step);
          if (expected.state) expect(decision.state).toMatchObject(expected.state);
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
    it('creates the shipment once the payment is authorized, and tells the order its payment is authorized', () =>
      given('AUTHORIZING_PAYMENT')
        .when({ type: 'PaymentAuthorized' })
        .then({ step: 'CREATING_SHIPMENT', commands: ['CreateShipment'], order: { type: 'RecordPayment', status: 'AUTHORIZED' }, deadline: true }));
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
    it('asks shipping to stop the shipment when the customer cancels, and waits for its answer without a deadline', () =>
      given('AWAITING_DISPATCH')
        .when({ type: 'CancellationRequested' })
        .then({ step: 'CANCELLING', commands: ['CancelShipment'], deadline: false, state: { cancelShipmentSent: true } }));
    it('has no deadline to miss', () => given('AWAITING_DISPATCH').when({ type: 'DeadlinePassed' }).then({ step: 'AWAITING_DISPATCH' }));
  });

  describe('when shipped', () => {
    it('marks the order delivered on delivery and ends', () =>
      given('AWAITING_DELIVERY').when({ type: 'ShipmentDelivered' }).then({ step: 'COMPLETED', order: { type: 'MarkDelivered' } }));
    it('leaves a cancellation to the order rules, which refuse it first, and compensates nothing', () =>
      given('AWAITING_DELIVERY').when({ type: 'CancellationRequested' }).then({ step: 'AWAITING_DELIVERY' }));
    it('tells the order of a payment captured and a shipment in transit', () => {
      given('AWAITING_DELIVERY').when({ type: 'PaymentCaptured' }).then({ step: 'AWAITING_DELIVERY', order: { type: 'RecordPayment', status: 'CAPTURED' } });
      given('AWAITING_DELIVERY').when({ type: 'ShipmentInTransit' }).then({ step: 'AWAITING_DELIVERY', order: { type: 'RecordShipment', status: 'IN_TRANSIT' } });
    });
  });

  describe('when a cancellation waits for shipping', () => {
    it('asks to stop the shipment only once it exists, when the customer cancelled while it was being created', () => {
      given('CREATING_SHIPMENT').when({ type: 'CancellationRequested' }).then({ step: 'CANCELLING', deadline: true, state: { cancelShipmentSent: false } });
      given('CANCELLING', { cancelShipmentSent: false })
        .when({ type: 'ShipmentCreated' })
        .then({ step: 'CANCELLING', commands: ['CancelShipment'], order: { type: 'RecordShipment', status: 'CREATED' }, deadline: false, state: { cancelShipmentSent: true } });
    });
    it('cancels the order and undoes stock and payment once shipping stopped the shipment', () =>
      given('CANCELLING', { cancelShipmentSent: true })
        .when({ type: 'ShipmentCancelled' })
        .then({ step: 'CANCELLED', commands: ['ReleaseStock', 'VoidPayment'], order: { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED', shipmentStatus: 'CANCELLED' } }));
    it('refuses the cancellation and ships the order when shipping had dispatched it already', () =>
      given('CANCELLING', { cancelShipmentSent: true })
        .when({ type: 'ShipmentDispatched' })
        .then({ step: 'AWAITING_DELIVERY', commands: ['CapturePayment', 'CommitStock'], order: { type: 'MarkShipped' } }));
    it('undoes everything when the shipment is not confirmed in time', () =>
      given('CANCELLING', { cancelShipmentSent: false })
        .when({ type: 'DeadlinePassed' })
        .then({ step: 'CANCELLED', commands: ['ReleaseStock', 'VoidPayment', 'CancelShipment'], order: { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED' } }));
    it('has no deadline once CancelShipment went out: shipping always answers', () =>
      given('CANCELLING', { cancelShipmentSent: true }).when({ type: 'DeadlinePassed' }).then({ step: 'CANCELLING', deadline: false }));
  });

  describe('when a delivered order is returned', () => {
    it('holds the returned units and refunds the payment once the parcel arrives', () =>
      given('COMPLETED')
        .when({ type: 'ReturnReceived' })
        .then({ step: 'RETURNING', commands: ['ReceiveReturnedStock', 'RefundPayment'], order: { type: 'ReceiveReturn' }, deadline: false, state: { refund: 'PENDING', returnHeld: false } }));
    it('marks the order refunded and puts the held units on sale again', () => {
      given('RETURNING', { refund: 'PENDING', returnHeld: true }).when({ type: 'PaymentRefunded' }).then({ step: 'RETURNING', commands: ['RestockReturn'], order: { type: 'MarkRefunded' } });
      given('RETURNING', { refund: 'REFUNDED', returnHeld: true }).when({ type: 'StockRestocked' }).then({ step: 'RETURNED' });
    });
    it('waits for the units to be held before restocking them, whichever answer comes first', () => {
      given('RETURNING', { refund: 'PENDING', returnHeld: false }).when({ type: 'PaymentRefunded' }).then({ step: 'RETURNING', order: { type: 'MarkRefunded' }, state: { refund: 'REFUNDED' } });
      given('RETURNING', { refund: 'REFUNDED', returnHeld: false }).when({ type: 'ReturnedStockReceived' }).then({ step: 'RETURNING', commands: ['RestockReturn'], state: { returnHeld: true } });
    });
    it('writes the held units off (the compensation) and marks the refund failed when the provider declines it', () => {
      given('RETURNING', { refund: 'PENDING', returnHeld: true })
        .when({ type: 'PaymentRefundFailed' })
        .then({ step: 'RETURNING', commands: ['WriteOffReturn'], order: { type: 'MarkRefundFailed', reason: 'REFUND_DECLINED' } });
      given('RETURNING', { refund: 'FAILED', returnHeld: false }).when({ type: 'ReturnedStockReceived' }).then({ step: 'RETURNING', commands: ['WriteOffReturn'] });
      given('RETURNING', { refund: 'FAILED', returnHeld: true }).when({ type: 'ReturnWrittenOff' }).then({ step: 'RETURNED' });
    });
    it('takes a return only of a completed saga', () => {
      given('AWAITING_DELIVERY').when({ type: 'ReturnReceived' }).then({ step: 'AWAITING_DELIVERY' });
      given('RETURNED').when({ type: 'ReturnReceived' }).then({ step: 'RETURNED' });
    });
  });

  describe('when it already ended', () => {
    it('voids an authorization that arrives after a timeout, under a command id of its own', () =>
      given('CANCELLED').when({ type: 'PaymentAuthorized' }).then({ step: 'CANCELLED', commands: ['VoidPayment (late)'], order: { type: 'RecordPayment', status: 'AUTHORIZED' } }));
    it('tells the order of its payment voided and its shipment cancelled after it was cancelled', () => {
      given('CANCELLED').when({ type: 'PaymentVoided' }).then({ step: 'CANCELLED', order: { type: 'RecordPayment', status: 'VOIDED' } });
      given('CANCELLED').when({ type: 'ShipmentCancelled' }).then({ step: 'CANCELLED', order: { type: 'RecordShipment', status: 'CANCELLED' } });
    });
    it('releases a reservation that arrives after a timeout', () =>
      given('CANCELLED').when({ type: 'StockReserved' }).then({ step: 'CANCELLED', commands: ['ReleaseStock (late)'] }));
    it('cancels a shipment created after a timeout', () =>
      given('CANCELLED').when({ type: 'ShipmentCreated' }).then({ step: 'CANCELLED', commands: ['CancelShipment (late)'], order: { type: 'RecordShipment', status: 'CREATED' } }));
    it('sends nothing once the order was delivered', () =>
      given('COMPLETED').when({ type: 'PaymentCaptured' }).then({ step: 'COMPLETED', order: { type: 'RecordPayment', status: 'CAPTURED' } }));
    it('ignores a replayed reply of a step it has passed', () => given('AWAITING_DISPATCH').when({ type: 'StockReserved' }).then({ step: 'AWAITING_DISPATCH' }));
  });
});
