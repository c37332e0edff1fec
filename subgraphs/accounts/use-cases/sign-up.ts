/**
 * Sign-up: credentials in, an account ready to sign in to. The answer is the same whether the
 * email was free or taken, and so is the work (the scrypt hash, one INSERT … ON CONFLICT DO
 * NOTHING), so neither the answer nor its timing tells a caller which emails have accounts.
 * The owner of a taken email is not disturbed: nothing is written and their password stays.
 */
import { checkName, checkPassword, normaliseEmail } from '../domain/credentials.ts';
import { hashPassword } from '../infrastructure/password-hasher.ts';
import type { AccountsDependencies, Caller } from './dependencies.ts';

export const signUpAnswer = 'If this email can be used, the account is ready: sign in';

export async function signUp(
  deps: Pick<AccountsDependencies, 'customers' | 'guard'>,
  caller: Pick<Caller, 'clientAddress'>,
  input: { email: string; password: string; name: string },
): Promise<{ message: string }> {
  // Every check runs before the (slow) hash and before anything is written.
  const email = normaliseEmail(input.email);
  const password = checkPassword(input.password);
  const name = checkName(input.name);
  await deps.guard.admitSignUp(caller.clientAddress);
  await deps.customers.createUnlessTaken({ email, name, passwordHash: await hashPassword(password) });
  return { message: signUpAnswer };
}
