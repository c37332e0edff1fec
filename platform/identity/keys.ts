/**
 * Ed25519 keys from PEM text. Asymmetric on purpose: the gateway can verify clients' tokens but
 * not mint them, and a subgraph can verify the gateway's signature but not forge it for another.
 *
 * Keys are named by their RFC 7638 JWK thumbprint (`kid`): accounts puts it in the header of every
 * token it signs and publishes its public keys as a JWKS, so the gateway picks the right key after
 * a rotation without being reconfigured (docs/decisions/0022-sessions.md).
 */
import { createPublicKey, KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, importPKCS8, importSPKI, type CryptoKey, type JWK } from 'jose';

export const signingAlgorithm = 'EdDSA';

export function importPrivateKey(pem: string): Promise<CryptoKey> {
  return importPKCS8(pem.trim(), signingAlgorithm);
}

export function importPublicKey(pem: string): Promise<CryptoKey> {
  return importSPKI(pem.trim(), signingAlgorithm);
}

/** Every PEM public key in a text (PEMs one after another, as AUTH_TOKEN_RETIRED_PUBLIC_KEYS holds them). */
export function importPublicKeys(pems: string | undefined): Promise<CryptoKey[]> {
  const blocks = pems?.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [];
  return Promise.all(blocks.map(importPublicKey));
}

/** The public half of a private key (node derives it; the private key need not be extractable). */
export function publicKeyOf(privateKey: CryptoKey): KeyObject {
  return createPublicKey(KeyObject.from(privateKey));
}

/** A public key as a JWK carrying its thumbprint as `kid`, for a JWKS. */
export async function publicJwkOf(publicKey: CryptoKey | KeyObject): Promise<JWK> {
  const jwk = await exportJWK(publicKey);
  const { kty, crv, x } = jwk;
  const kid = await calculateJwkThumbprint({ kty, crv, x });
  return { kty, crv, x, kid, alg: signingAlgorithm, use: 'sig' } as JWK;
}

/** The `kid` of a key pair: the RFC 7638 thumbprint of its public key. */
export async function keyIdOf(privateKey: CryptoKey): Promise<string> {
  return (await publicJwkOf(publicKeyOf(privateKey))).kid!;
}

/** A private key with the `kid` its tokens carry in their header. */
export interface SigningKey {
  privateKey: CryptoKey;
  keyId: string;
}

export async function signingKeyOf(privateKey: CryptoKey): Promise<SigningKey> {
  return { privateKey, keyId: await keyIdOf(privateKey) };
}

/**
 * The JSON Web Key Set of the current signing key and the retired public keys, whose tokens stay
 * valid until they expire. Duplicates (a retired key that is still current) are listed once.
 */
export async function jwksOf(current: CryptoKey, retired: readonly CryptoKey[] = []): Promise<{ keys: JWK[] }> {
  const keys = [await publicJwkOf(publicKeyOf(current)), ...(await Promise.all(retired.map((key) => publicJwkOf(key))))];
  const seen = new Set<string>();
  return { keys: keys.filter((key) => !seen.has(key.kid!) && seen.add(key.kid!)) };
}
