/**
 * The rules of sessions and their tokens (docs/decisions/0022-sessions.md). Pure: no storage, no
 * transport, the clock passed in.
 *
 * A session is one sign-in. A `web` session lives in a browser's HttpOnly cookie as one access
 * token of 12 h; a `mobile` session holds a short access token and an opaque refresh token that is
 * rotated on every use. A refresh token used twice means two parties hold it (a stolen copy, or a
 * client that lost a race with itself): the whole session is ended, as the OAuth 2.0 Security BCP
 * (RFC 9700 §4.14.2) recommends, because the server cannot tell which of them is the thief.
 */

export type SessionKind = 'web' | 'mobile';

/** Why a session ended, as stored in `sessions.revoked_reason`. */
export type RevocationReason = 'signed_out' | 'signed_out_everywhere' | 'password_changed' | 'refresh_token_reused';

export interface SessionLifetimes {
  /** A mobile access token. @default 300 (AUTH_ACCESS_TOKEN_TTL_SECONDS) */
  accessTokenTtlSeconds: number;
  /** The one token of a web session, kept in a cookie. @default 43_200 (AUTH_WEB_SESSION_TTL_SECONDS) */
  webSessionTtlSeconds: number;
  /** A refresh token, counted from its issue (each rotation starts a new one). @default 2_592_000 (AUTH_REFRESH_TOKEN_TTL_SECONDS) */
  refreshTokenTtlSeconds: number;
}

export const defaultSessionLifetimes: SessionLifetimes = {
  accessTokenTtlSeconds: 300,
  webSessionTtlSeconds: 43_200,
  refreshTokenTtlSeconds: 2_592_000,
};

/** Throws when a lifetime is not a positive whole number of seconds. */
export function checkLifetimes(lifetimes: SessionLifetimes): SessionLifetimes {
  for (const [name, value] of Object.entries(lifetimes)) {
    if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got ${value}`);
  }
  return lifetimes;
}

/** How long the access token of a session of this kind lives. */
export function accessTokenTtlOf(kind: SessionKind, lifetimes: SessionLifetimes): number {
  return kind === 'web' ? lifetimes.webSessionTtlSeconds : lifetimes.accessTokenTtlSeconds;
}

/** What one issue of tokens for a session consists of, and until when each is good. */
export interface TokenGrant {
  /** When the grant was made (whole seconds): its tokens' `iat`. */
  issuedAt: Date;
  accessTokenExpiresAt: Date;
  /** Absent for a web session: its cookie is its only credential. */
  refreshTokenExpiresAt?: Date;
}

/** Expiries in whole seconds, as a JWT's `exp` states them, so `expiresAt` and the token agree. */
export function grantFor(kind: SessionKind, lifetimes: SessionLifetimes, now: Date): TokenGrant {
  const issuedAt = Math.floor(now.getTime() / 1000) * 1000;
  const accessTokenExpiresAt = new Date(issuedAt + accessTokenTtlOf(kind, lifetimes) * 1000);
  if (kind === 'web') return { issuedAt: new Date(issuedAt), accessTokenExpiresAt };
  return { issuedAt: new Date(issuedAt), accessTokenExpiresAt, refreshTokenExpiresAt: new Date(issuedAt + lifetimes.refreshTokenTtlSeconds * 1000) };
}

/** `rt_` + 32 random bytes in base64url: recognisable in a leak scan, checked before any lookup. */
export const refreshTokenShape = /^rt_[A-Za-z0-9_-]{43}$/;

/** A refresh token as presented, with what the store knows of it and its session. */
export interface PresentedRefreshToken {
  expiresAt: Date;
  /** When it was exchanged for its successor; set means this is a second use. */
  usedAt: Date | null;
  session: { kind: SessionKind; revokedAt: Date | null };
}

export type RefreshDecision =
  | { outcome: 'rotate' }
  | { outcome: 'refuse'; message: string }
  | { outcome: 'revoke'; reason: 'refresh_token_reused'; message: string };

const signInAgain = 'The refresh token is not valid: sign in again';

/** What presenting a refresh token leads to. `token` is null when no such token exists. */
export function decideRefresh(token: PresentedRefreshToken | null, now: Date): RefreshDecision {
  if (!token) return { outcome: 'refuse', message: signInAgain };
  if (token.session.revokedAt) return { outcome: 'refuse', message: 'The session has ended: sign in again' };
  // Reuse wins over expiry: a stolen token replayed late still ends the session it came from.
  if (token.usedAt) return { outcome: 'revoke', reason: 'refresh_token_reused', message: 'The refresh token was already used: the session has ended, sign in again' };
  if (token.expiresAt.getTime() <= now.getTime()) return { outcome: 'refuse', message: 'The refresh token has expired: sign in again' };
  if (token.session.kind !== 'mobile') return { outcome: 'refuse', message: signInAgain };
  return { outcome: 'rotate' };
}

/**
 * Until when a revoked session must stay in the feed for a token that expires at `expiresAt`:
 * the gateway accepts a token up to 5 s past its `exp` (clock tolerance), and `exp` is rounded to
 * the second, so a margin of 10 s keeps every still-accepted token refused.
 */
export function revocableUntil(accessTokenExpiresAt: Date): Date {
  return new Date(accessTokenExpiresAt.getTime() + 10_000);
}
