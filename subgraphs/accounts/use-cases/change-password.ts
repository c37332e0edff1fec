/**
 * A new password ends every session of the customer (whoever else held one, a thief included)
 * and opens a new one for the caller, of the caller's kind, in one transaction.
 */
import { invalidInput } from '../../../platform/errors/domain-error.ts';
import { unauthenticated } from '../../../platform/errors/index.ts';
import { requireSignedIn } from '../../../platform/identity/identity.ts';
import { checkPassword } from '../domain/credentials.ts';
import { hashPassword, verifyPassword } from '../infrastructure/password-hasher.ts';
import type { AccountsDependencies, Caller } from './dependencies.ts';
import { openSession, type IssuedSession } from './open-session.ts';

export async function changePassword(
  deps: AccountsDependencies,
  caller: Caller,
  input: { currentPassword: string; newPassword: string },
): Promise<IssuedSession> {
  const customerId = requireSignedIn(caller.identity);
  const newPassword = checkPassword(input.newPassword, 'newPassword');
  const customer = await deps.customers.findById(customerId);
  if (!customer) throw unauthenticated('Your account no longer exists: sign in again');
  // A stolen session must not become a way to guess the password: same protection as sign-in.
  await deps.guard.admitSignIn(customer.email, caller.clientAddress);
  if (input.currentPassword.length > 1024 || !(await verifyPassword(input.currentPassword, customer.passwordHash))) {
    await deps.guard.signInFailed(customer.email, caller.clientAddress);
    throw invalidInput('The current password is incorrect', 'currentPassword');
  }
  await deps.guard.signInSucceeded(customer.email);
  const current = caller.identity.sessionId ? await deps.sessions.find(caller.identity.sessionId) : null;
  const kind = current?.kind ?? caller.requestedKind;
  const passwordHash = await hashPassword(newPassword);
  return deps.inTransaction(async (tx) => {
    await deps.customers.setPasswordHash(customerId, passwordHash, tx);
    await deps.sessions.revokeAllOf(customerId, 'password_changed', tx);
    return openSession(deps, { ...customer, passwordHash }, kind, tx);
  });
}
