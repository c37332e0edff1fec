/**
 * Sessions, their refresh tokens (as SHA-256 only) and the revocation feed, in the accounts
 * database. The rules come from domain/session.ts; this file only reads, locks and writes.
 */
import { isUuid, newId } from '../../../platform/ids.ts';
import { decideRefresh, type RefreshDecision, type RevocationReason, type SessionKind } from '../domain/session.ts';
import type { AccountsDatabase, AccountsTransaction } from './database.ts';

type Db = AccountsDatabase | AccountsTransaction;

export interface SessionRecord {
  id: string;
  customerId: string;
  kind: SessionKind;
  revokedAt: Date | null;
}

/** A refresh token to store: its hash and expiry, never the token. */
export interface RefreshTokenRow {
  hash: string;
  expiresAt: Date;
}

export type Rotation =
  | { outcome: 'rotate'; session: SessionRecord }
  | Exclude<RefreshDecision, { outcome: 'rotate' }>;

/** One revoked session in the feed: the gateway refuses its tokens until `expiresAt`. */
export interface Revocation {
  sessionId: string;
  expiresAt: Date;
}

/** The columns of a SessionRecord. */
const sessionFields = { id: true, customerId: true, kind: true, revokedAt: true } as const;

export class SessionRepository {
  constructor(private readonly db: AccountsDatabase) {}

  /** Opens a session; a mobile one with the first refresh token of its family. */
  async open(
    input: { customerId: string; kind: SessionKind; tokensExpireAt: Date; refreshToken?: RefreshTokenRow },
    db: Db = this.db,
  ): Promise<SessionRecord> {
    const id = newId();
    await db.session.create({
      data: {
        id,
        customerId: input.customerId,
        kind: input.kind,
        tokensExpireAt: input.tokensExpireAt,
        ...(input.refreshToken ? { refreshTokens: { create: { hash: input.refreshToken.hash, expiresAt: input.refreshToken.expiresAt } } } : {}),
      },
    });
    return { id, customerId: input.customerId, kind: input.kind, revokedAt: null };
  }

  /** A `sid` that is not one of ours (a token from before sessions, a test's) names no session. */
  find(sessionId: string): Promise<SessionRecord | null> {
    if (!isUuid(sessionId)) return Promise.resolve(null);
    return this.db.session.findUnique({ where: { id: sessionId }, select: sessionFields });
  }

  /**
   * Exchanges a refresh token for its successor, in one transaction that holds the presented
   * token's row locked: of two concurrent exchanges of one token, the second waits for the first
   * to commit, then finds the token used and ends the session (domain/session.ts). A reuse
   * revocation is committed before the caller is refused.
   */
  rotate(presentedHash: string, successor: RefreshTokenRow, tokensExpireAt: Date, now: Date): Promise<Rotation> {
    return this.db.$transaction(async (tx) => {
      const [row] = await tx.$queryRaw<{ expires_at: Date; used_at: Date | null; session_id: string }[]>`
        SELECT expires_at, used_at, session_id FROM refresh_tokens WHERE hash = ${presentedHash} FOR UPDATE`;
      const session = row ? await tx.session.findUniqueOrThrow({ where: { id: row.session_id }, select: sessionFields }) : null;
      const decision = decideRefresh(row && session ? { expiresAt: row.expires_at, usedAt: row.used_at, session } : null, now);
      if (decision.outcome === 'revoke') {
        await this.revoke(tx, { id: session!.id }, decision.reason);
        return decision;
      }
      if (decision.outcome === 'refuse') return decision;
      await tx.refreshToken.update({ where: { hash: presentedHash }, data: { usedAt: now } });
      await tx.refreshToken.create({ data: { hash: successor.hash, sessionId: session!.id, expiresAt: successor.expiresAt } });
      await tx.session.update({ where: { id: session!.id }, data: { tokensExpireAt } });
      return { outcome: 'rotate', session: session! };
    });
  }

