/**
 * The payments context's rules, in one place. Pure: the provider's answer and the clock are given.
 *
 * A payment's life is a path, so each status has one version and one reply event:
 *
 *   (none) ─authorize─► AUTHORIZED (1) ─capture─► CAPTURED (2) ─refund─► REFUNDED (3)
 *          └──────────► DECLINED (1)   └─void───► VOIDED (2)   └───────► REFUND_FAILED (3)
 *
 * Statuses reached by the same step share its version, so the replies of a payment count up by
 * one with no hole whichever way it went: orders applies them in strict order per payment, and
 * a hole would block it for good.
 *
 * REFUND_FAILED: the provider declined the refund (e.g. the card was closed). In money terms the
 * payment is still captured. It is final for the saga, which is told so once (PaymentRefundFailed)
 * and again on every repeated RefundPayment, without asking the provider again: an operator
 * settles it with the customer outside the saga.
 *
 * Every command is idempotent: one that asks for a step already taken is answered again with
 * that step's reply (same version), one that makes no sense in the current status changes
 * nothing and sends nothing (a void of nothing is normal: the saga compensates blindly).
 */
import type {
  AuthorizePayment,
  PaymentAuthorized,
  PaymentCaptured,
  PaymentDeclined,
  PaymentRefunded,
  PaymentRefundFailed,
  PaymentVoided,
} from '../../../platform/events/contracts/order-saga.ts';
import { deterministicUuid, isUuid } from '../../../platform/ids.ts';
import type { AuthorizationAnswer, RefundAnswer } from './payment-provider.ts';

export const paymentStatuses = ['AUTHORIZED', 'DECLINED', 'CAPTURED', 'VOIDED', 'REFUNDED', 'REFUND_FAILED'] as const;
export type PaymentStatus = (typeof paymentStatuses)[number];

export interface Payment {
  id: string;
  orderId: string;
  customerId: string;
  /** Minor units of `currency`. */
  amount: number;
  currency: string;
  status: PaymentStatus;
  /** The provider's authorization id; null when declined. */
  providerReference: string | null;
  cardBrand: string | null;
  declineReason: string | null;
  /** The provider's reason for declining the refund; null unless REFUND_FAILED. */
  refundFailureReason: string | null;
  version: number;
  authorizedAt: Date | null;
  capturedAt: Date | null;
  voidedAt: Date | null;
  refundedAt: Date | null;
}

export type PaymentCommand =
  | { type: 'AuthorizePayment'; request: AuthorizePayment }
  | { type: 'CapturePayment'; orderId: string }
  | { type: 'VoidPayment'; orderId: string }
  | { type: 'RefundPayment'; orderId: string };

export type PaymentReply =
  | { type: 'PaymentAuthorized'; version: number; payload: PaymentAuthorized }
  | { type: 'PaymentDeclined'; version: number; payload: PaymentDeclined }
  | { type: 'PaymentCaptured'; version: number; payload: PaymentCaptured }
  | { type: 'PaymentVoided'; version: number; payload: PaymentVoided }
  | { type: 'PaymentRefunded'; version: number; payload: PaymentRefunded }
  | { type: 'PaymentRefundFailed'; version: number; payload: PaymentRefundFailed };

/** What the provider must be asked before the command can be decided. */
export type ProviderStep =
  | { operation: 'authorize'; request: AuthorizePayment }
  | { operation: 'capture' | 'refund'; reference: string; amount: number }
  | { operation: 'void'; reference: string };

/** What the provider answered to a ProviderStep. */
export type ProviderResult =
  | { operation: 'authorize'; answer: AuthorizationAnswer }
  | { operation: 'refund'; answer: RefundAnswer }
  | { operation: 'capture' | 'void' };

export type PaymentDecision =
  | { kind: 'changed'; payment: Payment; reply: PaymentReply }
  | { kind: 'repeated'; reply: PaymentReply }
  /** `expected`: the saga may well send it (a blind void); otherwise it points at a saga bug. */
  | { kind: 'ignored'; reason: string; expected: boolean };

