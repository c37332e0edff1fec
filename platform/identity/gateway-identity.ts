/**
 * The identity the gateway forwards to subgraphs, as a short-lived Ed25519-signed JWT in one
 * header. Every subgraph request must carry a valid one, anonymous callers included, so that a
 * request that did not come through the gateway (`_entities` and `_service` too) is refused.
 */
import { errors as joseErrors, jwtVerify, SignJWT, type CryptoKey } from 'jose';
import { unauthenticated } from '../errors/index.ts';
import { anonymous, isRole, type Identity } from './identity.ts';
import { signingAlgorithm } from './keys.ts';

export const gatewayIdentityHeader = 'x-commerce-identity';
const issuer = 'commerce-gateway';
const audience = 'commerce-subgraphs';

/**
 * Signs identities, reusing a signature for the same identity until close to its expiry: signing
 * costs tens of microseconds, and a busy gateway forwards the same few identities many times.
 */
export class GatewayIdentitySigner {
  private readonly cache = new Map<string, { token: string; renewAt: number }>();

  constructor(
    private readonly privateKey: CryptoKey,
    /** Lifetime of a signed identity. @default 60 */
    private readonly ttlSeconds = 60,
  ) {}

  async sign(identity: Identity): Promise<string> {
    const key = `${identity.customerId ?? ''}|${identity.roles.join(',')}`;
    const now = Date.now();
    const cached = this.cache.get(key);
    if (cached && cached.renewAt > now) return cached.token;
    const token = await new SignJWT({ roles: [...identity.roles] })
      .setProtectedHeader({ alg: signingAlgorithm, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSeconds}s`)
      .setSubject(identity.customerId ?? '')
      .sign(this.privateKey);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(key, { token, renewAt: now + (this.ttlSeconds * 1000) / 2 });
    return token;
  }
}

/** The caller's identity, or UNAUTHENTICATED with HTTP 401 when the gateway did not sign it. */
export async function verifyGatewayIdentity(publicKey: CryptoKey, header: string | undefined | null): Promise<Identity> {
  if (!header) throw unauthenticated('Requests must come through the gateway', 401);
  try {
    const { payload } = await jwtVerify(header, publicKey, {
      issuer,
      audience,
      algorithms: [signingAlgorithm],
      requiredClaims: ['exp'],
      clockTolerance: 5,
    });
    const claimed = Array.isArray(payload.roles) ? payload.roles : [];
    if (!claimed.every(isRole)) throw unauthenticated('Requests must come through the gateway', 401);
    if (!payload.sub) return { ...anonymous, roles: claimed };
    return { customerId: payload.sub, roles: claimed };
  } catch (error) {
    if (error instanceof joseErrors.JOSEError) throw unauthenticated('Requests must come through the gateway', 401);
    throw error;
  }
}
