/** Sign-up and sign-in: credentials in, a bearer token out. */
import type { CryptoKey } from 'jose';
import { unauthenticated } from '../../../platform/errors/index.ts';
import { issueCustomerToken } from '../../../platform/identity/customer-token.ts';
import { checkName, checkPassword, normaliseEmail } from '../domain/credentials.ts';
import type { CustomerRecord, CustomerRepository } from '../infrastructure/customer-repository.ts';
import { hashPassword, unknownUserHash, verifyPassword } from '../infrastructure/password-hasher.ts';

export interface TokenIssuer {
  privateKey: CryptoKey;
  /** @default 3600 */
  ttlSeconds: number;
}

export interface AuthResult {
  token: string;
  expiresAt: string;
  customer: CustomerRecord;
}

async function authResult(issuer: TokenIssuer, customer: CustomerRecord): Promise<AuthResult> {
  const expiresAt = new Date(Date.now() + issuer.ttlSeconds * 1000).toISOString();
  const token = await issueCustomerToken(issuer.privateKey, { customerId: customer.id, roles: customer.roles }, issuer.ttlSeconds);
  return { token, expiresAt, customer };
}

export async function signUp(
  deps: { customers: CustomerRepository; issuer: TokenIssuer },
  input: { email: string; password: string; name: string },
): Promise<AuthResult> {
  // Every check runs before the (slow) hash and before anything is written.
  const email = normaliseEmail(input.email);
  const password = checkPassword(input.password);
  const name = checkName(input.name);
  const customer = await deps.customers.create({ email, name, passwordHash: await hashPassword(password) });
  return authResult(deps.issuer, customer);
}

export async function signIn(
  deps: { customers: CustomerRepository; issuer: TokenIssuer },
  input: { email: string; password: string },
): Promise<AuthResult> {
  const refused = () => unauthenticated('Email or password is incorrect');
  const email = input.email.trim().toLowerCase();
  if (email.length === 0 || email.length > 254 || input.password.length > 1024) throw refused();
  const customer = await deps.customers.findByEmail(email);
  // Hash even for unknown emails, so response time does not reveal which emails have accounts.
  const matches = await verifyPassword(input.password, customer?.passwordHash ?? unknownUserHash);
  if (!customer || !matches) throw refused();
  return authResult(deps.issuer, customer);
}