  /** Ends one session; false when it was not this customer's or had ended already. */
  async revokeSession(customerId: string, sessionId: string, reason: RevocationReason): Promise<boolean> {
    if (!isUuid(sessionId)) return false;
    return (await this.db.$transaction((tx) => this.revoke(tx, { id: sessionId, customerId }, reason))) > 0;
  }

  /** Ends every open session of a customer; how many. `tx` to do it inside the caller's transaction. */
  revokeAllOf(customerId: string, reason: RevocationReason, tx?: AccountsTransaction): Promise<number> {
    return tx ? this.revoke(tx, { customerId }, reason) : this.db.$transaction((own) => this.revoke(own, { customerId }, reason));
  }

  /**
   * Ends the open sessions that match and appends each to the revocation feed, with the expiry of
   * the last access token issued for it. Their refresh tokens die with them (decideRefresh).
   *
   * Every writer of the feed holds one advisory lock from before its rows get their `seq` until
   * it commits, so feed rows become visible in `seq` order: a reader that saw row n will never
   * later find a row below n (only gaps of rolled-back writers, which stay empty). Revocations
   * are rare and their transactions short, so this queue costs nothing noticeable.
   */
  private async revoke(tx: AccountsTransaction, where: { id?: string; customerId?: string }, reason: RevocationReason): Promise<number> {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(${feedWriterLock})`;
    const revoked = await tx.session.updateManyAndReturn({
      where: { ...where, revokedAt: null },
      data: { revokedAt: new Date(), revokedReason: reason },
      select: { id: true, tokensExpireAt: true },
    });
    if (revoked.length > 0) {
      await tx.sessionRevocation.createMany({ data: revoked.map((session) => ({ sessionId: session.id, expiresAt: session.tokensExpireAt })) });
    }
    return revoked.length;
  }

  /**
   * Revocations after `cursor` (the last `seq` read, all of them up to `limit`), or without a
   * cursor those whose tokens may still be alive; and the cursor to ask from next time.
   */
  async revocationsAfter(cursor: bigint | undefined, limit: number): Promise<{ revocations: Revocation[]; cursor: bigint }> {
    type Row = { seq: bigint | null; session_id: string | null; expires_at: Date | null; head: bigint };
    // One statement, one snapshot: the head is the last row this very read could see.
    const rows = cursor !== undefined
      ? await this.db.$queryRaw<Row[]>`
          WITH head AS (SELECT ${cursor}::bigint AS seq)
          SELECT r.seq, r.session_id::text AS session_id, r.expires_at, head.seq AS head
          FROM head LEFT JOIN session_revocations r ON r.seq > head.seq
          ORDER BY r.seq
          LIMIT ${limit}`
      : await this.db.$queryRaw<Row[]>`
          WITH head AS (SELECT coalesce(max(seq), 0) AS seq FROM session_revocations)
          SELECT r.seq, r.session_id::text AS session_id, r.expires_at, head.seq AS head
          FROM head LEFT JOIN session_revocations r ON r.expires_at > now()
          ORDER BY r.seq
          LIMIT ${limit}`;
    const found = rows.filter((row) => row.seq !== null);
    const last = found.at(-1)?.seq ?? null;
    // After a full page the next read continues after its last row; otherwise everything up to
    // the head was read (without a cursor, what is not returned had expired).
    const next = cursor !== undefined ? (last ?? cursor) : found.length === limit && last !== null ? last : BigInt(rows[0]!.head);
    return { revocations: found.map((row) => ({ sessionId: row.session_id!, expiresAt: row.expires_at! })), cursor: next };
  }
}

/** Any constant: the advisory lock every writer of the revocation feed holds (see revoke). */
const feedWriterLock = 220_022n;

/** The cursor as the gateway sees it: opaque, only ever sent back. */
export function formatCursor(cursor: bigint): string {
  return cursor.toString();
}

export function parseCursor(text: string): bigint | undefined {
  return /^\d{1,19}$/.test(text) ? BigInt(text) : undefined;
}
