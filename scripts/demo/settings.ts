/**
 * Whether `npm start` seeds the demo data, and with which accounts. Demo data is a development
 * default: the README publishes the demo passwords, so an account created with one in production
 * is an admin account anyone can sign in to.
 *
 * - `SEED_DEMO_DATA`: `true` or `false`. @default `true` in development, `false` in production.
 * - In production, `SEED_DEMO_DATA=true` seeds the catalog, the stock and ONE account, the admin,
 *   with the password from `DEMO_ADMIN_PASSWORD` (or `DEMO_ADMIN_PASSWORD_FILE`); start-up fails,
 *   naming that variable, without it, and with an empty address book. The demo customer is not
 *   created: its password is published.
 */
import { isProduction, readSecret } from '../../platform/config.ts';
import { passwordLength } from '../../subgraphs/accounts/domain/credentials.ts';
import { demoUsers, type DemoUser } from './data.ts';

type Env = Record<string, string | undefined>;

export type DemoSeeding =
  | { seed: false }
  | {
      seed: true;
      /** The accounts to create, with the passwords to give them. */
      users: DemoUser[];
      /** Whether the passwords are the README's (development) or came from configuration. */
      publishedPasswords: boolean;
    };

/** Raised for configuration `npm start` cannot run with; its message names the variable. */
export class DemoSeedingConfigurationError extends Error {
  override readonly name = 'DemoSeedingConfigurationError';
}

function seedFlag(env: Env): boolean {
  const raw = env.SEED_DEMO_DATA;
  if (raw === undefined || raw === '') return !isProduction(env);
  if (raw === 'true' || raw === 'false') return raw === 'true';
  throw new DemoSeedingConfigurationError(`SEED_DEMO_DATA must be true or false, got "${raw}"`);
}

export function demoSeeding(env: Env = process.env): DemoSeeding {
  if (!seedFlag(env)) return { seed: false };
  if (!isProduction(env)) return { seed: true, users: [demoUsers.admin, demoUsers.customer], publishedPasswords: true };
  const password = readSecret('DEMO_ADMIN_PASSWORD', env)?.replace(/\r?\n$/, '');
  if (!password) {
    throw new DemoSeedingConfigurationError(
      'SEED_DEMO_DATA=true in production needs the admin password: set DEMO_ADMIN_PASSWORD (or DEMO_ADMIN_PASSWORD_FILE); the demo passwords are published and never used in production',
    );
  }
  if (password.length < passwordLength.min || password.length > passwordLength.max || password.trim() === '') {
    throw new DemoSeedingConfigurationError(`DEMO_ADMIN_PASSWORD must be ${passwordLength.min} to ${passwordLength.max} characters, not only spaces`);
  }
  if (Object.values(demoUsers).some((user) => user.password === password)) {
    throw new DemoSeedingConfigurationError('DEMO_ADMIN_PASSWORD is a published demo password: choose another');
  }
  // A real admin's address book starts empty: a made-up office address is demo data for development only.
  return { seed: true, users: [{ ...demoUsers.admin, password, addresses: [] }], publishedPasswords: false };
}
