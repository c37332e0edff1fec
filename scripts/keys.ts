/**
 * Generates the platform's two Ed25519 key pairs as PEM files:
 *   auth-token-{private,public}.pem         accounts signs client tokens, the gateway verifies them;
 *   gateway-identity-{private,public}.pem   the gateway signs the identity it forwards, subgraphs verify it.
 *
 *   npm run keys -- --out <dir>     (default .data/keys)
 *
 * Existing files are never overwritten: rotating a key would invalidate every token in circulation
 * and every running service, so that has to be a deliberate act (delete the files), not a side
 * effect of re-running setup. `npm start` and the compose `keys` service both rely on that.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { keyNames } from '../platform/config.ts';

export const keyPairNames = ['auth-token', 'gateway-identity'] as const;
export type KeyPairName = (typeof keyPairNames)[number];

export const defaultKeysDir = '.data/keys';

export interface KeyPairFiles {
  privateKeyFile: string;
  publicKeyFile: string;
  /** What this call did, so callers can tell the user without re-checking the disk. */
  status: 'created' | 'existing' | 'public-key-restored';
}

export type KeyFiles = Record<KeyPairName, KeyPairFiles>;

export function keyPairPaths(dir: string, name: KeyPairName): { privateKeyFile: string; publicKeyFile: string } {
  const base = resolve(dir);
  return { privateKeyFile: join(base, `${name}-private.pem`), publicKeyFile: join(base, `${name}-public.pem`) };
}

export function ensureKeyPair(dir: string, name: KeyPairName): KeyPairFiles {
  const { privateKeyFile, publicKeyFile } = keyPairPaths(dir, name);
  const hasPrivate = existsSync(privateKeyFile);
  const hasPublic = existsSync(publicKeyFile);

  if (hasPrivate && hasPublic) return { privateKeyFile, publicKeyFile, status: 'existing' };

  if (hasPublic) {
    // Regenerating would mean overwriting a public key that verifiers may already trust, and a
    // lone public key cannot sign anything: the operator has to decide.
    throw new Error(
      `${publicKeyFile} exists but ${privateKeyFile} does not; delete the public key to generate a new pair`,
    );
  }

  // Mode 0700 so that the directory of private keys is not listable by others; an existing
  // directory (e.g. a Docker volume) keeps the mode its owner chose.
  mkdirSync(resolve(dir), { recursive: true, mode: 0o700 });

  if (hasPrivate) {
    // The public half is derivable, so a lost public file is repaired without rotating the key.
    const publicPem = createPublicKey(createPrivateKey(readFileSync(privateKeyFile, 'utf8')))
      .export({ type: 'spki', format: 'pem' })
      .toString();
    writeNew(publicKeyFile, publicPem, 0o644);
    return { privateKeyFile, publicKeyFile, status: 'public-key-restored' };
  }

  const { privateKey, publicKey } = generateKeyPairSync('ed25519', {
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  // Private first: if we crash in between, the next run finds the private key and derives the
  // public one instead of refusing to continue.
  writeNew(privateKeyFile, privateKey, 0o600);
  writeNew(publicKeyFile, publicKey, 0o644);
  return { privateKeyFile, publicKeyFile, status: 'created' };
}

export function ensureKeys(dir: string = defaultKeysDir): KeyFiles {
  return {
    'auth-token': ensureKeyPair(dir, 'auth-token'),
    'gateway-identity': ensureKeyPair(dir, 'gateway-identity'),
  };
}

/** The `*_FILE` variables (see platform/config.ts `readSecret`) that point services at the files. */
export function keyFileEnv(keys: KeyFiles): Record<string, string> {
  return {
    [`${keyNames.authTokenPrivate}_FILE`]: keys['auth-token'].privateKeyFile,
    [`${keyNames.authTokenPublic}_FILE`]: keys['auth-token'].publicKeyFile,
    [`${keyNames.gatewayIdentityPrivate}_FILE`]: keys['gateway-identity'].privateKeyFile,
    [`${keyNames.gatewayIdentityPublic}_FILE`]: keys['gateway-identity'].publicKeyFile,
  };
}

function writeNew(file: string, contents: string, mode: number): void {
  // `wx` fails instead of overwriting if another process created the file since we looked.
  writeFileSync(file, contents, { flag: 'wx', mode });
  // The creation mode is filtered by the umask; the private key's mode must not depend on it.
  chmodSync(file, mode);
}

function main(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: { out: { type: 'string', short: 'o', default: defaultKeysDir }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  });
  if (values.help) {
    console.log('usage: npm run keys -- [--out <dir>]   (default .data/keys; existing files are kept)');
    return;
  }
  const keys = ensureKeys(values.out);
  for (const name of keyPairNames) {
    const { privateKeyFile, publicKeyFile, status } = keys[name];
    const message = {
      created: 'created',
      existing: 'exist, kept',
      'public-key-restored': 'private key exists, kept; public key derived from it',
    }[status];
    console.log(`${name}: ${message}\n  ${privateKeyFile}\n  ${publicKeyFile}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main(process.argv.slice(2));
  } catch (error) {
    console.error(`keys: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
