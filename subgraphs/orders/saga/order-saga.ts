/**
 * The order saga, orchestrated by the orders context: reserve stock → authorize payment →
 * create shipment → CONFIRMED; then dispatch → capture payment + commit stock → SHIPPED;
 * delivery → DELIVERED. Each step has a deadline; a failure or a missed deadline compensates
 * what may have been done (release stock, void the authorization, cancel the shipment).
 *
 * Pure: `react(state, message)` returns the next state, the commands to send and the order
 * command to apply. The runner (saga-runner.ts) persists all of it in one transaction.
 *
 * Compensations are sent for every step that was *started*, not only for those confirmed: a
 * reply may still be on its way (a slow payment provider), and every downstream handler treats a
 * compensation of nothing as a no-op. Replies that arrive after the saga ended are compensated
 * again with a "late" command of their own id.
 */
import type { ShippingAddress, OrderLineQuantity, SagaCommandType, StockReservationRejected } from '../../../platform/events/contracts/order-saga.ts';
import type { CancellationReason, UnavailableLine } from '../domain/order.ts';

export type SagaStep =
  | 'RESERVING_STOCK'
  | 'AUTHORIZING_PAYMENT'
  | 'CREATING_SHIPMENT'
  | 'AWAITING_DISPATCH'
  | 'AWAITING_DELIVERY'
  | 'COMPLETED'
  | 'REJECTED'
  | 'CANCELLED';

const order: SagaStep[] = ['RESERVING_STOCK', 'AUTHORIZING_PAYMENT', 'CREATING_SHIPMENT', 'AWAITING_DISPATCH', 'AWAITING_DELIVERY'];
const reached = (state: SagaState, step: SagaStep) => order.indexOf(state.step) >= order.indexOf(step);
export const isFinished = (step: SagaStep) => step === 'COMPLETED' || step === 'REJECTED' || step === 'CANCELLED';

export interface SagaState {
  orderId: string;
  customerId: string;
  step: SagaStep;
  lines: OrderLineQuantity[];
  amount: number;
  currency: string;
  paymentToken: string;
  shippingAddress: ShippingAddress;
}

export type SagaMessage =
  | { type: 'StockReserved' | 'StockReleased' | 'StockCommitted' }
  | { type: 'StockReservationRejected'; payload: StockReservationRejected }
  | { type: 'PaymentAuthorized' | 'PaymentCaptured' | 'PaymentVoided' | 'PaymentRefunded' }
  | { type: 'PaymentDeclined' }
  | { type: 'ShipmentCreated' | 'ShipmentCancelled' | 'ShipmentDispatched' | 'ShipmentInTransit' | 'ShipmentDelivered' }
  | { type: 'DeadlinePassed' }
  | { type: 'CancellationRequested' };

export interface SagaCommand {
  type: SagaCommandType;
  /** A compensation for a reply that came after the saga ended: sent under an id of its own. */
  late?: boolean;
}

export type OrderTransition =
  | { type: 'ConfirmOrder' }
  | { type: 'RejectOrder'; lines: UnavailableLine[] }
  | { type: 'CancelOrder'; reason: CancellationReason }
  | { type: 'MarkShipped' }
  | { type: 'MarkDelivered' };

export interface SagaDecision {
  state: SagaState;
  commands: SagaCommand[];
  orderTransition?: OrderTransition;
  /** Whether the new step waits against a deadline (set by the runner from its step timeout). */
  awaitsDeadline: boolean;
}

const waitingSteps: ReadonlySet<SagaStep> = new Set(['RESERVING_STOCK', 'AUTHORIZING_PAYMENT', 'CREATING_SHIPMENT']);

function next(state: SagaState, step: SagaStep, commands: SagaCommand[], orderTransition?: OrderTransition): SagaDecision {
  return { state: { ...state, step }, commands, ...(orderTransition ? { orderTransition } : {}), awaitsDeadline: waitingSteps.has(step) };
}

const unchanged = (state: SagaState): SagaDecision => ({ state, commands: [], awaitsDeadline: waitingSteps.has(state.step) });

/** Undo everything that may have been started before the order ships. */
function compensate(state: SagaState, reason: CancellationReason): SagaDecision {
  const commands: SagaCommand[] = [{ type: 'ReleaseStock' }];
  if (reached(state, 'AUTHORIZING_PAYMENT')) commands.push({ type: 'VoidPayment' });
  if (reached(state, 'CREATING_SHIPMENT')) commands.push({ type: 'CancelShipment' });
  return next(state, 'CANCELLED', commands, { type: 'CancelOrder', reason });
}

/** The saga of a new order: its first step is to reserve the stock. */
export function startSaga(initial: Omit<SagaState, 'step'>): SagaDecision {
  return next({ ...initial, step: 'RESERVING_STOCK' }, 'RESERVING_STOCK', [{ type: 'ReserveStock' }]);
}

export function react(state: SagaState, message: SagaMessage): SagaDecision {
  if (isFinished(state.step)) return afterTheEnd(state, message);
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
      // After dispatch the goods are on their way: the order rules refuse it (CONFLICT).
      return reached(state, 'AWAITING_DELIVERY') ? next(state, state.step, [], { type: 'CancelOrder', reason: 'CUSTOMER_CANCELLED' }) : compensate(state, 'CUSTOMER_CANCELLED');
    default:
      return unchanged(state);
  }
}

/** A reply to a saga that already ended: undo what it did, if the saga ended without the order. */
function afterTheEnd(state: SagaState, message: SagaMessage): SagaDecision {
  if (state.step === 'COMPLETED') return unchanged(state);
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
