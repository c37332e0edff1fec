/**
 * Hears the projector's `NOTIFY order_projections` (a JSON array of the order ids a committed
 * batch changed) on ONE LISTEN connection per process and fans each notification out to every
 * subscriber in the process. Because it listens to PostgreSQL, not to process memory, every
 * replica hears every change, whichever replica's projector made it.
 *
 * The connection opens with the first subscriber and closes when the last one leaves. A lost
 * connection is reopened while subscribers remain; once it is, every listener is called with
 * `null` ("something may have changed while nobody listened"), and reads what it has not sent:
 * a database restart loses no change (docs/decisions/0020).
 */
import pg from 'pg';
import { OutageLog } from '../../../platform/database/outage.ts';
import { createLogger, errorFields, type Logger } from '../../../platform/logging/logger.ts';
import { isUuid } from '../../../platform/ids.ts';
import { ORDER_PROJECTIONS_CHANNEL } from '../projections/projector.ts';

/** The orders a committed projection batch changed, or `null` when notifications may have been missed. */
export type ProjectionListener = (orderIds: readonly string[] | null) => void;

export interface OrderProjectionFeedOptions {
  databaseUrl: string;
  /** Wait before reconnecting a lost LISTEN connection. @default 1_000 */
  reconnectMs?: number;
  logger?: Logger;
}

export class OrderProjectionFeed {
  readonly #options: Required<Omit<OrderProjectionFeedOptions, 'logger'>>;
  readonly #log: Logger;
  /** The LISTEN connection's reconnections, said once per outage. */
  readonly #reconnecting: OutageLog;
  readonly #listeners = new Set<ProjectionListener>();
  #client: pg.Client | undefined;
  /** The connection being opened (or reopened), if any. */
  #connecting: Promise<void> | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** The connection was lost while listeners remained: they may have missed notifications. */
  #missed = false;

  constructor(options: OrderProjectionFeedOptions) {
    this.#options = { databaseUrl: options.databaseUrl, reconnectMs: options.reconnectMs ?? 1_000 };
    this.#log = options.logger ?? createLogger('order-projection-feed');
    this.#reconnecting = new OutageLog({ logger: this.#log, failure: 'reconnecting LISTEN failed', recovery: 'LISTEN reconnected' });
  }

  /** Subscribers in this process. */
  get subscriberCount(): number {
    return this.#listeners.size;
  }

  /** Whether the LISTEN connection is open. */
  get listening(): boolean {
    return this.#client !== undefined;
  }

  /**
   * Adds a listener; resolves once the LISTEN connection is open (so no change committed after
   * that is missed). Returns the function that removes it.
   */
  async subscribe(listener: ProjectionListener): Promise<() => Promise<void>> {
    if (this.#closed) throw new Error('OrderProjectionFeed is closed');
    this.#listeners.add(listener);
    try {
      await this.#ensureListening();
    } catch (error) {
      await this.#remove(listener);
      throw error;
    }
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      await this.#remove(listener);
    };
  }

  /** Drops every listener and closes the connection. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    await this.#release();
  }

  async #remove(listener: ProjectionListener): Promise<void> {
    this.#listeners.delete(listener);
    if (this.#listeners.size === 0) await this.#release();
  }

  async #release(): Promise<void> {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    await this.#connecting?.catch(() => {});
    // A subscriber may have arrived while the connection was being opened.
    if (this.#listeners.size > 0 && !this.#closed) return;
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  #ensureListening(): Promise<void> {
    if (this.#client) return Promise.resolve();
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#options.databaseUrl, keepAlive: true, connectionTimeoutMillis: 10_000 });
    const lost = (error?: Error) => {
      if (this.#client !== client) return;
      this.#client = undefined;
      this.#missed = true;
      if (error) this.#log.warn('LISTEN connection lost', errorFields(error));
      client.end().catch(() => {});
      this.#scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    client.on('notification', (message) => {
      if (message.channel !== ORDER_PROJECTIONS_CHANNEL) return;
      const orderIds = parseOrderIds(message.payload);
      if (orderIds.length > 0) this.#tell(orderIds);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${ORDER_PROJECTIONS_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    if (this.#closed || this.#listeners.size === 0) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    if (this.#missed) {
      this.#missed = false;
      this.#tell(null);
    }
  }

  #tell(orderIds: readonly string[] | null): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(orderIds);
      } catch (error) {
        this.#log.warn('projection listener failed', errorFields(error));
      }
    }
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#listeners.size === 0 || this.#reconnectTimer) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed || this.#listeners.size === 0) return;
      this.#ensureListening().then(
        () => this.#reconnecting.recovered(),
        (error: unknown) => {
          // Every second while the database is away: one warning per outage, not one per try.
          this.#reconnecting.failed(error);
          this.#scheduleReconnect();
        },
      );
    }, this.#options.reconnectMs);
    this.#reconnectTimer.unref();
  }
}

function parseOrderIds(payload: string | undefined): string[] {
  try {
    const value: unknown = JSON.parse(payload ?? '[]');
    return Array.isArray(value) ? value.filter((id): id is string => typeof id === 'string' && isUuid(id)).map((id) => id.toLowerCase()) : [];
  } catch {
    return [];
  }
}
