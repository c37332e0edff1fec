/**
 * A payment provider that needs no network: it answers by token, the way card processors' test
 * modes do, so that every outcome can be had on purpose.
 *
 *   tok_visa          approved (brand `visa`)
 *   tok_declined      declined, `card_declined`
 *   tok_slow          approved, but only after `slowTokenDelayMs`: by default after the order
 *                     saga's default step deadline (SAGA_STEP_TIMEOUT_MS, 30 s), so the order is
 *                     cancelled as TIMEOUT and the late authorization voided
 *   tok_refund_fails  approved and captured like tok_visa, but its refund is declined as
 *                     `card_closed` (the card was closed since): the payment stays captured
 *   anything else     declined, `unknown_token`
 *
 * Like a real provider it keeps its own idempotency records (`provider_operations`): the same
 * operation with the same key is answered from the record and not performed twice. A record
 * holds a SHA-256 of the request, never the token. It also keeps real providers' refusals:
 * no capture of a voided hold, no void of a captured one, no refund of nothing. A declined
 * refund is recorded like any answer: asked again with the same key, it is declined again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Prisma } from '../../../prisma/payments/client/client.ts';
import {
  ProviderError,
  type AuthorizationAnswer,
  type AuthorizationRequest,
  type PaymentProvider,
  type RefundAnswer,
  type SettlementRequest,
} from '../domain/payment-provider.ts';
import type { PaymentsDatabase } from './database.ts';

export interface SimulatedProviderOptions {
  /** How long `tok_slow` takes to answer. @default defaultSlowTokenDelayMs (45 s) */
  slowTokenDelayMs?: number;
}

/**
 * PAYMENT_PROVIDER_SLOW_DELAY_MS's default: 15 s past the saga's default step deadline (30 s,
 * which runs from when the saga sends AuthorizePayment), so `tok_slow` misses it however late the
 * deadline sweeper runs. Not much longer: payments handles four commands at once and one order's
 * one after the other, so a `tok_slow` authorization holds a slot and its order's next command for
 * that long. This outlasts the bus's redelivery time (10 s):
 * see handle-payment-command.ts for why that redelivers the command at most once.
 */
export const defaultSlowTokenDelayMs = 45_000;

type Operation = 'authorize' | 'capture' | 'void' | 'refund';

interface TokenBehaviour {
  answer: { approved: true; cardBrand: string } | { approved: false; reason: string };
  slow?: boolean;
  /** Why a refund to this card is declined; refunds go through when absent. */
  refundDeclinedAs?: string;
}

const tokens: Record<string, TokenBehaviour> = {
  tok_visa: { answer: { approved: true, cardBrand: 'visa' } },
  tok_declined: { answer: { approved: false, reason: 'card_declined' } },
  tok_slow: { answer: { approved: true, cardBrand: 'visa' }, slow: true },
  tok_refund_fails: { answer: { approved: true, cardBrand: 'visa' }, refundDeclinedAs: 'card_closed' },
};
const unknownToken: TokenBehaviour = { answer: { approved: false, reason: 'unknown_token' } };

/**
 * An authorization as the provider records it: the answer, plus what the provider knows of the
 * card (the amount held; whether refunds to it will be declined), never the token itself.
 */
type AuthorizationRecord = AuthorizationAnswer & { amount?: number; refundDeclinedAs?: string };

export class SimulatedPaymentProvider implements PaymentProvider {
  readonly slowTokenDelayMs: number;

  constructor(
    private readonly db: PaymentsDatabase,
    options: SimulatedProviderOptions = {},
  ) {
    this.slowTokenDelayMs = options.slowTokenDelayMs ?? defaultSlowTokenDelayMs;
    if (!Number.isInteger(this.slowTokenDelayMs) || this.slowTokenDelayMs < 0) throw new Error('slowTokenDelayMs must be a whole number of milliseconds ≥ 0');
  }

