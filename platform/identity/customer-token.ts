/**
 * The access tokens clients hold: issued by accounts at sign-in, verified by the gateway.
 * A token names its session (`sid`) so the gateway can refuse it once the session is revoked,
 * and its key (`kid`) so the gateway finds the right public key in accounts' JWKS
 * (docs/decisions/0022-sessions.md). Tokens without either (tests, older tokens) still verify
 * against a static public key; without `sid` a token cannot be revoked before it expires.
 */
import { errors as joseErrors, jwtVerify, SignJWT, type CryptoKey, type JWTVerifyGetKey } from 'jose';
import { unauthenticated } from '../errors/index.ts';
import { isRole, type Identity, type Role } from './identity.ts';
import { signingAlgorithm } from './keys.ts';

export const customerTokenIssuer = 'commerce-accounts';
export const customerTokenAudience = 'commerce-gateway';

export interface CustomerTokenSubject {
  customerId: string;
  roles: readonly Role[];
  /** The session the token belongs to: its `sid` claim. Omitted: a token that cannot be revoked. */
  sessionId?: string;
}

export interface CustomerTokenOptions {
  /** The `kid` header: the thumbprint of the signing key (keys.ts `keyIdOf`). */
  keyId?: string;
  /** An exact expiry (rounded down to the second) in place of `ttlSeconds` from now. */
  expiresAt?: Date;
  /**
   * When the grant was made (`iat`, rounded down to the second), when it is not now: the instant
   * `expiresAt` was reckoned from, so that `exp - iat` is the lifetime even when signing happens
   * in the next second.
   */
  issuedAt?: Date;
}

export async function issueCustomerToken(
  privateKey: CryptoKey,
  subject: CustomerTokenSubject,
  ttlSeconds: number,
  options: CustomerTokenOptions = {},
): Promise<string> {
  return new SignJWT({ roles: [...subject.roles], ...(subject.sessionId ? { sid: subject.sessionId } : {}) })
    .setProtectedHeader({ alg: signingAlgorithm, typ: 'JWT', ...(options.keyId ? { kid: options.keyId } : {}) })
    .setSubject(subject.customerId)
    .setIssuer(customerTokenIssuer)
    .setAudience(customerTokenAudience)
    .setIssuedAt(options.issuedAt ? Math.floor(options.issuedAt.getTime() / 1000) : undefined)
    .setExpirationTime(options.expiresAt ? Math.floor(options.expiresAt.getTime() / 1000) : `${ttlSeconds}s`)
    .sign(privateKey);
}

/**
 * The identity in an access token (with its session id when it names one), or UNAUTHENTICATED
 * (HTTP 401) with a reason the client can act on. A token that is present but invalid never
 * degrades to anonymous access. `key` is a public key, or a key lookup such as jose's
 * `createRemoteJWKSet` / `createLocalJWKSet` (which picks the key by the token's `kid`).
 */
export async function verifyCustomerToken(key: CryptoKey | JWTVerifyGetKey, token: string): Promise<Identity> {
  try {
    const options = {
      issuer: customerTokenIssuer,
      audience: customerTokenAudience,
      algorithms: [signingAlgorithm],
      requiredClaims: ['sub', 'exp'],
      clockTolerance: 5,
    };
    const { payload } = typeof key === 'function' ? await jwtVerify(token, key, options) : await jwtVerify(token, key, options);
    const claimed = Array.isArray(payload.roles) ? payload.roles : [];
    if (!claimed.every(isRole)) throw unauthenticated('The token carries an unknown role', 401);
    const sessionId = typeof payload.sid === 'string' && payload.sid !== '' ? { sessionId: payload.sid } : {};
    return { customerId: payload.sub!, roles: claimed, ...sessionId };
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw unauthenticated('The token has expired: sign in again', 401);
    if (error instanceof joseErrors.JOSEError) throw unauthenticated('The token is invalid', 401);
    throw error;
  }
}
