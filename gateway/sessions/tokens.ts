/**
 * Verifies the tokens accounts issues (access tokens and web session tokens: one format,
 * docs/decisions/0022). A token names its signing key by `kid` (the key's RFC 7638 thumbprint):
 * looked up in the JWKS accounts publishes, which jose's remote key set fetches again when a kid
 * it does not know arrives (a rotation), no more often than its cooldown. The static key
 * (AUTH_TOKEN_PUBLIC_KEY) still verifies tokens without a kid and tokens of its own kid, so the
 * gateway starts and verifies with accounts unreachable.
 */
import { KeyObject } from 'node:crypto';
import { GraphQLError } from 'graphql';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type CryptoKey, type JWTHeaderParameters, type FlattenedJWSInput } from 'jose';
import { ErrorCode } from '../../platform/errors/index.ts';
import { customerTokenIdentity, customerTokenVerifyOptions } from '../../platform/identity/customer-token.ts';
import type { Identity } from '../../platform/identity/identity.ts';
import { publicJwkOf } from '../../platform/identity/keys.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';

export interface VerifiedToken {
  identity: Identity;
  /** Epoch ms. */
  expiresAt: number;
}

export interface TokenKeysOptions {
  /** The key of AUTH_TOKEN_PUBLIC_KEY. */
  staticKey?: CryptoKey;
  /** Accounts' JWKS (AUTH_JWKS_URL). */
  jwksUrl?: URL;
  /** Least time between two fetches of the JWKS for unknown kids. @default 30_000 */
  jwksCooldownMs?: number;
  /** A JWKS fetch taking longer fails. @default 5_000 */
  jwksTimeoutMs?: number;
}

const invalid = () => new GatewayRefusal(ErrorCode.UNAUTHENTICATED, 'The token is invalid', { status: 401 });

export class TokenVerifier {
  readonly #staticKey: CryptoKey | undefined;
  readonly #staticKid: Promise<string | undefined>;
  readonly #jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  constructor(options: TokenKeysOptions) {
    this.#staticKey = options.staticKey;
    // Its kid is its thumbprint (node reads it even from a key imported as not extractable).
    this.#staticKid = options.staticKey ? publicJwkOf(KeyObject.from(options.staticKey)).then((jwk) => jwk.kid) : Promise.resolve(undefined);
    this.#jwks = options.jwksUrl
      ? createRemoteJWKSet(options.jwksUrl, { cooldownDuration: options.jwksCooldownMs ?? 30_000, timeoutDuration: options.jwksTimeoutMs ?? 5_000 })
      : undefined;
  }

  /** Whether any key can verify a token at all. */
  get configured(): boolean {
    return this.#staticKey !== undefined || this.#jwks !== undefined;
  }

  /** The identity in a token, or a GatewayRefusal: 401 for a bad token, 503 when its key cannot be fetched now. */
  async verify(token: string): Promise<VerifiedToken> {
    try {
      const { payload } = await jwtVerify(token, (header, input) => this.#keyFor(header, input), customerTokenVerifyOptions);
      const identity = customerTokenIdentity(payload);
      return { identity, expiresAt: payload.exp! * 1000 };
    } catch (error) {
      if (error instanceof GatewayRefusal) throw error;
      // Claims that are not ours (customerTokenIdentity): the same 401, as a refusal of the gateway.
      if (error instanceof GraphQLError && error.extensions.code === ErrorCode.UNAUTHENTICATED) throw new GatewayRefusal(ErrorCode.UNAUTHENTICATED, error.message, { status: 401 });
      if (error instanceof joseErrors.JWTExpired) throw new GatewayRefusal(ErrorCode.UNAUTHENTICATED, 'The token has expired: sign in again', { status: 401 });
      // The key set could not be fetched (accounts unreachable): nothing is wrong with the token.
      if (error instanceof joseErrors.JWKSTimeout || !(error instanceof joseErrors.JOSEError)) {
        throw new GatewayRefusal('SERVICE_UNAVAILABLE', 'Tokens cannot be checked right now: try again', { status: 503, retryAfterSeconds: 2, closeCode: 1013 });
      }
      throw invalid();
    }
  }

  async #keyFor(header: JWTHeaderParameters, input: FlattenedJWSInput): Promise<CryptoKey> {
    if (header.kid === undefined || header.kid === (await this.#staticKid)) {
      if (!this.#staticKey) throw new joseErrors.JWKSNoMatchingKey();
      return this.#staticKey;
    }
    if (!this.#jwks) throw new joseErrors.JWKSNoMatchingKey();
    return (await this.#jwks(header, input)) as CryptoKey;
  }
}