  async authorize(request: AuthorizationRequest): Promise<AuthorizationAnswer> {
    const { refundDeclinedAs: _, ...answer } = await this.once<AuthorizationRecord>('authorize', request.idempotencyKey, request, async () => {
      const behaviour = Object.hasOwn(tokens, request.paymentToken) ? tokens[request.paymentToken]! : unknownToken;
      if (behaviour.slow) await sleep(this.slowTokenDelayMs);
      if (!behaviour.answer.approved) return behaviour.answer;
      const reference = `sim_auth_${randomBytes(12).toString('hex')}`;
      const approved = { approved: true, reference, cardBrand: behaviour.answer.cardBrand, amount: request.amount } as const;
      return behaviour.refundDeclinedAs ? { ...approved, refundDeclinedAs: behaviour.refundDeclinedAs } : approved;
    });
    return answer;
  }

  async capture(request: SettlementRequest): Promise<void> {
    await this.once('capture', request.idempotencyKey, request, async () => {
      const done = await this.operationsOn(request.reference);
      const authorized = done.get('authorize');
      if (!authorized) throw new ProviderError(`No authorization ${request.reference}`);
      if (done.has('void')) throw new ProviderError(`Authorization ${request.reference} was voided`);
      if (request.amount > Number(authorized.amount)) throw new ProviderError('Cannot capture more than was authorized');
      return { reference: request.reference, amount: request.amount };
    });
  }

  async void(request: Omit<SettlementRequest, 'amount'>): Promise<void> {
    await this.once('void', request.idempotencyKey, request, async () => {
      const done = await this.operationsOn(request.reference);
      if (!done.has('authorize')) throw new ProviderError(`No authorization ${request.reference}`);
      if (done.has('capture')) throw new ProviderError(`Authorization ${request.reference} was captured: refund it`);
      return { reference: request.reference };
    });
  }

  async refund(request: SettlementRequest): Promise<RefundAnswer> {
    const result = await this.once('refund', request.idempotencyKey, request, async () => {
      const done = await this.operationsOn(request.reference);
      const captured = done.get('capture');
      if (!captured) throw new ProviderError(`Nothing was captured on ${request.reference}`);
      if (request.amount > Number(captured.amount)) throw new ProviderError('Cannot refund more than was captured');
      const declinedAs = done.get('authorize')?.refundDeclinedAs;
      return typeof declinedAs === 'string'
        ? { reference: request.reference, refunded: false, reason: declinedAs }
        : { reference: request.reference, amount: request.amount, refunded: true };
    });
    // Records written before refunds could be declined have no `refunded`: they were refunds.
    return result.refunded === false ? { refunded: false, reason: result.reason } : { refunded: true };
  }

  /**
   * Performs `act` once per (operation, key). The record is written after acting, so a crash in
   * between acts again on retry, which is harmless here since acting is only deciding.
   */
  private async once<T extends Prisma.InputJsonObject>(operation: Operation, idempotencyKey: string, request: object, act: () => Promise<T>): Promise<T> {
    const requestHash = createHash('sha256').update(JSON.stringify(request)).digest('hex');
    const where = { operation_idempotencyKey: { operation, idempotencyKey } };
    const recorded = await this.db.providerOperation.findUnique({ where });
    if (recorded) return answerFrom<T>(recorded, requestHash);
    const result = await act();
    await this.db.providerOperation.createMany({ data: [{ operation, idempotencyKey, requestHash, result }], skipDuplicates: true });
    // A concurrent call with the same key may have written first: everyone gets its answer.
    return answerFrom<T>(await this.db.providerOperation.findUniqueOrThrow({ where }), requestHash);
  }

  /** What was done on an authorization, by operation (with each operation's recorded result). */
  private async operationsOn(reference: string): Promise<Map<string, Record<string, unknown>>> {
    const rows = await this.db.providerOperation.findMany({ where: { result: { path: ['reference'], equals: reference } } });
    return new Map(rows.map((row) => [row.operation, row.result as Record<string, unknown>]));
  }
}

function answerFrom<T>(record: { requestHash: string; result: unknown; operation: string }, requestHash: string): T {
  // As real providers do: a key reused for a different request is an error, not a replay.
  if (record.requestHash !== requestHash) throw new ProviderError(`Idempotency key of ${record.operation} reused with a different request`);
  return record.result as T;
}
