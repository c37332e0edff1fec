/** A new session for a customer and the tokens that go with it. */
import { issueCustomerToken } from '../../../platform/identity/customer-token.ts';
import { grantFor, revocableUntil, type SessionKind, type TokenGrant } from '../domain/session.ts';
import type { CustomerRecord } from '../infrastructure/customer-repository.ts';
import type { AccountsTransaction } from '../infrastructure/database.ts';
import { newRefreshToken } from '../infrastructure/refresh-tokens.ts';
import type { SessionRecord } from '../infrastructure/session-repository.ts';
import type { AccountsDependencies } from './dependencies.ts';

/** Tokens handed to a client. For a web session `accessToken` goes in the cookie, never the body. */
export interface IssuedSession {
  customer: CustomerRecord;
  session: SessionRecord;
  accessToken: string;
  /** Mobile sessions only. */
  refreshToken: string | null;
  accessTokenExpiresAt: Date;
}

/** `db` lets a caller open it inside its own transaction (changePassword). */
export async function openSession(
  deps: AccountsDependencies,
  customer: CustomerRecord,
  kind: SessionKind,
  db?: AccountsTransaction,
): Promise<IssuedSession> {
  const grant = grantFor(kind, deps.lifetimes, deps.clock());
  const refresh = grant.refreshTokenExpiresAt ? newRefreshToken() : undefined;
  const session = await deps.sessions.open(
    {
      customerId: customer.id,
      kind,
      tokensExpireAt: revocableUntil(grant.accessTokenExpiresAt),
      ...(refresh ? { refreshToken: { hash: refresh.hash, expiresAt: grant.refreshTokenExpiresAt! } } : {}),
    },
    db,
  );
  const accessToken = await accessTokenFor(deps, customer, session, grant);
  return { customer, session, accessToken, refreshToken: refresh?.token ?? null, accessTokenExpiresAt: grant.accessTokenExpiresAt };
}

export function accessTokenFor(deps: AccountsDependencies, customer: CustomerRecord, session: SessionRecord, grant: TokenGrant): Promise<string> {
  return issueCustomerToken(
    deps.signingKey.privateKey,
    { customerId: customer.id, roles: customer.roles, sessionId: session.id },
    { issuedAt: grant.issuedAt, expiresAt: grant.accessTokenExpiresAt },
    { keyId: deps.signingKey.keyId },
  );
}
