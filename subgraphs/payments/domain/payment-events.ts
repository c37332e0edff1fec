/** The replies payments publishes to the order saga, versioned per payment (aggregateId = orderId). */
import { createEnvelope, type Causation, type EventEnvelope } from '../../../platform/events/envelope.ts';
import type { PaymentReply } from './payment.ts';

export function paymentReplyEnvelope(reply: PaymentReply, causation: Causation, now: Date): EventEnvelope<PaymentReply['payload']> {
  return createEnvelope(
    'payments',
    { type: reply.type, aggregateType: 'Payment', aggregateId: reply.payload.orderId, aggregateVersion: reply.version, payload: reply.payload },
    causation,
    now,
  );
}
