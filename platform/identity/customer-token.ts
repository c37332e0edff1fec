/**
 * The access tokens clients hold: issued by accounts at sign-in, verified by the gateway.
 * A token names its session (`sid`) so the gateway can refuse it once the session is revoked,
 * and its key (`kid`) so the gateway finds the right public key in accounts' JWKS
 * (docs/decisions/0022-sessions.md). Tokens without either (tests, older tokens) still verify
 * against a static public key; without `sid` a token cannot be revoked before it expires.
 */
import { errors as joseErrors, jwtVerify, SignJWT, type CryptoKey, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { unauthenticated } from '../errors/index.ts';
import { identityClaims, isRole, sessionIdOf, type Identity, type Role } from './identity.ts';
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
}

/**
 * How long a token lives: seconds from now, or an exact grant (each instant rounded down to the
 * second) reckoned before signing, so that `exp - iat` is the lifetime even when signing happens
 * in the next second.
 */
export type CustomerTokenLifetime = number | { issuedAt: Date; expiresAt: Date };

const epochSeconds = (instant: Date) => Math.floor(instant.getTime() / 1000);

export async function issueCustomerToken(
  privateKey: CryptoKey,
  subject: CustomerTokenSubject,
  lifetime: CustomerTokenLifetime,
  options: CustomerTokenOptions = {},
): Promise<string> {
  return new SignJWT(identityClaims(subject))
    .setProtectedHeader({ alg: signingAlgorithm, typ: 'JWT', ...(options.keyId ? { kid: options.keyId } : {}) })
    .setSubject(subject.customerId)
    .setIssuer(customerTokenIssuer)
    .setAudience(customerTokenAudience)
    .setIssuedAt(typeof lifetime === 'number' ? undefined : epochSeconds(lifetime.issuedAt))
    .setExpirationTime(typeof lifetime === 'number' ? `${lifetime}s` : epochSeconds(lifetime.expiresAt))
    .sign(privateKey);
}

/** How an access token is verified wherever it is: accounts' issuer and audience, EdDSA, 5 s of clock skew. */
export const customerTokenVerifyOptions: JWTVerifyOptions = {
  issuer: customerTokenIssuer,
  audience: customerTokenAudience,
  algorithms: [signingAlgorithm],
  requiredClaims: ['sub', 'exp'],
  clockTolerance: 5,
};

/**
 * The identity a verified access token's claims carry (with its session id when it names one),
 * or UNAUTHENTICATED (HTTP 401): a role we do not know, a `sid` that is not a string.
 */
export function customerTokenIdentity(payload: JWTPayload): Identity {
  const claimed = Array.isArray(payload.roles) ? payload.roles : [];
  if (!claimed.every(isRole)) throw unauthenticated('The token carries an unknown role', 401);
  if (payload.sid !== undefined && typeof payload.sid !== 'string') throw unauthenticated('The token is invalid', 401);
  return { customerId: payload.sub!, roles: claimed, ...sessionIdOf(payload) };
}

/**
 * The identity in an access token, or UNAUTHENTICATED (HTTP 401) with a reason the client can
 * act on. A token that is present but invalid never degrades to anonymous access. `key` is a
 * public key, or a key lookup such as jose's `createRemoteJWKSet` / `createLocalJWKSet` (which
 * picks the key by the token's `kid`).
 */
export async function verifyCustomerToken(key: CryptoKey | JWTVerifyGetKey, token: string): Promise<Identity> {
  try {
    // Two calls for jose's two overloads (a key, a key lookup): one call with the union does not type-check.
    const { payload } = typeof key === 'function' ? await jwtVerify(token, key, customerTokenVerifyOptions) : await jwtVerify(token, key, customerTokenVerifyOptions);
    return customerTokenIdentity(payload);
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw unauthenticated('The token has expired: sign in again', 401);
    if (error instanceof joseErrors.JOSEError) throw unauthenticated('The token is invalid', 401);
    throw error;
  }
}
