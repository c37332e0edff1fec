/**
 * The sessions accounts has ended (sign-out, password change, a reused refresh token), learnt by
 * polling its revocation feed (`GET /sessions/revocations?after=<cursor>`, docs/decisions/0022)
 * every `pollMs`. A revoked session id is kept until the last token of that session expires, then
 * forgotten: the set holds only sessions whose tokens could still be presented.
 *
 * Accounts being down must not stop the gateway: what is known is kept, the poll is retried at
 * its interval, and the outage is one warning (and one line when it is over), not one per poll.
 * Tokens of sessions revoked during an outage are refused as soon as a poll gets through.
 */
import { OutageLog } from '../../platform/database/outage.ts';
import { gatewayIdentityHeader, type GatewayIdentitySigner } from '../../platform/identity/gateway-identity.ts';
import { anonymous } from '../../platform/identity/identity.ts';
import type { Logger } from '../../platform/logging/logger.ts';

export interface RevocationFeedOptions {
  /** The feed's URL (accounts' `/sessions/revocations`). */
  url: URL;
  /** Signs the gateway's request, as every request to a subgraph is signed. */
  signer: GatewayIdentitySigner;
  /** The subgraph serving the feed: the audience of the signature. @default 'accounts' */
  subgraph?: string;
  /** AUTH_REVOCATION_POLL_MS. @default 2_000 */
  pollMs?: number;
  /** A poll taking longer is abandoned (and retried at the next interval). @default 5_000 */
  timeoutMs?: number;
  log: Logger;
  /** Sessions newly learnt to be revoked: their open connections are to be ended. */
  onRevoked: (sessionIds: readonly string[]) => void;
}

interface FeedPage {
  revocations: { sessionId: string; expiresAt: string }[];
  /** Opaque; a number is taken as its text. */
  cursor?: string | number | null;
}

function isFeedPage(body: unknown): body is FeedPage {
  if (!body || typeof body !== 'object') return false;
  const { revocations, cursor } = body as Partial<FeedPage>;
  return Array.isArray(revocations) && revocations.every((entry) => typeof entry?.sessionId === 'string' && typeof entry.expiresAt === 'string') && (cursor === null || cursor === undefined || typeof cursor === 'string' || typeof cursor === 'number');
}

export class RevocationFeed {
  readonly #options: RevocationFeedOptions;
  /** Revoked session id → when its last token expires (epoch ms). */
  readonly #revoked = new Map<string, number>();
  readonly #outage: OutageLog;
  #cursor: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: AbortController | undefined;
  #stopped = false;
  #polls = 0;

  constructor(options: RevocationFeedOptions) {
    this.#options = options;
    this.#outage = new OutageLog({ logger: options.log, failure: 'session revocation feed unreachable; keeping what is known and retrying', recovery: 'session revocation feed reachable again' });
  }

  /** Revoked sessions whose tokens may still be presented. */
  get size(): number {
    return this.#revoked.size;
  }

  /** Successful polls since start (tests wait on it). */
  get polls(): number {
    return this.#polls;
  }

  isRevoked(sessionId: string): boolean {
    const until = this.#revoked.get(sessionId);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.#revoked.delete(sessionId);
    return false;
  }

  start(): void {
    void this.#pollThenWait();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#inFlight?.abort();
  }

  /** One poll; resolves when it is done, whatever happened (failures are logged, not thrown). */
  async poll(): Promise<void> {
    const controller = new AbortController();
    this.#inFlight = controller;
    const timeout = setTimeout(() => controller.abort(), this.#options.timeoutMs ?? 5_000);
    try {
      const url = new URL(this.#options.url);
      if (this.#cursor !== undefined) url.searchParams.set('after', this.#cursor);
      const response = await fetch(url, {
        headers: { accept: 'application/json', [gatewayIdentityHeader]: await this.#options.signer.sign(anonymous, this.#options.subgraph ?? 'accounts') },
        signal: controller.signal,
      });
      // A cursor the feed does not take (its sequence was reset, e.g. a restored database): forget
      // it, and the next poll reads every revocation still alive again.
      if (response.status === 400 && this.#cursor !== undefined) this.#cursor = undefined;
      if (!response.ok) throw new Error(`the revocation feed answered HTTP ${response.status}`);
      const page: unknown = await response.json();
      if (!isFeedPage(page)) throw new Error('the revocation feed answered in an unknown shape');
      this.#learn(page);
      this.#polls += 1;
      this.#outage.recovered();
    } catch (error) {
      if (!this.#stopped) this.#outage.failed(error, { url: this.#options.url.href });
    } finally {
      clearTimeout(timeout);
      if (this.#inFlight === controller) this.#inFlight = undefined;
    }
  }

  #learn(page: FeedPage): void {
    const now = Date.now();
    const learnt: string[] = [];
    for (const { sessionId, expiresAt } of page.revocations) {
      const until = Date.parse(expiresAt);
      if (!Number.isFinite(until) || until <= now) continue;
      if (!this.#revoked.has(sessionId)) learnt.push(sessionId);
      this.#revoked.set(sessionId, Math.max(until, this.#revoked.get(sessionId) ?? 0));
    }
    if (page.cursor !== null && page.cursor !== undefined && page.cursor !== '') this.#cursor = String(page.cursor);
    for (const [sessionId, until] of this.#revoked) if (until <= now) this.#revoked.delete(sessionId);
    if (learnt.length > 0) this.#options.onRevoked(learnt);
  }

  // A timeout after each poll, not an interval: polls never overlap when accounts is slow.
  async #pollThenWait(): Promise<void> {
    if (this.#stopped) return;
    await this.poll();
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#pollThenWait(), this.#options.pollMs ?? 2_000);
    this.#timer.unref();
  }
}
