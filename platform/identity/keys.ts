/**
 * Ed25519 keys from PEM text. Asymmetric on purpose: the gateway can verify clients' tokens but
 * not mint them, and a subgraph can verify the gateway's signature but not forge it for another.
 */
import { importPKCS8, importSPKI, type CryptoKey } from 'jose';

export const signingAlgorithm = 'EdDSA';

export function importPrivateKey(pem: string): Promise<CryptoKey> {
  return importPKCS8(pem.trim(), signingAlgorithm);
}

export function importPublicKey(pem: string): Promise<CryptoKey> {
  return importSPKI(pem.trim(), signingAlgorithm);
}
