/**
 * An error the domain raises for a rule a caller broke. It knows nothing of GraphQL: the subgraph
 * server turns it into a GraphQL error with `extensions.code` (and `field`) when it reaches a
 * client, so domain code stays free of transport concerns.
 */
export type DomainErrorCode = 'BAD_USER_INPUT' | 'NOT_FOUND' | 'CONFLICT' | 'FORBIDDEN' | 'OUT_OF_STOCK' | 'PAYMENT_DECLINED' | 'CANCELLATION_REFUSED';

export class DomainError extends Error {
  override readonly name = 'DomainError';
  constructor(
    readonly code: DomainErrorCode,
    message: string,
    /** The offending input, e.g. `email` or `input.price`. */
    readonly field?: string,
    /** A machine-readable why, for codes with several causes (`extensions.reason`), e.g. ALREADY_DISPATCHED. */
    readonly reason?: string,
  ) {
    super(message);
  }
}

export const invalidInput = (message: string, field?: string) => new DomainError('BAD_USER_INPUT', message, field);
export const notFoundError = (message: string) => new DomainError('NOT_FOUND', message);
export const conflictError = (message: string, field?: string) => new DomainError('CONFLICT', message, field);
