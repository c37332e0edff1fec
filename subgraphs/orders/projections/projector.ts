/**
 * The order projector: applies `order_events` to the read models (`order_summaries`,
 * `order_timeline`) in the background, each batch in ONE transaction with its checkpoint, and
 * tells `onProjected` which orders changed once that transaction has committed.
 *
 * Why it cannot skip an event: the same rule as the outbox relay (platform/events/relay.ts).
 * The scan takes only rows below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction
 * below it has ended, and every transaction still to commit has an id at or above it. It reads
 * in (tx_id, global_position) order and checkpoints that pair. A checkpoint on global_position
 * alone would skip: positions are taken at insert, not at commit, so a transaction whose id is
 * older than the slow one's can commit a higher position that the scan may take first.
 *
 * Transaction-id order is not always version order within one order (a transaction's id is
 * taken at its first write, which may precede its load of the order), so the projector applies
 * an order's events by version: an event already applied is skipped, and when one arrives ahead
 * of its predecessors they are read from the stream first (they committed before it: the store
 * appends version n+1 only after seeing version n).
 *
 * Several projectors (one per replica) may run: they take turns through a transaction-level
 * advisory lock. Woken by the NOTIFY of the order_events trigger, and by polling.
 */
import pg from 'pg';
import { OutageLog } from '../../../platform/database/outage.ts';
import { createPool } from '../../../platform/database/pool.ts';
import { withPooledTransaction } from '../../../platform/database/transaction.ts';
import { createLogger, errorFields, type Logger } from '../../../platform/logging/logger.ts';
import type { OrderEvent } from '../domain/order.ts';
import { projectEvent, type OrderSummary, type TimelineEntry } from './order-summary.ts';

/** The channel the order_events trigger notifies (see the orders init migration). */
export const ORDER_EVENTS_CHANNEL = 'order_events';
/**
 * Notified in each projecting transaction (so at its commit) with a JSON array of the order
 * ids it changed: any process on the database can hear projection changes, not only this one.
 */
export const ORDER_PROJECTIONS_CHANNEL = 'order_projections';

export interface OrderProjectorOptions {
  /** The orders database. */
  databaseUrl: string;
  /** The checkpoint's name. @default 'order-read-models' */
  name?: string;
  /** Events read and applied per transaction. @default 100 */
  batchSize?: number;
  /** Scan after this long without a notification. @default 1_000 */
  pollIntervalMs?: number;
  /**
   * First wait before scanning again while committed events wait behind a transaction in flight;
   * doubles up to `pollIntervalMs`. @default 10
   */
  inFlightRecheckMs?: number;
  /** Waits before retry n after a database error; the last one repeats. @default [100, 500, 1_000, 5_000] */
  retryBackoffMs?: readonly number[];
  /**
   * Called after each committed batch with the ids of the orders whose read models changed (the
   * subscriptions hook in here). Awaited; an error is logged and does not undo the batch.
   */
  onProjected?: (orderIds: string[]) => void | Promise<void>;
  /** @default a logger named `order-projector` */
  logger?: Logger;
}

export interface ProjectedBatch {
  /** Events read by the scan (a full batch means more may be waiting). */
  scanned: number;
  /** Orders whose read models changed. */
  orderIds: string[];
}

interface EventRow {
  global_position: string;
  tx_id: string;
  order_id: string;
  version: number;
  type: OrderEvent['type'];
  data: OrderEvent['data'];
}

interface Checkpoint {
  txId: string;
  position: string;
  /** The feed position of the last timeline entry written: the next one is numbered after it (docs/decisions/0020). */
  feedPosition?: string;
}

const SCAN_SQL = `
  SELECT global_position::text, tx_id::text, order_id::text, version, type, data
  FROM order_events
  WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
    AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY tx_id, global_position
  LIMIT $3`;

const NOTIFY_CHUNK = 150;

export class OrderProjector {
  readonly #options: Required<Omit<OrderProjectorOptions, 'onProjected' | 'logger'>>;
  readonly #onProjected: OrderProjectorOptions['onProjected'];
  readonly #log: Logger;
  readonly #pool: pg.Pool;
  /** One warning per database outage, not one per retry. */
  readonly #outage: OutageLog;
  #listener: pg.Client | undefined;
  #running: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;
  #stopping = false;
  #notified = false;
  #wake: (() => void) | undefined;

