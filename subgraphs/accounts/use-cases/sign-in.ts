/** Sign-in: credentials in, a new session out, behind brute-force protection (domain/throttling.ts). */
import { unauthenticated } from '../../../platform/errors/index.ts';
import { unknownUserHash, verifyPassword } from '../infrastructure/password-hasher.ts';
import type { AccountsDependencies, Caller } from './dependencies.ts';
import { openSession, type IssuedSession } from './open-session.ts';

export async function signIn(deps: AccountsDependencies, caller: Caller, input: { email: string; password: string }): Promise<IssuedSession> {
  const refused = () => unauthenticated('Email or password is incorrect');
  const email = input.email.trim().toLowerCase();
  if (email.length === 0 || email.length > 254 || input.password.length > 1024) throw refused();
  // A locked account is refused before its password is looked at: guessing on gains nothing.
  await deps.guard.admitSignIn(email, caller.clientAddress);
  const customer = await deps.customers.findByEmail(email);
  // Hash even for unknown emails, so response time does not reveal which emails have accounts;
  // and count their failures too, so a lock does not reveal it either.
  const matches = await verifyPassword(input.password, customer?.passwordHash ?? unknownUserHash);
  if (!customer || !matches) {
    await deps.guard.signInFailed(email, caller.clientAddress);
    throw refused();
  }
  await deps.guard.signInSucceeded(email);
  return openSession(deps, customer, caller.requestedKind);
}
