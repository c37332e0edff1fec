/**
 * The port to a payment provider (card processor). The simulated one in
 * infrastructure/simulated-provider.ts implements it; a real provider's adapter would too.
 *
 * Every operation is idempotent by `idempotencyKey` (we pass the order id): asked again, the
 * provider answers what it answered the first time and does not act twice. That is what lets
 * payments call it OUTSIDE any database transaction, and again after a crash, safely.
 */

export interface AuthorizationRequest {
  idempotencyKey: string;
  /** Minor units of `currency`. */
  amount: number;
  currency: string;
  /** The client's token for the card the provider holds, e.g. `tok_visa`; never card data. */
  paymentToken: string;
}

export type AuthorizationAnswer =
  | {
      approved: true;
      /** The provider's id of the authorization (the hold), used to capture, void or refund it. */
      reference: string;
      /** The card's brand, e.g. `visa`: all we keep of the card. */
      cardBrand: string;
    }
  | {
      approved: false;
      /** Machine-readable, e.g. `card_declined`, `unknown_token`. */
      reason: string;
    };

/** A refund the provider declined is an answer, as a declined card is: the money stays captured. */
export type RefundAnswer =
  | { refunded: true }
  | {
      refunded: false;
      /** Machine-readable, e.g. `card_closed`. */
      reason: string;
    };

export interface SettlementRequest {
  idempotencyKey: string;
  /** The authorization's `reference`. */
  reference: string;
  amount: number;
}

export interface PaymentProvider {
  /** Places a hold on the card, or declines. Declining is an answer, not an error. */
  authorize(request: AuthorizationRequest): Promise<AuthorizationAnswer>;
  /** Takes the held amount. Rejects (ProviderError) when the authorization cannot be captured. */
  capture(request: SettlementRequest): Promise<void>;
  /** Releases a hold that was not captured. Rejects when it was captured. */
  void(request: Omit<SettlementRequest, 'amount'>): Promise<void>;
  /**
   * Gives back a captured amount, or declines to (e.g. the card was closed): declining is an
   * answer, not an error. Rejects (ProviderError) when nothing was captured.
   */
  refund(request: SettlementRequest): Promise<RefundAnswer>;
}

/** The provider refused an operation (as opposed to declining a card): a bug or a state mismatch. */
export class ProviderError extends Error {
  override readonly name = 'ProviderError';
}