  constructor(options: OrderProjectorOptions) {
    if (!options.databaseUrl) throw new Error('OrderProjector needs a databaseUrl');
    this.#options = {
      databaseUrl: options.databaseUrl,
      name: options.name ?? 'order-read-models',
      batchSize: options.batchSize ?? 100,
      pollIntervalMs: options.pollIntervalMs ?? 1_000,
      inFlightRecheckMs: options.inFlightRecheckMs ?? 10,
      retryBackoffMs: options.retryBackoffMs?.length ? options.retryBackoffMs : [100, 500, 1_000, 5_000],
    };
    if (!(this.#options.batchSize >= 1)) throw new Error('OrderProjector batchSize must be at least 1');
    this.#onProjected = options.onProjected;
    this.#log = options.logger ?? createLogger('order-projector');
    this.#outage = new OutageLog({ logger: this.#log, failure: 'projecting failed; retrying', recovery: 'projecting again' });
    this.#pool = createPool({ connectionString: options.databaseUrl, max: 2, connectionTimeoutMillis: 10_000, logger: this.#log, lostMessage: 'projector connection failed' });
  }

  /** Starts projecting in the background; returns at once. */
  start(): this {
    if (this.#running) throw new Error('OrderProjector already started');
    this.#running = this.#run().catch((error) => this.#log.error('order projector stopped unexpectedly', errorFields(error)));
    return this;
  }

  /** Stops after the batch in progress; idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      this.#wake?.();
      await this.#running;
      await this.#listener?.end().catch(() => {});
      await this.#pool.end();
    })();
    return this.#stopped;
  }

  /** Where the projector is: the (tx_id, global_position) of the last event it read. */
  async checkpoint(): Promise<Checkpoint> {
    const { rows } = await this.#pool.query<{ tx_id: string; position: string }>(
      'SELECT tx_id::text, position::text FROM projection_checkpoints WHERE name = $1',
      [this.#options.name],
    );
    return rows[0] ? { txId: rows[0].tx_id, position: rows[0].position } : { txId: '0', position: '0' };
  }

  /** Applies batches until no committed event is left that the scan may take. */
  async catchUp(): Promise<ProjectedBatch> {
    const changed = new Set<string>();
    let scanned = 0;
    for (;;) {
      const batch = await this.projectBatch();
      scanned += batch.scanned;
      batch.orderIds.forEach((id) => changed.add(id));
      if (batch.scanned < this.#options.batchSize) return { scanned, orderIds: [...changed] };
    }
  }

  /**
   * Empties the read models and resets the checkpoint, then replays every committed event (those
   * of transactions still in flight follow with the projector's next batches). Readers of a single
   * order meanwhile fall back to its stream (see the read side); lists fill up as it replays.
   */
  async rebuild(): Promise<ProjectedBatch> {
    await this.#inLockedTransaction(async (client) => {
      await client.query('TRUNCATE order_summaries, order_timeline');
      await saveCheckpoint(client, this.#options.name, { txId: '0', position: '0', feedPosition: '0' });
    });
    return this.catchUp();
  }

  /** One batch in one transaction; `onProjected` after it commits. */
  async projectBatch(): Promise<ProjectedBatch> {
    const batch = await this.#inLockedTransaction(async (client) => {
      const from = await readCheckpoint(client, this.#options.name);
      const { rows } = await client.query<EventRow>(SCAN_SQL, [from.txId, from.position, this.#options.batchSize]);
      if (rows.length === 0) return { scanned: 0, orderIds: [] };
      const { changed, feedPosition } = await applyEvents(client, rows, BigInt(from.feedPosition ?? '0'));
      const last = rows.at(-1)!;
      await saveCheckpoint(client, this.#options.name, { txId: last.tx_id, position: last.global_position, feedPosition: String(feedPosition) });
      const orderIds = [...changed];
      for (let i = 0; i < orderIds.length; i += NOTIFY_CHUNK) {
        await client.query('SELECT pg_notify($1, $2)', [ORDER_PROJECTIONS_CHANNEL, JSON.stringify(orderIds.slice(i, i + NOTIFY_CHUNK))]);
      }
      return { scanned: rows.length, orderIds };
    });
    if (batch.orderIds.length > 0 && this.#onProjected) {
      try {
        await this.#onProjected(batch.orderIds);
      } catch (error) {
        this.#log.warn('onProjected failed', errorFields(error));
      }
    }
    return batch;
  }

  #inLockedTransaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return withPooledTransaction(this.#pool, async (client) => {
      // Not a row lock: it takes no transaction id, so this transaction does not hold back the
      // xmin its own scan compares with.
      await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`order-projector:${this.#options.name}`]);
      return work(client);
    });
  }


  async #run(): Promise<void> {
    let failures = 0;
    let recheckMs = this.#options.inFlightRecheckMs;
    while (!this.#stopping) {
      try {
        await this.#listen();
        this.#notified = false;
        const { scanned } = await this.projectBatch();
        failures = 0;
        this.#outage.recovered();
        if (scanned === this.#options.batchSize) continue;
        if (scanned > 0) recheckMs = this.#options.inFlightRecheckMs;
        if (await this.#waitsBehindInFlight()) {
          await this.#sleep(recheckMs);
          recheckMs = Math.min(recheckMs * 2, this.#options.pollIntervalMs);
        } else {
          recheckMs = this.#options.inFlightRecheckMs;
          await this.#sleep(this.#options.pollIntervalMs);
        }
      } catch (error) {
        if (this.#stopping) break;
        this.#outage.failed(error);
        const steps = this.#options.retryBackoffMs;
        await this.#sleep(steps[Math.min(failures++, steps.length - 1)]!, false);
      }
    }
  }

  /** (Re)connects the LISTEN connection when it is missing; polling covers any gap. */
  async #listen(): Promise<void> {
    if (this.#listener || this.#stopping) return;
    const client = new pg.Client({ connectionString: this.#options.databaseUrl, keepAlive: true, connectionTimeoutMillis: 10_000 });
    const lost = () => {
      if (this.#listener === client) this.#listener = undefined;
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', () => {
      this.#notified = true;
      this.#wake?.();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${ORDER_EVENTS_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    this.#listener = client;
  }

  async #waitsBehindInFlight(): Promise<boolean> {
    const from = await this.checkpoint();
    const { rows } = await this.#pool.query<{ waiting: boolean }>(
      'SELECT EXISTS (SELECT 1 FROM order_events WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)) AS waiting',
      [from.txId, from.position],
    );
    return rows[0]!.waiting;
  }

  /** Sleeps `ms`, less when stopping or (unless `wakeOnNotify` is false) when notified. */
  #sleep(ms: number, wakeOnNotify = true): Promise<void> {
    if (this.#stopping || (wakeOnNotify && this.#notified)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = wakeOnNotify ? done : () => this.#stopping && done();
    });
  }
}

async function readCheckpoint(client: pg.ClientBase, name: string): Promise<Checkpoint> {
  const { rows } = await client.query<{ tx_id: string; position: string; feed_position: string }>(
    'SELECT tx_id::text, position::text, feed_position::text FROM projection_checkpoints WHERE name = $1',
    [name],
  );
  return rows[0] ? { txId: rows[0].tx_id, position: rows[0].position, feedPosition: rows[0].feed_position } : { txId: '0', position: '0', feedPosition: '0' };
}

async function saveCheckpoint(client: pg.ClientBase, name: string, at: Checkpoint): Promise<void> {
  await client.query(
    `INSERT INTO projection_checkpoints (name, tx_id, position, feed_position, updated_at) VALUES ($1, $2::xid8, $3::bigint, $4::bigint, now())
     ON CONFLICT (name) DO UPDATE SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position, feed_position = EXCLUDED.feed_position, updated_at = now()`,
    [name, at.txId, at.position, at.feedPosition ?? '0'],
  );
}

/**
 * Applies the rows to the read models by version per order; returns the orders changed and the
 * last feed position given. Each timeline entry is numbered after `feedPosition` in the order it
 * is applied: batches commit one after another (the advisory lock), so numbers grow in commit
 * order, and a rebuild, applying the same events in the same order, gives the same numbers.
 */
async function applyEvents(client: pg.ClientBase, rows: EventRow[], feedPosition: bigint): Promise<{ changed: Set<string>; feedPosition: bigint }> {
  const summaries = await loadSummaries(client, [...new Set(rows.map((row) => row.order_id))]);
  const changed = new Map<string, OrderSummary>();
  const entries: (TimelineEntry & { orderId: string; feedPosition: string })[] = [];
  for (const row of rows) {
    let summary = summaries.get(row.order_id) ?? null;
    const applied = summary?.version ?? 0;
    if (row.version <= applied) continue;
    const events = row.version === applied + 1 ? [row] : [...(await eventsBetween(client, row.order_id, applied, row.version)), row];
    for (const event of events) {
      const projected = projectEvent(summary, { type: event.type, data: event.data } as OrderEvent, event.version, event.order_id);
      summary = projected.summary;
      entries.push({ orderId: event.order_id, ...projected.entry, feedPosition: String(++feedPosition) });
    }
    summaries.set(row.order_id, summary!);
    changed.set(row.order_id, summary!);
  }
  if (changed.size > 0) await saveSummaries(client, [...changed.values()]);
  if (entries.length > 0) await saveTimeline(client, entries);
  return { changed: new Set(changed.keys()), feedPosition };
}

/** The events strictly between two versions of an order, which must all be there. */
async function eventsBetween(client: pg.ClientBase, orderId: string, after: number, before: number): Promise<EventRow[]> {
  const { rows } = await client.query<EventRow>(
    `SELECT global_position::text, tx_id::text, order_id::text, version, type, data FROM order_events
     WHERE order_id = $1 AND version > $2 AND version < $3 ORDER BY version`,
    [orderId, after, before],
  );
  if (rows.length !== before - after - 1) throw new Error(`order ${orderId}: versions ${after + 1}–${before - 1} are not visible yet`);
  return rows;
}

/** A row of `order_summaries` as node-postgres reads it. */
export interface SummaryRow {
  order_id: string;
  customer_id: string;
  status: OrderSummary['status'];
  reason: OrderSummary['reason'];
  total: number;
  currency: string;
  item_count: number;
  items: OrderSummary['items'];
  rejected_lines: OrderSummary['rejectedLines'];
  cancellation: OrderSummary['cancellation'];
  version: number;
  placed_at: Date;
  updated_at: Date;
}

async function loadSummaries(client: pg.ClientBase, orderIds: string[]): Promise<Map<string, OrderSummary>> {
  const { rows } = await client.query<SummaryRow>('SELECT * FROM order_summaries WHERE order_id = ANY($1::uuid[])', [orderIds]);
  return new Map(rows.map((row) => [row.order_id, summaryOf(row)]));
}

/** The summary a row of `order_summaries` holds. */
export function summaryOf(row: SummaryRow): OrderSummary {
  return {
    orderId: row.order_id,
    customerId: row.customer_id,
    status: row.status,
    reason: row.reason,
    total: row.total,
    currency: row.currency,
    itemCount: row.item_count,
    items: row.items,
    rejectedLines: row.rejected_lines,
    cancellation: row.cancellation,
    version: row.version,
    placedAt: row.placed_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

async function saveSummaries(client: pg.ClientBase, summaries: OrderSummary[]): Promise<void> {
  await client.query(
    `INSERT INTO order_summaries (order_id, customer_id, status, reason, total, currency, item_count, items, rejected_lines, cancellation, version, placed_at, updated_at)
     SELECT r."orderId", r."customerId", r.status, r.reason, r.total, r.currency, r."itemCount", r.items, r."rejectedLines", r.cancellation, r.version, r."placedAt", r."updatedAt"
     FROM jsonb_to_recordset($1::jsonb) AS r("orderId" uuid, "customerId" uuid, status text, reason text, total int, currency text,
                                             "itemCount" int, items jsonb, "rejectedLines" jsonb, cancellation jsonb, version int, "placedAt" timestamptz, "updatedAt" timestamptz)
     ON CONFLICT (order_id) DO UPDATE SET
       customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, reason = EXCLUDED.reason, total = EXCLUDED.total,
       currency = EXCLUDED.currency, item_count = EXCLUDED.item_count, items = EXCLUDED.items, rejected_lines = EXCLUDED.rejected_lines, cancellation = EXCLUDED.cancellation,
       version = EXCLUDED.version, placed_at = EXCLUDED.placed_at, updated_at = EXCLUDED.updated_at`,
    [JSON.stringify(summaries)],
  );
}

async function saveTimeline(client: pg.ClientBase, entries: (TimelineEntry & { orderId: string; feedPosition: string })[]): Promise<void> {
  await client.query(
    `INSERT INTO order_timeline (order_id, position, status, at, feed_position)
     SELECT r."orderId", r.position, r.status, r.at, r."feedPosition"
     FROM jsonb_to_recordset($1::jsonb) AS r("orderId" uuid, position int, status text, at timestamptz, "feedPosition" bigint)
     ON CONFLICT (order_id, position) DO UPDATE SET status = EXCLUDED.status, at = EXCLUDED.at`,
    [JSON.stringify(entries)],
  );
}
