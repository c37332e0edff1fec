/**
 * The outbox relay of one context's database: publishes the rows of `outbox_events` onto the bus,
 * in transaction order, at least once, and never skips a row of a transaction still in flight.
 *
 * Why it cannot skip: each row carries the id of the transaction that wrote it (`tx_id`, xid8).
 * The scan takes only rows below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest
 * transaction still running on the server: every transaction below it has ended, so each of its
 * rows is either visible now or never will be (rolled back), and every transaction that has not
 * ended (or not written yet) has, or will get, an id at or above it. Rows are picked by
 * `published_at IS NULL`, not by "id > last id", so a row is never behind a cursor.
 *
 * Order is transaction-id order, then insertion order within a transaction. For two
 * transactions that change the same aggregate it is their commit order as long as each takes
 * the aggregate's row lock (its version bump, or SELECT … FOR UPDATE) before any other write.
 *
 * One relay per database publishes at a time: the leader holds a session advisory lock on a
 * dedicated connection (which also LISTENs for the outbox trigger's notifications); other
 * relays wait on that lock and take over as soon as the leader's session ends, even by a crash.
 */
import pg from 'pg';
import { OutageLog } from '../database/outage.ts';
import { createPool } from '../database/pool.ts';
import { createLogger, errorFields, type Logger } from '../logging/logger.ts';
import type { EventEnvelope } from './envelope.ts';

/** The channel the outbox's insert trigger notifies (see the domain_events migrations). */
export const OUTBOX_CHANNEL = 'outbox_events';

/** Session advisory-lock key of the relay's leadership: "outbox" in ASCII, read as a number. */
export const RELAY_LOCK_KEY = '122511465639800';

/**
 * The relay's scan: see the module comment for why it cannot skip a row. Every row it reads has
 * published_at NULL, so ordering by (published_at, tx_id, id) is ordering by (tx_id, id); saying
 * it this way lets PostgreSQL read the (published_at, tx_id, id) index in order and stop after
 * `LIMIT` rows, instead of sorting the whole backlog on every batch (66 ms vs 0.05 ms per batch
 * measured with 300k rows waiting).
 */
export const OUTBOX_SCAN_SQL = `
  SELECT id, envelope
  FROM outbox_events
  WHERE published_at IS NULL
    AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY published_at, tx_id, id
  LIMIT $1`;

export interface OutboxRelayOptions {
  /** The context's database, holding its `outbox_events`. */
  databaseUrl: string;
  /**
   * Publishes one event and resolves once the broker has durably accepted it (`EventBus.publish`).
   * A rejection stops the batch there; the event and those after it are retried, in order.
   * It should give up (reject) after a timeout of its own: the relay waits for it.
   */
  publish: (event: EventEnvelope) => Promise<void>;
  /** Name in logs, e.g. `catalog`. @default the database name */
  name?: string;
  /** Rows read, published and marked per round trip. @default 100 */
  batchSize?: number;
  /** Scan after this long without a notification: the fallback if one is missed. @default 1_000 */
  pollIntervalMs?: number;
  /**
   * First wait before scanning again when committed rows wait behind a transaction still in flight
   * (they become publishable when it ends, which notifies no one if it wrote no event); doubles
   * up to `pollIntervalMs` while they keep waiting. @default 10
   */
  inFlightRecheckMs?: number;
  /**
   * Wait before retry n after a failed publish (broker unreachable) or a database error; the last
   * value repeats until one succeeds. Short: a failed publish has already waited out the bus's own
   * timeout, and a longer pause here is what the first event after an outage waits on (up to 5 s
   * measured with a 5 s last step, docs/decisions/0018). @default [100, 250, 500, 1_000]
   */
  retryBackoffMs?: readonly number[];
  /** How long published rows are kept, to republish after a broker loss. @default 604_800_000 (7 days) */
  retentionMs?: number;
  /** How often the leader deletes published rows older than the retention. @default 600_000 (10 min) */
  cleanupIntervalMs?: number;
  /**
   * Since when the broker holds what it acknowledged (`EventBus.storedSince`), read before every
   * scan. When rows were marked published before it, the broker lost them (NATS restarted on a
   * wiped store): they are published again, in their original order (docs/decisions/0018).
   * @default () => undefined (a broker that loses nothing apart from the outbox)
   */
  brokerStoredSince?: () => Date | undefined;
  /**
   * Rows marked published up to this long after `brokerStoredSince` are published again too, once
   * a loss is found: the outbox's and the broker's clocks may differ by that much. @default 2_000
   */
  brokerClockSkewMs?: number;
  /**
   * Publishes sent before the first of them is acknowledged. Above 1 only for a bus that stores
   * one client's publishes in the order they were sent (NATS: one connection, one stream; not
   * pg-boss, whose inserts on pooled connections may commit in another order). Rows are marked in
   * order up to the first failure, which is retried with every row after it. Republishing a whole
   * outbox after a broker loss waits on these round trips (docs/decisions/0018). @default 1
   */
  publishesInFlight?: number;
  /** @default a logger named `outbox-relay.<name>` */
  logger?: Logger;
}