/** A command that breaks the contract (bad ids or amounts): a bug of the sender, not a decline. */
export class InvalidPaymentCommand extends Error {
  override readonly name = 'InvalidPaymentCommand';
}

/**
 * The payment's status changed between asking the provider and recording its answer (another
 * replica handled a command of the same order): throw it so the bus delivers the command again.
 */
export class PaymentChangedMeanwhile extends Error {
  override readonly name = 'PaymentChangedMeanwhile';
}

const versionAt: Record<PaymentStatus, number> = { AUTHORIZED: 1, DECLINED: 1, CAPTURED: 2, VOIDED: 2, REFUNDED: 3, REFUND_FAILED: 3 };

/** Statuses in which the amount was captured (and a repeated capture is answered again). */
const captured: ReadonlySet<PaymentStatus> = new Set(['CAPTURED', 'REFUNDED', 'REFUND_FAILED']);

/** The same order always gets the same payment id, so a retried authorization cannot fork it. */
export const paymentIdOf = (orderId: string): string => deterministicUuid('payment', orderId);

export function checkAuthorizationRequest(request: AuthorizePayment): AuthorizePayment {
  if (!isUuid(request.orderId)) throw new InvalidPaymentCommand('AuthorizePayment.orderId must be a UUID');
  if (!isUuid(request.customerId)) throw new InvalidPaymentCommand('AuthorizePayment.customerId must be a UUID');
  if (!Number.isInteger(request.amount) || request.amount <= 0) throw new InvalidPaymentCommand('AuthorizePayment.amount must be a positive whole number of minor units');
  if (typeof request.currency !== 'string' || !/^[A-Z]{3}$/.test(request.currency)) throw new InvalidPaymentCommand('AuthorizePayment.currency must be an ISO 4217 code');
  if (typeof request.paymentToken !== 'string' || request.paymentToken.length === 0 || request.paymentToken.length > 200) {
    throw new InvalidPaymentCommand('AuthorizePayment.paymentToken must be 1–200 characters');
  }
  return request;
}

/** The provider call a command needs in the payment's current status, or null for none. */
export function providerStepFor(command: PaymentCommand, payment: Payment | null): ProviderStep | null {
  switch (command.type) {
    case 'AuthorizePayment':
      return payment ? null : { operation: 'authorize', request: command.request };
    case 'CapturePayment':
      return payment?.status === 'AUTHORIZED' ? { operation: 'capture', reference: payment.providerReference!, amount: payment.amount } : null;
    case 'VoidPayment':
      return payment?.status === 'AUTHORIZED' ? { operation: 'void', reference: payment.providerReference! } : null;
    case 'RefundPayment':
      return payment?.status === 'CAPTURED' ? { operation: 'refund', reference: payment.providerReference!, amount: payment.amount } : null;
  }
}

/**
 * Decides a command against the payment's current status and what the provider answered to
 * `providerStepFor(command, payment)` (null when it needed no call).
 */
