/**
 * Handles one of the saga's payment commands: ask the provider, then record the outcome and the
 * reply in one transaction.
 *
 * The provider is asked FIRST, outside any transaction, because it may take seconds (`tok_slow`)
 * and a transaction held open that long would pin the outbox relay's snapshot horizon and a
 * connection. That is safe because the provider is idempotent by key (the order id): a crash
 * or a failed write after its answer and before the commit asks again on redelivery and gets
 * the same answer, without the provider acting twice (a refund is given back once, a declined
 * refund stays declined). The transaction then decides again on the payment as it is by then.
 *
 * A provider slower than the bus's redelivery time (EVENT_REDELIVERY_AFTER_MS; `tok_slow` by
 * default) does not get the command delivered again meanwhile: both buses keep a delivery alive
 * while its handler runs. Payments handles several commands at once, so a slow answer holds up
 * no other order; a VoidPayment that overtakes its order's slow authorization is resolved below.
 */
import type { EventEnvelope } from '../../../platform/events/envelope.ts';
import { causedBy } from '../../../platform/events/envelope.ts';
import { handleOnce } from '../../../platform/events/inbox.ts';
import type { Logger } from '../../../platform/logging/logger.ts';
import { decide, providerStepFor, type PaymentCommand, type PaymentDecision, type ProviderResult, type ProviderStep } from '../domain/payment.ts';
import type { PaymentProvider } from '../domain/payment-provider.ts';
import type { PaymentsDatabase } from '../infrastructure/database.ts';
import type { PaymentRepository } from '../infrastructure/payment-repository.ts';

export interface PaymentCommandDeps {
  db: PaymentsDatabase;
  payments: PaymentRepository;
  provider: PaymentProvider;
  /** Durable consumer name, the inbox's key. */
  consumer: string;
  clock: () => Date;
  log: Logger;
}

export async function handlePaymentCommand(deps: PaymentCommandDeps, command: PaymentCommand, event: EventEnvelope): Promise<void> {
  const orderId = command.type === 'AuthorizePayment' ? command.request.orderId : command.orderId;
  const step = providerStepFor(command, await deps.payments.findByOrderId(orderId));
  const result = step ? await ask(deps.provider, orderId, step) : null;

  let decision: PaymentDecision | undefined;
  const outcome = await handleOnce(
    deps.db,
    deps.consumer,
    event,
    async (tx) => {
      const now = deps.clock();
      decision = decide(command, await deps.payments.findByOrderId(orderId, tx), result, now);
      await deps.payments.record(tx, decision, causedBy(event), now);
    },
    // The saga sends this consumer only some of an order's commands: versions have gaps.
    { ordering: 'monotonic' },
  );

  if (outcome === 'applied' && decision?.kind === 'ignored') {
    const fields = { orderId, command: command.type, eventId: event.eventId, reason: decision.reason };
    if (decision.expected) deps.log.info('command changes nothing', fields);
    else deps.log.warn('command refused: it does not fit the payment', fields);
  }
  // A newer command of the order was applied while the provider was authorizing (e.g. the saga
  // gave up and voided): nobody will ever capture this hold, so release it now.
  if (outcome === 'stale' && result?.operation === 'authorize' && result.answer.approved) {
    // Unless another replica recorded this very hold meanwhile (the provider answers by key).
    const recorded = await deps.payments.findByOrderId(orderId);
    if (recorded?.providerReference === result.answer.reference) return;
    await deps.provider.void({ idempotencyKey: orderId, reference: result.answer.reference });
    deps.log.warn('released the hold of an authorization that arrived after a newer command', { orderId, eventId: event.eventId });
  }
}

async function ask(provider: PaymentProvider, orderId: string, step: ProviderStep): Promise<ProviderResult> {
  const idempotencyKey = orderId;
  switch (step.operation) {
    case 'authorize': {
      const { amount, currency, paymentToken } = step.request;
      return { operation: 'authorize', answer: await provider.authorize({ idempotencyKey, amount, currency, paymentToken }) };
    }
    case 'capture':
      await provider.capture({ idempotencyKey, reference: step.reference, amount: step.amount });
      return { operation: 'capture' };
    case 'void':
      await provider.void({ idempotencyKey, reference: step.reference });
      return { operation: 'void' };
    case 'refund':
      return { operation: 'refund', answer: await provider.refund({ idempotencyKey, reference: step.reference, amount: step.amount }) };
  }
}