/** `idle` before start, `waiting` for the lock (another relay leads), `leading`, `stopped`. */
export type RelayState = 'idle' | 'connecting' | 'waiting' | 'leading' | 'stopped';

interface OutboxRow {
  id: string;
  envelope: EventEnvelope;
}

const PURGE_CHUNK = 1_000;

/**
 * What ends a sleep early besides its time: `stop` only (reconnecting), also a lost lock
 * (backing off while leading), also a notification (idle while leading).
 */
type WakeOn = 'stop' | 'lock' | 'notify';
const wakeRank: Record<WakeOn, number> = { stop: 0, lock: 1, notify: 2 };

export class OutboxRelay {
  readonly #options: Required<Omit<OutboxRelayOptions, 'logger' | 'name'>>;
  readonly #log: Logger;
  /** Scans, marks, counts and purges; the lock connection only holds the lock and listens. */
  readonly #pool: pg.Pool;
  #lockClient: pg.Client | undefined;
  #state: RelayState = 'idle';
  #running: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;
  #stopping = false;
  #lockLost = false;
  /** Set by a notification; a scan clears it first, so one arriving during a scan is not lost. */
  #notified = false;
  #sleepers = new Set<{ until: WakeOn; wake: () => void }>();
  #purging = false;
  /** The broker storage (its `storedSince`, in ms) whose losses this relay has republished. */
  #storageChecked: number | undefined;
  readonly #databaseOutage: OutageLog;
  readonly #busOutage: OutageLog;

