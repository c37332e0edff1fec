/**
 * A mobile session's refresh: the presented refresh token is exchanged for a new one and a new
 * access token. A second use of a token ends its session (domain/session.ts decideRefresh).
 */
import { unauthenticated } from '../../../platform/errors/index.ts';
import { grantFor, refreshTokenShape, revocableUntil } from '../domain/session.ts';
import { hashRefreshToken, newRefreshToken } from '../infrastructure/refresh-tokens.ts';
import type { AccountsDependencies } from './dependencies.ts';
import { accessTokenFor, type IssuedSession } from './open-session.ts';

export async function refreshSession(deps: AccountsDependencies, input: { refreshToken: string }): Promise<IssuedSession> {
  if (!refreshTokenShape.test(input.refreshToken)) throw unauthenticated('The refresh token is not valid: sign in again');
  const now = deps.clock();
  const grant = grantFor('mobile', deps.lifetimes, now);
  const successor = newRefreshToken();
  const rotation = await deps.sessions.rotate(
    hashRefreshToken(input.refreshToken),
    { hash: successor.hash, expiresAt: grant.refreshTokenExpiresAt! },
    revocableUntil(grant.accessTokenExpiresAt),
    now,
  );
  if (rotation.outcome !== 'rotate') throw unauthenticated(rotation.message);
  const customer = await deps.customers.findById(rotation.session.customerId);
  // The account was deleted since: its sessions went with it (cascade), so this is a race only.
  if (!customer) throw unauthenticated('Your account no longer exists: sign in again');
  const accessToken = await accessTokenFor(deps, customer, rotation.session, grant);
  return { customer, session: rotation.session, accessToken, refreshToken: successor.token, accessTokenExpiresAt: grant.accessTokenExpiresAt };
}
