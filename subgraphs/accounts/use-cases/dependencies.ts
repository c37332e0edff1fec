/** What the accounts use cases work with, and who is asking. */
import type { Identity } from '../../../platform/identity/identity.ts';
import type { SigningKey } from '../../../platform/identity/keys.ts';
import type { SessionKind, SessionLifetimes } from '../domain/session.ts';
import type { AttemptGuard } from '../infrastructure/attempt-guard.ts';
import type { CustomerRepository } from '../infrastructure/customer-repository.ts';
import type { InTransaction } from '../infrastructure/database.ts';
import type { SessionRepository } from '../infrastructure/session-repository.ts';

export interface AccountsDependencies {
  customers: CustomerRepository;
  sessions: SessionRepository;
  guard: AttemptGuard;
  /** Signs access tokens; its `keyId` goes in their header. */
  signingKey: SigningKey;
  lifetimes: SessionLifetimes;
  clock: () => Date;
  inTransaction: InTransaction;
}

export interface Caller {
  identity: Identity;
  /** The client's address (from the gateway's `x-commerce-client-address`), for throttling. */
  clientAddress: string;
  /** The kind of session a sign-in of this request opens: `web` when the client asked for a cookie. */
  requestedKind: SessionKind;
}
