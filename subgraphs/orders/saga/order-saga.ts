/**
 * The order saga, orchestrated by the orders context: reserve stock → authorize payment →
 * create shipment → CONFIRMED; then dispatch → capture payment + commit stock → SHIPPED;
 * delivery → DELIVERED. Each step has a deadline; a failure or a missed deadline compensates
 * what may have been done (release stock, void the authorization, cancel the shipment).
 *
 * Pure: `react(state, message)` returns the next state, the commands to send and the order
 * command to apply. The runner (saga-runner.ts) persists all of it in one transaction.
 *
 * A customer's cancellation is a request (docs/decisions/0030): before the shipment was asked for
 * it compensates at once; after, the order waits in CANCELLING for shipping's answer to
 * CancelShipment: ShipmentCancelled → compensate → CANCELLED, ShipmentDispatched → the request is
 * refused and the order ships. Returns reopen a COMPLETED saga: the parcel's arrival holds its
 * units in stock and refunds the payment; a refund puts the units on sale again, a declined one
 * writes them off (the compensation) and leaves the order REFUND_FAILED for an operator.
 *
 * Every reply about the payment or the shipment that moves no order status is recorded on the
 * order as an observation (RecordPayment / RecordShipment), so the order's view changes, and its
 * subscribers hear of it, whenever one of those fields does (docs/decisions/0031).
 *
 * Compensations are sent for every step that was *started*, not only for those confirmed: a
 * reply may still be on its way (a slow payment provider), and every downstream handler treats a
 * compensation of nothing as a no-op. Replies that arrive after the saga ended are compensated
 * again with a "late" command of their own id.
 */
import type { ShippingAddress, OrderLineQuantity, SagaCommandType, StockReservationRejected } from '../../../platform/events/contracts/order-saga.ts';
import type { CancellationReason, PaymentStatus, RefundFailureReason, ShipmentStatus, UnavailableLine } from '../domain/order.ts';

export type SagaStep =
  | 'RESERVING_STOCK'
  | 'AUTHORIZING_PAYMENT'
  | 'CREATING_SHIPMENT'
  | 'AWAITING_DISPATCH'
  | 'CANCELLING'
  | 'AWAITING_DELIVERY'
  | 'COMPLETED'
  | 'RETURNING'
  | 'RETURNED'
  | 'REJECTED'
  | 'CANCELLED';

const order: SagaStep[] = ['RESERVING_STOCK', 'AUTHORIZING_PAYMENT', 'CREATING_SHIPMENT', 'AWAITING_DISPATCH', 'AWAITING_DELIVERY'];
const reached = (state: SagaState, step: SagaStep) => order.indexOf(state.step) >= order.indexOf(step);
export const isFinished = (step: SagaStep) => step === 'COMPLETED' || step === 'REJECTED' || step === 'CANCELLED' || step === 'RETURNED';

export interface SagaState {
  orderId: string;
  customerId: string;
  step: SagaStep;
  lines: OrderLineQuantity[];
  amount: number;
  currency: string;
  paymentToken: string;
  shippingAddress: ShippingAddress;
  /** CANCELLING: whether CancelShipment went out (it waits for ShipmentCreated when the shipment was still being created). */
  cancelShipmentSent?: boolean;
  /** RETURNING: the refund's outcome so far, and whether inventory holds the returned units. */
  refund?: 'PENDING' | 'REFUNDED' | 'FAILED';
  returnHeld?: boolean;
}

export type SagaMessage =
  | { type: 'StockReserved' | 'StockReleased' | 'StockCommitted' | 'ReturnedStockReceived' | 'StockRestocked' | 'ReturnWrittenOff' }
  | { type: 'StockReservationRejected'; payload: StockReservationRejected }
  | { type: 'PaymentAuthorized' | 'PaymentCaptured' | 'PaymentVoided' | 'PaymentRefunded' | 'PaymentRefundFailed' }
  | { type: 'PaymentDeclined' }
  | { type: 'ShipmentCreated' | 'ShipmentCancelled' | 'ShipmentDispatched' | 'ShipmentInTransit' | 'ShipmentDelivered' }
  | { type: 'DeadlinePassed' }
  | { type: 'CancellationRequested' }
  | { type: 'ReturnReceived' };

