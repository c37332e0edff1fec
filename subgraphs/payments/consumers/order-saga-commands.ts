/**
 * The order saga's payment commands (AuthorizePayment, CapturePayment, VoidPayment,
 * RefundPayment), each answered with a reply event to the outbox in the transaction that records
 * it. A command that breaks the contract throws: the bus retries it, then parks it as a dead
 * letter for a person to look at.
 */
import type { AuthorizePayment, CapturePayment, RefundPayment, VoidPayment } from '../../../platform/events/contracts/order-saga.ts';
import { paymentsConsumer } from '../../../platform/events/consumers.ts';
import type { EventEnvelope } from '../../../platform/events/envelope.ts';
import { isUuid } from '../../../platform/ids.ts';
import { KeyedLock } from '../../../platform/async/keyed-lock.ts';
import type { ContextConsumer } from '../../../platform/subgraph/context-subgraph.ts';
import { checkAuthorizationRequest, InvalidPaymentCommand, type PaymentCommand } from '../domain/payment.ts';
import { handlePaymentCommand, type PaymentCommandDeps } from '../use-cases/handle-payment-command.ts';

export function paymentsEventConsumer(deps: Omit<PaymentCommandDeps, 'consumer'>): ContextConsumer {
  // The bus hands this consumer several commands at once (a slow provider must not hold up other
  // orders); one order's commands still run one after the other, in the order they arrived.
  const perOrder = new KeyedLock();
  return {
    ...paymentsConsumer,
    handle: (event) => perOrder.run(event.aggregateId, () => handlePaymentCommand({ ...deps, consumer: paymentsConsumer.name }, paymentCommandOf(event), event)),
  };
}

export function paymentCommandOf(event: EventEnvelope): PaymentCommand {
  const orderId = (event.payload as { orderId?: unknown }).orderId;
  if (!isUuid(orderId) || orderId !== event.aggregateId) {
    throw new InvalidPaymentCommand(`${event.type} ${event.eventId}: payload.orderId must be the UUID of its aggregate (aggregateId)`);
  }
  switch (event.type) {
    case 'AuthorizePayment':
      return { type: 'AuthorizePayment', request: checkAuthorizationRequest(event.payload as unknown as AuthorizePayment) };
    case 'CapturePayment':
      return { type: 'CapturePayment', orderId: (event.payload as unknown as CapturePayment).orderId };
    case 'VoidPayment':
      return { type: 'VoidPayment', orderId: (event.payload as unknown as VoidPayment).orderId };
    case 'RefundPayment':
      return { type: 'RefundPayment', orderId: (event.payload as unknown as RefundPayment).orderId };
    default:
      throw new InvalidPaymentCommand(`payments does not handle ${event.type}`);
  }
}
