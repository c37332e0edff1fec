/** Payments and their status trail in the payments database. */
import DataLoader from 'dataloader';
import type { Payment as PaymentRow, Prisma } from '../../../prisma/payments/client/client.ts';
import type { Causation } from '../../../platform/events/envelope.ts';
import { appendToOutbox } from '../../../platform/events/outbox.ts';
import { isUuid } from '../../../platform/ids.ts';
import { paymentReplyEnvelope } from '../domain/payment-events.ts';
import type { Payment, PaymentDecision } from '../domain/payment.ts';
import type { PaymentsDatabase } from './database.ts';

/** The client or a transaction of it: reads work on both. */
type PaymentsClient = PaymentsDatabase | Prisma.TransactionClient;

export class PaymentRepository {
  constructor(private readonly db: PaymentsDatabase) {}

  /** By order id; one statement for any number of orders, null for an order without payment. */
  createLoader(): DataLoader<string, Payment | null> {
    return new DataLoader(async (orderIds) => {
      // Malformed ids cannot have a payment: they never reach SQL.
      const wanted = orderIds.filter(isUuid);
      const rows = wanted.length === 0 ? [] : await this.db.payment.findMany({ where: { orderId: { in: wanted } } });
      const byOrder = new Map(rows.map((row) => [row.orderId, toPayment(row)]));
      return orderIds.map((id) => byOrder.get(id) ?? null);
    });
  }

  async findByOrderId(orderId: string, client: PaymentsClient = this.db): Promise<Payment | null> {
    const row = await client.payment.findUnique({ where: { orderId } });
    return row ? toPayment(row) : null;
  }

  /**
   * Writes a decision inside `tx`: the payment's new state, its status change and the reply to
   * the saga, or only the reply when the command was answered before. The caller serializes
   * commands of one order (the inbox locks the order's consumer position), so no version race.
   */
  async record(tx: Prisma.TransactionClient, decision: PaymentDecision, causation: Causation, now: Date): Promise<void> {
    if (decision.kind === 'ignored') return;
    if (decision.kind === 'changed') {
      const { id, ...state } = decision.payment;
      if (state.version === 1) await tx.payment.create({ data: { id, ...state } });
      else await tx.payment.update({ where: { id }, data: state });
      await tx.paymentStatusChange.create({ data: { paymentId: id, version: state.version, status: state.status, at: now } });
    }
    await appendToOutbox(tx, [paymentReplyEnvelope(decision.reply, causation, now)]);
  }
}

function toPayment(row: PaymentRow): Payment {
  return {
    id: row.id,
    orderId: row.orderId,
    customerId: row.customerId,
    amount: row.amount,
    currency: row.currency,
    status: row.status,
    providerReference: row.providerReference,
    cardBrand: row.cardBrand,
    declineReason: row.declineReason,
    refundFailureReason: row.refundFailureReason,
    version: row.version,
    authorizedAt: row.authorizedAt,
    capturedAt: row.capturedAt,
    voidedAt: row.voidedAt,
    refundedAt: row.refundedAt,
  };
}