export interface SagaCommand {
  type: SagaCommandType;
  /** A compensation for a reply that came after the saga ended: sent under an id of its own. */
  late?: boolean;
}

export type OrderTransition =
  | { type: 'ConfirmOrder' }
  | { type: 'RejectOrder'; lines: UnavailableLine[] }
  | { type: 'CancelOrder'; reason: CancellationReason; shipmentStatus?: ShipmentStatus }
  | { type: 'MarkShipped' }
  | { type: 'MarkDelivered' }
  | { type: 'ReceiveReturn' }
  | { type: 'MarkRefunded' }
  | { type: 'MarkRefundFailed'; reason: RefundFailureReason }
  | { type: 'RecordPayment'; status: PaymentStatus }
  | { type: 'RecordShipment'; status: ShipmentStatus };

export interface SagaDecision {
  state: SagaState;
  commands: SagaCommand[];
  orderTransition?: OrderTransition;
  /** Whether the new step waits against a deadline (set by the runner from its step timeout). */
  awaitsDeadline: boolean;
}

const waitingSteps: ReadonlySet<SagaStep> = new Set(['RESERVING_STOCK', 'AUTHORIZING_PAYMENT', 'CREATING_SHIPMENT']);

/** Whether a state waits for a reply against a deadline: CANCELLING only while the shipment is still being created. */
const waits = (state: SagaState) => waitingSteps.has(state.step) || (state.step === 'CANCELLING' && !state.cancelShipmentSent);

function next(state: SagaState, step: SagaStep, commands: SagaCommand[], orderTransition?: OrderTransition, changes: Partial<SagaState> = {}): SagaDecision {
  const moved = { ...state, ...changes, step };
  return { state: moved, commands, ...(orderTransition ? { orderTransition } : {}), awaitsDeadline: waits(moved) };
}

const unchanged = (state: SagaState): SagaDecision => ({ state, commands: [], awaitsDeadline: waits(state) });

/** Undo everything that may have been started before the order ships. */
function compensate(state: SagaState, reason: CancellationReason): SagaDecision {
  const commands: SagaCommand[] = [{ type: 'ReleaseStock' }];
  if (state.step === 'CANCELLING' || reached(state, 'AUTHORIZING_PAYMENT')) commands.push({ type: 'VoidPayment' });
  if ((state.step === 'CANCELLING' && !state.cancelShipmentSent) || (state.step !== 'CANCELLING' && reached(state, 'CREATING_SHIPMENT'))) commands.push({ type: 'CancelShipment' });
  return next(state, 'CANCELLED', commands, { type: 'CancelOrder', reason });
}

/** The saga of a new order: its first step is to reserve the stock. */
export function startSaga(initial: Omit<SagaState, 'step'>): SagaDecision {
  return next({ ...initial, step: 'RESERVING_STOCK' }, 'RESERVING_STOCK', [{ type: 'ReserveStock' }]);
}

/** The payment or shipment state a reply reports, for the order's view; null for other messages. */
const observed: Partial<Record<SagaMessage['type'], OrderTransition>> = {
  PaymentAuthorized: { type: 'RecordPayment', status: 'AUTHORIZED' },
  PaymentDeclined: { type: 'RecordPayment', status: 'DECLINED' },
  PaymentCaptured: { type: 'RecordPayment', status: 'CAPTURED' },
  PaymentVoided: { type: 'RecordPayment', status: 'VOIDED' },
  PaymentRefunded: { type: 'RecordPayment', status: 'REFUNDED' },
  PaymentRefundFailed: { type: 'RecordPayment', status: 'REFUND_FAILED' },
  ShipmentCreated: { type: 'RecordShipment', status: 'CREATED' },
  ShipmentCancelled: { type: 'RecordShipment', status: 'CANCELLED' },
  ShipmentDispatched: { type: 'RecordShipment', status: 'DISPATCHED' },
  ShipmentInTransit: { type: 'RecordShipment', status: 'IN_TRANSIT' },
  ShipmentDelivered: { type: 'RecordShipment', status: 'DELIVERED' },
};

