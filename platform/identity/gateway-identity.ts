/**
 * The identity the gateway forwards to subgraphs, as a short-lived Ed25519-signed JWT in one
 * header. Every subgraph request must carry a valid one, anonymous callers included, so that a
 * request that did not come through the gateway (`_entities` and `_service` too) is refused.
 *
 * Each signature is bound to ONE subgraph: its audience is `subgraph:<name>`, and a subgraph
 * accepts only its own. An identity captured at one subgraph (a log, a proxy, a compromised
 * process) is worthless at every other. Lifetimes are short: 60 s for a call (an HTTP fetch, a
 * subgraph socket's `connection_init`), 300 s for a subscription, which the subgraph ends when its
 * identity expires and the gateway renews before then (docs/decisions/0011).
 */
import { errors as joseErrors, jwtVerify, SignJWT, type CryptoKey } from 'jose';
import { unauthenticated } from '../errors/index.ts';
import { anonymous, identityClaims, isRole, sessionIdOf, type Identity } from './identity.ts';
import { signingAlgorithm } from './keys.ts';

export const gatewayIdentityHeader = 'x-commerce-identity';
const issuer = 'commerce-gateway';

/** The `aud` claim of an identity signed for the subgraph `name`. */
export function subgraphAudience(subgraph: string): string {
  return `subgraph:${subgraph}`;
}

/**
 * What a signature is for, which sets its lifetime: `call` for an HTTP fetch or a socket's
 * `connection_init`, `subscription` for one subscription on a subgraph socket.
 */
export type IdentityUse = 'call' | 'subscription';

export interface GatewayIdentitySignerOptions {
  /** Lifetime of an identity signed for a call. @default 60 */
  callTtlSeconds?: number;
  /**
   * Lifetime of an identity signed for a subscription: the subgraph ends the subscription when it
   * expires, so the gateway re-subscribes before then. @default 300
   */
  subscriptionTtlSeconds?: number;
  /** Signatures kept for reuse; the cache is emptied when it grows past this. @default 10_000 */
  maxCachedSignatures?: number;
}

/**
 * Signs identities, reusing a signature for the same identity, subgraph and lifetime until half
 * of its lifetime has passed: signing costs tens of microseconds, and a busy gateway forwards the
 * same few identities many times.
 */
export class GatewayIdentitySigner {
  private readonly cache = new Map<string, { token: string; renewAt: number }>();
  private readonly options: Required<GatewayIdentitySignerOptions>;

  constructor(
    private readonly privateKey: CryptoKey,
    options: GatewayIdentitySignerOptions = {},
  ) {
    this.options = { callTtlSeconds: 60, subscriptionTtlSeconds: 300, maxCachedSignatures: 10_000, ...options };
    for (const [name, value] of Object.entries(this.options)) {
      if (!Number.isInteger(value) || value <= 0) throw new Error(`GatewayIdentitySigner: ${name} must be a positive integer, got ${value}`);
    }
  }

  /**
   * The identity signed for the subgraph `subgraph` (its name in the supergraph, e.g. `orders`).
   * `lifetime` is what the signature is for (its default lifetime), or an explicit one.
   */
  async sign(identity: Identity, subgraph: string, lifetime: IdentityUse | { ttlSeconds: number } = 'call'): Promise<string> {
    const ttlSeconds = typeof lifetime === 'object' ? lifetime.ttlSeconds : lifetime === 'subscription' ? this.options.subscriptionTtlSeconds : this.options.callTtlSeconds;
    if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new Error(`ttlSeconds must be a positive integer, got ${ttlSeconds}`);
    const key = `${subgraph}|${ttlSeconds}|${identity.customerId ?? ''}|${identity.roles.join(',')}|${identity.sessionId ?? ''}`;
    const now = Date.now();
    const cached = this.cache.get(key);
    if (cached && cached.renewAt > now) return cached.token;
    const token = await new SignJWT(identityClaims(identity))
      .setProtectedHeader({ alg: signingAlgorithm, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(subgraphAudience(subgraph))
      .setIssuedAt()
      .setExpirationTime(`${ttlSeconds}s`)
      .setSubject(identity.customerId ?? '')
      .sign(this.privateKey);
    if (this.cache.size >= this.options.maxCachedSignatures) this.cache.clear();
    this.cache.set(key, { token, renewAt: now + (ttlSeconds * 1000) / 2 });
    return token;
  }
}

export interface VerifiedIdentity {
  identity: Identity;
  /** When the signature expires (epoch milliseconds). */
  expiresAt: number;
}

/**
 * The caller's identity and when its signature expires, or UNAUTHENTICATED with HTTP 401 when
 * the gateway did not sign it for this subgraph (another subgraph's audience included), or it
 * expired.
 */
export async function verifyGatewayIdentityClaims(publicKey: CryptoKey, header: string | undefined | null, subgraph: string): Promise<VerifiedIdentity> {
  if (!header) throw unauthenticated('Requests must come through the gateway', 401);
  try {
    const { payload } = await jwtVerify(header, publicKey, {
      issuer,
      audience: subgraphAudience(subgraph),
      algorithms: [signingAlgorithm],
      requiredClaims: ['exp'],
      clockTolerance: 5,
    });
    const claimed = Array.isArray(payload.roles) ? payload.roles : [];
    if (!claimed.every(isRole)) throw unauthenticated('Requests must come through the gateway', 401);
    const identity: Identity = payload.sub ? { customerId: payload.sub, roles: claimed, ...sessionIdOf(payload) } : { ...anonymous, roles: claimed };
    return { identity, expiresAt: payload.exp! * 1000 };
  } catch (error) {
    if (error instanceof joseErrors.JOSEError) throw unauthenticated('Requests must come through the gateway', 401);
    throw error;
  }
}

/** The caller's identity, or UNAUTHENTICATED with HTTP 401 when the gateway did not sign it for this subgraph. */
export async function verifyGatewayIdentity(publicKey: CryptoKey, header: string | undefined | null, subgraph: string): Promise<Identity> {
  return (await verifyGatewayIdentityClaims(publicKey, header, subgraph)).identity;
}