export function decide(command: PaymentCommand, payment: Payment | null, result: ProviderResult | null, at: Date): PaymentDecision {
  const step = providerStepFor(command, payment);
  if (step && result?.operation !== step.operation) {
    throw new PaymentChangedMeanwhile(`${command.type}: the payment changed while the provider was asked; trying again`);
  }
  switch (command.type) {
    case 'AuthorizePayment': {
      if (payment) return { kind: 'repeated', reply: authorizationReply(payment) };
      const answer = (result as Extract<ProviderResult, { operation: 'authorize' }>).answer;
      const created = newPayment(command.request, answer, at);
      return { kind: 'changed', payment: created, reply: authorizationReply(created) };
    }
    case 'CapturePayment': {
      if (!payment) return ignored('there is no payment to capture', false);
      if (payment.status === 'AUTHORIZED') return changed({ ...payment, status: 'CAPTURED', capturedAt: at });
      if (captured.has(payment.status)) return { kind: 'repeated', reply: replyFor({ ...payment, status: 'CAPTURED' }) };
      return ignored(`a ${payment.status.toLowerCase()} payment cannot be captured`, false);
    }
    case 'VoidPayment': {
      if (!payment) return ignored('there is no payment to void', true);
      if (payment.status === 'AUTHORIZED') return changed({ ...payment, status: 'VOIDED', voidedAt: at });
      if (payment.status === 'VOIDED') return { kind: 'repeated', reply: replyFor(payment) };
      if (payment.status === 'DECLINED') return ignored('a declined payment holds nothing to void', true);
      return ignored(`a ${payment.status.toLowerCase()} payment cannot be voided: refund it`, false);
    }
    case 'RefundPayment': {
      if (!payment) return ignored('there is no payment to refund', false);
      if (payment.status === 'CAPTURED') {
        const answer = (result as Extract<ProviderResult, { operation: 'refund' }>).answer;
        return answer.refunded
          ? changed({ ...payment, status: 'REFUNDED', refundedAt: at })
          : changed({ ...payment, status: 'REFUND_FAILED', refundFailureReason: answer.reason });
      }
      // A declined refund is not tried again: the provider would decline it again (same key).
      if (payment.status === 'REFUNDED' || payment.status === 'REFUND_FAILED') return { kind: 'repeated', reply: replyFor(payment) };
      return ignored(`only a captured payment can be refunded, this one is ${payment.status.toLowerCase()}`, false);
    }
  }
}

function newPayment(request: AuthorizePayment, answer: AuthorizationAnswer, at: Date): Payment {
  const base = {
    id: paymentIdOf(request.orderId),
    orderId: request.orderId,
    customerId: request.customerId,
    amount: request.amount,
    currency: request.currency,
    refundFailureReason: null,
    version: 1,
    capturedAt: null,
    voidedAt: null,
    refundedAt: null,
  };
  return answer.approved
    ? { ...base, status: 'AUTHORIZED', providerReference: answer.reference, cardBrand: answer.cardBrand, declineReason: null, authorizedAt: at }
    : { ...base, status: 'DECLINED', providerReference: null, cardBrand: null, declineReason: answer.reason, authorizedAt: null };
}

function changed(payment: Payment): PaymentDecision {
  const next = { ...payment, version: versionAt[payment.status] };
  return { kind: 'changed', payment: next, reply: replyFor(next) };
}

const ignored = (reason: string, expected: boolean): PaymentDecision => ({ kind: 'ignored', reason, expected });

/** The answer to AuthorizePayment, whatever happened to the payment since. */
function authorizationReply(payment: Payment): PaymentReply {
  return replyFor(payment.status === 'DECLINED' ? payment : { ...payment, status: 'AUTHORIZED' });
}

/** The reply event of the step that led to `payment.status`. */
function replyFor(payment: Payment): PaymentReply {
  const { orderId, id: paymentId, amount, currency } = payment;
  const version = versionAt[payment.status];
  switch (payment.status) {
    case 'AUTHORIZED':
      return { type: 'PaymentAuthorized', version, payload: { orderId, paymentId, amount, currency } };
    case 'DECLINED':
      return { type: 'PaymentDeclined', version, payload: { orderId, reason: payment.declineReason ?? 'declined' } };
    case 'CAPTURED':
      return { type: 'PaymentCaptured', version, payload: { orderId, paymentId, amount, currency } };
    case 'VOIDED':
      return { type: 'PaymentVoided', version, payload: { orderId, paymentId } };
    case 'REFUNDED':
      return { type: 'PaymentRefunded', version, payload: { orderId, paymentId, amount } };
    case 'REFUND_FAILED':
      return { type: 'PaymentRefundFailed', version, payload: { orderId, paymentId, reason: payment.refundFailureReason ?? 'refund_declined' } };
  }
}