/**
 * The saga's answer to a message. A reply about the payment or shipment that moves no order
 * status is recorded on the order (an observation), so its view changes with it; the order's own
 * rules drop one that repeats what it knows.
 */
export function react(state: SagaState, message: SagaMessage): SagaDecision {
  const decision = decideNext(state, message);
  const observation = observed[message.type];
  return decision.orderTransition || !observation ? decision : { ...decision, orderTransition: observation };
}

function decideNext(state: SagaState, message: SagaMessage): SagaDecision {
  if (isFinished(state.step)) return afterTheEnd(state, message);
  if (state.step === 'CANCELLING') return whileCancelling(state, message);
  if (state.step === 'RETURNING') return whileReturning(state, message);
  switch (message.type) {
    case 'StockReserved':
      return state.step === 'RESERVING_STOCK' ? next(state, 'AUTHORIZING_PAYMENT', [{ type: 'AuthorizePayment' }]) : unchanged(state);
    case 'StockReservationRejected':
      if (state.step !== 'RESERVING_STOCK') return unchanged(state);
      return next(state, 'REJECTED', [], { type: 'RejectOrder', lines: message.payload.lines });
    case 'PaymentAuthorized':
      return state.step === 'AUTHORIZING_PAYMENT' ? next(state, 'CREATING_SHIPMENT', [{ type: 'CreateShipment' }]) : unchanged(state);
    case 'PaymentDeclined':
      if (state.step !== 'AUTHORIZING_PAYMENT') return unchanged(state);
      return next(state, 'CANCELLED', [{ type: 'ReleaseStock' }], { type: 'CancelOrder', reason: 'PAYMENT_DECLINED' });
    case 'ShipmentCreated':
      return state.step === 'CREATING_SHIPMENT' ? next(state, 'AWAITING_DISPATCH', [], { type: 'ConfirmOrder' }) : unchanged(state);
    case 'ShipmentDispatched':
      if (state.step !== 'AWAITING_DISPATCH') return unchanged(state);
      return next(state, 'AWAITING_DELIVERY', [{ type: 'CapturePayment' }, { type: 'CommitStock' }], { type: 'MarkShipped' });
    case 'ShipmentDelivered':
      return state.step === 'AWAITING_DELIVERY' ? next(state, 'COMPLETED', [], { type: 'MarkDelivered' }) : unchanged(state);
    case 'DeadlinePassed':
      return waitingSteps.has(state.step) ? compensate(state, 'TIMEOUT') : unchanged(state);
    case 'CancellationRequested':
      // No shipment was asked for yet: nothing can be dispatched, so the cancellation is final at once.
      if (state.step === 'RESERVING_STOCK' || state.step === 'AUTHORIZING_PAYMENT') return compensate(state, 'CUSTOMER_CANCELLED');
      // The shipment is being created: CancelShipment goes out once it exists (ShipmentCreated).
      if (state.step === 'CREATING_SHIPMENT') return next(state, 'CANCELLING', [], undefined, { cancelShipmentSent: false });
      if (state.step === 'AWAITING_DISPATCH') return next(state, 'CANCELLING', [{ type: 'CancelShipment' }], undefined, { cancelShipmentSent: true });
      // Dispatched: the order's rules refuse it (CANCELLATION_REFUSED) before the saga is asked.
      return unchanged(state);
    default:
      return unchanged(state);
  }
}

