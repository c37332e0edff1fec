/**
 * The database password given apart from the URL (`DATABASE_PASSWORD`, or `DATABASE_PASSWORD_FILE`
 * as docker-compose.yml mounts it), so that no URL has to carry it in plain text: pure functions,
 * no servers.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { databaseUrlFor, withDatabasePassword } from '../platform/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'database-password-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A password file as a secret is usually written: by `echo` or an editor, with a final newline. */
function passwordFile(password: string): string {
  const file = join(dir, `password-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return file;
}

describe('the database password from a file', () => {
  it('becomes the password of every context’s database derived from DATABASE_URL, without its final newline', () => {
    const env = { DATABASE_URL: 'postgres://postgres@postgres:5432/commerce', DATABASE_PASSWORD_FILE: passwordFile('s3cret') };

    expect(databaseUrlFor('accounts', env)).toBe('postgres://postgres:s3cret@postgres:5432/commerce_accounts');
    expect(databaseUrlFor('shipping', env)).toBe('postgres://postgres:s3cret@postgres:5432/commerce_shipping');
  });

  it('fills in a context’s own URL too', () => {
    const env = { ORDERS_DATABASE_URL: 'postgres://orders@db.internal/shop_orders', DATABASE_PASSWORD_FILE: passwordFile('s3cret') };

    expect(databaseUrlFor('orders', env)).toBe('postgres://orders:s3cret@db.internal/shop_orders');
  });

  it('is percent-encoded, so that any character survives the URL', () => {
    const password = 'p@ss:w/rd?#%&=+ é';
    const url = withDatabasePassword('postgres://postgres@postgres:5432/commerce', { DATABASE_PASSWORD_FILE: passwordFile(password) });

    expect(decodeURIComponent(new URL(url).password)).toBe(password);
    expect(new URL(url).host).toBe('postgres:5432');
    expect(new URL(url).pathname).toBe('/commerce');
  });

  it('leaves a URL that carries its own password as it is, as libpq does with PGPASSWORD', () => {
    const env = { DATABASE_URL: 'postgres://shop:own@db/commerce', DATABASE_PASSWORD: 'other' };

    expect(databaseUrlFor('catalog', env)).toBe('postgres://shop:own@db/commerce_catalog');
  });

  it('changes nothing when neither DATABASE_PASSWORD nor DATABASE_PASSWORD_FILE is set', () => {
    expect(databaseUrlFor('payments', { DATABASE_URL: 'postgres://postgres@postgres:5432/commerce' })).toBe(
      'postgres://postgres@postgres:5432/commerce_payments',
    );
    expect(databaseUrlFor('payments', {})).toBeUndefined();
  });

  it('says which file it could not read', () => {
    const missing = join(dir, 'no-such-password');

    expect(() => databaseUrlFor('inventory', { DATABASE_URL: 'postgres://postgres@postgres/commerce', DATABASE_PASSWORD_FILE: missing })).toThrow(missing);
  });
});