  constructor(options: OutboxRelayOptions) {
    if (!options.databaseUrl) throw new Error('OutboxRelay needs a databaseUrl');
    if (typeof options.publish !== 'function') throw new Error('OutboxRelay needs a publish function');
    const name = options.name ?? databaseNameIn(options.databaseUrl);
    this.#options = {
      databaseUrl: options.databaseUrl,
      publish: options.publish,
      batchSize: options.batchSize ?? 100,
      pollIntervalMs: options.pollIntervalMs ?? 1_000,
      inFlightRecheckMs: options.inFlightRecheckMs ?? 10,
      retryBackoffMs: options.retryBackoffMs?.length ? options.retryBackoffMs : [100, 250, 500, 1_000],
      retentionMs: options.retentionMs ?? 7 * 24 * 3_600_000,
      cleanupIntervalMs: options.cleanupIntervalMs ?? 600_000,
      brokerStoredSince: options.brokerStoredSince ?? (() => undefined),
      brokerClockSkewMs: options.brokerClockSkewMs ?? 2_000,
      publishesInFlight: options.publishesInFlight ?? 1,
    };
    if (!(Number.isInteger(this.#options.publishesInFlight) && this.#options.publishesInFlight >= 1)) throw new Error('OutboxRelay publishesInFlight must be an integer ≥ 1');
    if (!(this.#options.batchSize >= 1)) throw new Error('OutboxRelay batchSize must be at least 1');
    this.#log = options.logger ?? createLogger(`outbox-relay.${name}`);
    // One warning per outage, however many retries it takes (platform/database/outage.ts).
    this.#databaseOutage = new OutageLog({ logger: this.#log, failure: 'outbox relay lost its database; retrying', recovery: 'outbox relay reconnected' });
    this.#busOutage = new OutageLog({ logger: this.#log, failure: 'publishing failed; will retry in order', recovery: 'publishing again' });
    // A pooled connection that breaks must not crash the process (pool.ts); the next query reconnects.
    this.#pool = createPool({ connectionString: options.databaseUrl, max: 2, connectionTimeoutMillis: 10_000, logger: this.#log, lostMessage: 'outbox connection failed' });
  }

  get state(): RelayState {
    return this.#state;
  }

  /** Starts competing for leadership, then publishing; returns at once. */
  start(): this {
    if (this.#running) throw new Error('OutboxRelay already started');
    // #run handles its own failures; this only keeps a bug from becoming an unhandled rejection.
    this.#running = this.#run().catch((error) => this.#log.error('outbox relay stopped unexpectedly', errorFields(error)));
    return this;
  }

  /** Events not yet published (including rows waiting behind a transaction in flight). */
  async backlog(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: string }>('SELECT count(*) AS n FROM outbox_events WHERE published_at IS NULL');
    return Number(rows[0]!.n);
  }

  /**
   * Marks the rows published at or after `since` unpublished again, so the leader publishes them
   * once more (in their original order), e.g. after the broker lost its data since its last
   * backup. Rows already deleted by the retention are gone. Returns how many were marked.
   */
  async republish({ since }: { since: Date }): Promise<number> {
    const { rowCount } = await this.#pool.query('UPDATE outbox_events SET published_at = NULL WHERE published_at >= $1', [since]);
    // Wakes the leader, wherever it runs.
    await this.#pool.query(`NOTIFY ${OUTBOX_CHANNEL}`);
    return rowCount ?? 0;
  }

  /** Deletes published rows older than the retention, never unpublished ones; returns how many. */
  async purgeExpired(): Promise<number> {
    let deleted = 0;
    for (;;) {
      // In chunks: one huge DELETE would hold its locks and bloat the WAL at once.
      const { rowCount } = await this.#pool.query(
        `DELETE FROM outbox_events WHERE id IN (
           SELECT id FROM outbox_events
           WHERE published_at < now() - make_interval(secs => $1::double precision / 1000)
           LIMIT ${PURGE_CHUNK})`,
        [this.#options.retentionMs],
      );
      deleted += rowCount ?? 0;
      if ((rowCount ?? 0) < PURGE_CHUNK) return deleted;
    }
  }

  /**
   * Stops: an event being published finishes and is marked, the lock is released (another
   * relay takes over) and the connections close. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      this.#wakeSleepers('stop');
      // Waiting on pg_advisory_lock: only closing the session ends that wait.
      if (this.#state === 'waiting') await this.#lockClient?.end().catch(() => {});
      await this.#running;
      this.#state = 'stopped';
      await this.#pool.end();
    })();
    return this.#stopped;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      let client: pg.Client | undefined;
      try {
        client = await this.#acquireLeadership();
        if (!client) break;
        failures = 0;
        this.#databaseOutage.recovered();
        await this.#lead();
      } catch (error) {
        if (this.#stopping) break;
        this.#databaseOutage.failed(error);
        await this.#sleep(this.#backoff(failures++), 'stop');
      } finally {
        // Ending the session releases the advisory lock: another relay may lead from here on.
        if (client) await this.#releaseLeadership(client);
      }
    }
  }

  /** Resolves with the lock connection once this relay leads, or undefined when stopped first. */
  async #acquireLeadership(): Promise<pg.Client | undefined> {
    this.#state = 'connecting';
    // keepAlive: a leader whose host vanishes is noticed by the server, which then frees the lock.
    const client = new pg.Client({ connectionString: this.#options.databaseUrl, keepAlive: true, connectionTimeoutMillis: 10_000 });
    this.#lockClient = client;
    this.#lockLost = false;
    client.on('error', (error) => this.#onLockConnectionLost(client, error));
    client.on('end', () => this.#onLockConnectionLost(client));
    client.on('notification', () => this.#notify());
    try {
      await client.connect();
      if (this.#stopping) throw new Error('stopping');
      this.#state = 'waiting';
      await client.query('SELECT pg_advisory_lock($1)', [RELAY_LOCK_KEY]);
      if (this.#stopping) throw new Error('stopping');
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
    } catch (error) {
      await this.#releaseLeadership(client);
      if (this.#stopping) return undefined;
      throw error;
    }
    this.#state = 'leading';
    this.#log.info('outbox relay leads');
    return client;
  }

  async #releaseLeadership(client: pg.Client): Promise<void> {
    if (this.#lockClient === client) this.#lockClient = undefined;
    if (this.#state === 'leading' || this.#state === 'waiting') this.#state = 'connecting';
    await client.end().catch(() => {});
  }

  #onLockConnectionLost(client: pg.Client, error?: Error): void {
    // 'error' and then 'end' both report one loss.
    if (client !== this.#lockClient || this.#lockLost) return;
    // Without its session the lock is gone: another relay may be publishing already.
    if (this.#state === 'leading') this.#log.warn('outbox relay lost its lock connection', error ? errorFields(error) : {});
    this.#lockLost = true;
    this.#wakeSleepers('lock');
  }

  /** Publishes while leading; returns when stopping or the lock is lost, throws on a database error. */
  async #lead(): Promise<void> {
    const cleanup = setInterval(() => void this.#purgeInBackground(), this.#options.cleanupIntervalMs);
    void this.#purgeInBackground();
    let failures = 0;
    let recheckMs = this.#options.inFlightRecheckMs;
    try {
      while (!this.#stopping && !this.#lockLost) {
        await this.#republishWhatTheBrokerLost();
        this.#notified = false;
        const { published, failure } = await this.#publishBatch();
        if (failure) {
          this.#busOutage.failed(failure.error, { published });
          await this.#sleep(this.#backoff(failures++), 'lock');
          continue;
        }
        failures = 0;
        this.#busOutage.recovered();
        if (published === this.#options.batchSize) continue;
        if (published > 0) recheckMs = this.#options.inFlightRecheckMs;
        if (await this.#waitsBehindInFlight()) {
          await this.#sleep(recheckMs, 'notify');
          recheckMs = Math.min(recheckMs * 2, this.#options.pollIntervalMs);
        } else {
          recheckMs = this.#options.inFlightRecheckMs;
          await this.#sleep(this.#options.pollIntervalMs, 'notify');
        }
      }
    } finally {
      clearInterval(cleanup);
    }
  }

  /**
   * One scan: publishes the rows in order, stopping at the first failure, then marks the
   * published ones. A crash before the mark republishes them: the bus de-duplicates by eventId.
   */
  async #publishBatch(): Promise<{ published: number; failure?: { error: unknown } }> {
    const { rows } = await this.#pool.query<OutboxRow>(OUTBOX_SCAN_SQL, [this.#options.batchSize]);
    const storage = this.#options.brokerStoredSince()?.getTime();
    const done: string[] = [];
    let failure: { error: unknown } | undefined;
    // Up to `publishesInFlight` sent ahead; each is awaited in row order, and none is sent after a
    // failure or a lost lock (those already sent are awaited, not marked: the bus drops copies).
    const sent: Promise<{ error: unknown } | undefined>[] = [];
    for (let settled = 0; settled < rows.length; settled++) {
      while (!failure && !this.#lockLost && sent.length < rows.length && sent.length - settled < this.#options.publishesInFlight) {
        sent.push(this.#options.publish(rows[sent.length]!.envelope).then(() => undefined, (error: unknown) => ({ error })));
      }
      if (settled === sent.length) break;
      const outcome = await sent[settled];
      failure ??= outcome;
      if (!failure) done.push(rows[settled]!.id);
    }
    // The broker's storage changed during the batch (NATS came back without its data): some of
    // these rows may have been acknowledged by the storage it lost, and marked now they would
    // look published after the new one began. Left unmarked, they are published again.
    if (done.length > 0 && this.#options.brokerStoredSince()?.getTime() !== storage) return { published: 0 };
    if (done.length > 0) await this.#pool.query('UPDATE outbox_events SET published_at = now() WHERE id = ANY($1::bigint[])', [done]);
    return { published: done.length, failure };
  }

  /**
   * Marks unpublished again the rows the broker lost: those marked published before its storage
   * began. Checked once per storage; the bus reports a new one only after it has declared the
   * consumers again, so the republished events reach them.
   */
  async #republishWhatTheBrokerLost(): Promise<void> {
    const since = this.#options.brokerStoredSince();
    if (!since || since.getTime() === this.#storageChecked) return;
    const { rowCount } = await this.#pool.query(
      `UPDATE outbox_events SET published_at = NULL
        WHERE published_at < $2 AND EXISTS (SELECT 1 FROM outbox_events WHERE published_at < $1)`,
      [since, new Date(since.getTime() + this.#options.brokerClockSkewMs)],
    );
    if (rowCount) this.#log.warn('the broker lost events it had acknowledged: publishing them again from the outbox', { events: rowCount, brokerStoredSince: since.toISOString() });
    this.#storageChecked = since.getTime();
  }

  /** Whether committed rows remain that the scan could not take yet (a transaction in flight). */
  async #waitsBehindInFlight(): Promise<boolean> {
    const { rows } = await this.#pool.query<{ waiting: boolean }>(
      'SELECT EXISTS (SELECT 1 FROM outbox_events WHERE published_at IS NULL) AS waiting',
    );
    return rows[0]!.waiting;
  }

  async #purgeInBackground(): Promise<void> {
    if (this.#purging || this.#stopping) return;
    this.#purging = true;
    try {
      const deleted = await this.purgeExpired();
      if (deleted > 0) this.#log.info('deleted published outbox rows past their retention', { deleted });
    } catch (error) {
      this.#log.warn('could not delete expired outbox rows', errorFields(error));
    } finally {
      this.#purging = false;
    }
  }

  #backoff(failures: number): number {
    const steps = this.#options.retryBackoffMs;
    return steps[Math.min(failures, steps.length - 1)]!;
  }

  #notify(): void {
    this.#notified = true;
    this.#wakeSleepers('notify');
  }

  /** Sleeps `ms`, or less when what `until` names happens (see WakeOn). */
  #sleep(ms: number, until: WakeOn): Promise<void> {
    const rank = wakeRank[until];
    if (this.#stopping || (rank >= wakeRank.lock && this.#lockLost) || (rank >= wakeRank.notify && this.#notified)) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const sleeper = {
        until,
        wake: () => {
          clearTimeout(timer);
          this.#sleepers.delete(sleeper);
          resolve();
        },
      };
      const timer = setTimeout(sleeper.wake, ms);
      this.#sleepers.add(sleeper);
    });
  }

  /** Wakes the sleepers that `event` ends: a stop ends all, a notification only idle ones. */
  #wakeSleepers(event: WakeOn): void {
    for (const sleeper of [...this.#sleepers]) if (wakeRank[sleeper.until] >= wakeRank[event]) sleeper.wake();
  }
}

function databaseNameIn(databaseUrl: string): string {
  try {
    return decodeURIComponent(new URL(databaseUrl).pathname.slice(1)) || 'outbox';
  } catch {
    return 'outbox';
  }
}
