/**
 * Refresh tokens as the client holds them (`rt_` + 32 random bytes, base64url) and as accounts
 * stores them (the hex SHA-256). A plain hash is enough: the token is 256 random bits, so there is
 * nothing to guess from it, unlike a password, and lookups stay one index probe.
 */
import { createHash, randomBytes } from 'node:crypto';

export function newRefreshToken(): { token: string; hash: string } {
  const token = `rt_${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashRefreshToken(token) };
}

export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