/** Waiting for shipping to say whether it stopped the shipment. */
function whileCancelling(state: SagaState, message: SagaMessage): SagaDecision {
  switch (message.type) {
    case 'ShipmentCreated':
      return state.cancelShipmentSent ? unchanged(state) : next(state, 'CANCELLING', [{ type: 'CancelShipment' }], undefined, { cancelShipmentSent: true });
    case 'ShipmentCancelled':
      return next(state, 'CANCELLED', [{ type: 'ReleaseStock' }, { type: 'VoidPayment' }], { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED', shipmentStatus: 'CANCELLED' });
    case 'ShipmentDispatched':
      // Shipping dispatched before it heard of the cancellation: refused, the order ships.
      return next(state, 'AWAITING_DELIVERY', [{ type: 'CapturePayment' }, { type: 'CommitStock' }], { type: 'MarkShipped' });
    case 'DeadlinePassed':
      // The shipment was never confirmed in time: cancel whatever may exist, as a timeout would.
      return state.cancelShipmentSent ? unchanged(state) : compensate(state, 'CUSTOMER_CANCELLED');
    default:
      return unchanged(state);
  }
}

/** A returned parcel arrived: the units are held, the payment refunded; then on sale again, or written off. */
function whileReturning(state: SagaState, message: SagaMessage): SagaDecision {
  const settle = (refund: SagaState['refund'], held: boolean): SagaCommand[] =>
    !held ? [] : refund === 'REFUNDED' ? [{ type: 'RestockReturn' }] : refund === 'FAILED' ? [{ type: 'WriteOffReturn' }] : [];
  switch (message.type) {
    case 'ReturnedStockReceived':
      if (state.returnHeld) return unchanged(state);
      return next(state, 'RETURNING', settle(state.refund, true), undefined, { returnHeld: true });
    case 'PaymentRefunded':
      if (state.refund !== 'PENDING') return unchanged(state);
      return next(state, 'RETURNING', settle('REFUNDED', state.returnHeld ?? false), { type: 'MarkRefunded' }, { refund: 'REFUNDED' });
    case 'PaymentRefundFailed':
      if (state.refund !== 'PENDING') return unchanged(state);
      return next(state, 'RETURNING', settle('FAILED', state.returnHeld ?? false), { type: 'MarkRefundFailed', reason: 'REFUND_DECLINED' }, { refund: 'FAILED' });
    case 'StockRestocked':
    case 'ReturnWrittenOff':
      return next(state, 'RETURNED', []);
    default:
      return unchanged(state);
  }
}

/** A message to a saga that already ended: a return reopens a completed one; late replies are undone. */
function afterTheEnd(state: SagaState, message: SagaMessage): SagaDecision {
  if (state.step === 'COMPLETED') {
    if (message.type !== 'ReturnReceived') return unchanged(state);
    return next(state, 'RETURNING', [{ type: 'ReceiveReturnedStock' }, { type: 'RefundPayment' }], { type: 'ReceiveReturn' }, { refund: 'PENDING', returnHeld: false });
  }
  if (state.step === 'RETURNED') return unchanged(state);
  if (message.type === 'CancellationRequested') return next(state, state.step, [], { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED' });
  const late: Partial<Record<SagaMessage['type'], SagaCommandType>> = {
    StockReserved: 'ReleaseStock',
    PaymentAuthorized: 'VoidPayment',
    ShipmentCreated: 'CancelShipment',
  };
  const compensation = late[message.type];
  return compensation ? { state, commands: [{ type: compensation, late: true }], awaitsDeadline: false } : unchanged(state);
}

/** The payload of a command, from the saga's state. */
export function commandPayload(state: SagaState, type: SagaCommandType): Record<string, unknown> {
  const { orderId } = state;
  switch (type) {
    case 'ReserveStock':
      return { orderId, lines: state.lines };
    case 'AuthorizePayment':
      return { orderId, customerId: state.customerId, amount: state.amount, currency: state.currency, paymentToken: state.paymentToken };
    case 'CreateShipment':
      return { orderId, customerId: state.customerId, address: state.shippingAddress, lines: state.lines };
    default:
      return { orderId };
  }
}
