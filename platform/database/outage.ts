/**
 * One warning per outage, not one per attempt. A loop that retries its database every few hundred
 * milliseconds would otherwise write a line per retry for as long as PostgreSQL is away (a
 * restart takes seconds, a failover can take a minute), burying whatever else went wrong. The
 * first failure of an outage is a warning, the retries after it are debug lines, and the first
 * success after it is one info line with how long it lasted and how many attempts failed.
 *
 * A failure of another kind within the same outage (a lost connection, then an SQL error once the
 * server is back) is warned about again: it is news, not a repeat.
 */
import { errorFields, type Logger } from '../logging/logger.ts';
import { isConnectionLost } from './connection-loss.ts';

export interface OutageLogOptions {
  /** Where the lines go. */
  logger: Logger;
  /** The warning at the start of an outage, e.g. `outbox relay lost its database; retrying`. */
  failure: string;
  /** The line when it works again, e.g. `outbox relay reconnected`. @default `${failure} — recovered` */
  recovery?: string;
}

export class OutageLog {
  readonly #options: Required<OutageLogOptions>;
  #since: number | undefined;
  #failures = 0;
  #lastKind: 'connection' | 'other' | undefined;

  constructor(options: OutageLogOptions) {
    this.#options = { recovery: `${options.failure} — recovered`, ...options };
  }

  /** Whether the last attempt failed (an outage is going on). */
  get down(): boolean {
    return this.#since !== undefined;
  }

  /** Records a failed attempt: a warning if it starts an outage (or is of a new kind), else a debug line. */
  failed(error: unknown, fields: Record<string, unknown> = {}): void {
    this.#failures += 1;
    const kind = isConnectionLost(error) ? 'connection' : 'other';
    const line = { ...fields, ...errorFields(error), attempt: this.#failures };
    if (this.#since !== undefined && kind === this.#lastKind) return this.#options.logger.debug(this.#options.failure, line);
    this.#since ??= Date.now();
    this.#lastKind = kind;
    this.#options.logger.warn(this.#options.failure, line);
  }

  /** Records a successful attempt: ends the outage, if there was one, with one info line. */
  recovered(fields: Record<string, unknown> = {}): void {
    if (this.#since === undefined) return;
    this.#options.logger.info(this.#options.recovery, { ...fields, downMs: Date.now() - this.#since, failedAttempts: this.#failures });
    this.#since = undefined;
    this.#failures = 0;
    this.#lastKind = undefined;
  }
}

/**
 * A pool's 'error' listener: a pool reports each idle connection it loses, all at once when the
 * server goes (one per connection), and nothing when it is back. One warning per `windowMs`,
 * debug lines for the rest. The next query simply opens a new connection.
 * `windowMs` @default 10_000
 */
export function idleConnectionLost(logger: Logger, message: string, windowMs = 10_000): (error: Error) => void {
  let warnedAt = -Infinity;
  return (error) => {
    const now = Date.now();
    if (now - warnedAt < windowMs) return logger.debug(message, errorFields(error));
    warnedAt = now;
    logger.warn(message, errorFields(error));
  };
}
