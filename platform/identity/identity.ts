/**
 * Who is calling: the identity the gateway verified and forwards to subgraphs. Anonymous callers
 * have no customer id and no roles; they may browse the catalog and sign in.
 */
import { forbidden, unauthenticated } from '../errors/index.ts';

export const roles = ['customer', 'admin'] as const;
export type Role = (typeof roles)[number];

export interface Identity {
  /** The customer's id (`sub`), or null for an anonymous caller. */
  customerId: string | null;
  roles: readonly Role[];
  /**
   * The accounts session the caller's token belongs to (its `sid` claim), when the token names
   * one: sign-out and password changes end it (docs/decisions/0022-sessions.md).
   */
  sessionId?: string;
}

export const anonymous: Identity = Object.freeze({ customerId: null, roles: [] });

/** The claims besides `sub` an identity travels as in a JWT: its roles and, when it has one, its session (`sid`). */
export function identityClaims(identity: Pick<Identity, 'roles' | 'sessionId'>): { roles: Role[]; sid?: string } {
  return { roles: [...identity.roles], ...(identity.sessionId ? { sid: identity.sessionId } : {}) };
}

/** A JWT's `sid` claim as the identity's `sessionId`, to spread into it: nothing when absent or empty. */
export function sessionIdOf(payload: Readonly<Record<string, unknown>>): { sessionId?: string } {
  return typeof payload.sid === 'string' && payload.sid !== '' ? { sessionId: payload.sid } : {};
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (roles as readonly string[]).includes(value);
}

export function isAdmin(identity: Identity): boolean {
  return identity.roles.includes('admin');
}

/** The caller's customer id, or UNAUTHENTICATED. */
export function requireSignedIn(identity: Identity): string {
  if (!identity.customerId) throw unauthenticated('Sign in to do this');
  return identity.customerId;
}

/** Admins only: UNAUTHENTICATED when anonymous, FORBIDDEN when signed in without the role. */
export function requireAdmin(identity: Identity): string {
  const customerId = requireSignedIn(identity);
  if (!isAdmin(identity)) throw forbidden('This needs the admin role');
  return customerId;
}
