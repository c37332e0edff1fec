/**
 * The bearer tokens clients hold: issued by accounts at sign-up/sign-in, verified by the gateway.
 */
import { errors as joseErrors, jwtVerify, SignJWT, type CryptoKey } from 'jose';
import { unauthenticated } from '../errors/index.ts';
import { isRole, type Identity, type Role } from './identity.ts';
import { signingAlgorithm } from './keys.ts';

export const customerTokenIssuer = 'commerce-accounts';
export const customerTokenAudience = 'commerce-gateway';

export async function issueCustomerToken(
  privateKey: CryptoKey,
  subject: { customerId: string; roles: readonly Role[] },
  ttlSeconds: number,
): Promise<string> {
  return new SignJWT({ roles: [...subject.roles] })
    .setProtectedHeader({ alg: signingAlgorithm, typ: 'JWT' })
    .setSubject(subject.customerId)
    .setIssuer(customerTokenIssuer)
    .setAudience(customerTokenAudience)
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(privateKey);
}

/**
 * The identity in a bearer token, or UNAUTHENTICATED (HTTP 401) with a reason the client can
 * act on. A token that is present but invalid never degrades to anonymous access.
 */
export async function verifyCustomerToken(publicKey: CryptoKey, token: string): Promise<Identity> {
  try {
    const { payload } = await jwtVerify(token, publicKey, {
      issuer: customerTokenIssuer,
      audience: customerTokenAudience,
      algorithms: [signingAlgorithm],
      requiredClaims: ['sub', 'exp'],
      clockTolerance: 5,
    });
    const claimed = Array.isArray(payload.roles) ? payload.roles : [];
    if (!claimed.every(isRole)) throw unauthenticated('The token carries an unknown role', 401);
    return { customerId: payload.sub!, roles: claimed };
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw unauthenticated('The token has expired: sign in again', 401);
    if (error instanceof joseErrors.JOSEError) throw unauthenticated('The token is invalid', 401);
    throw error;
  }
}
