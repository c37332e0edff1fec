/**
 * Enforces the saga's step deadlines in *working* time: a step's deadline counts only time during
 * which the orders process ran with its database and its bus reachable, and it is judged only
 * once the replies published before it have been applied (docs/decisions/0019).
 *
 * Each tick:
 * 1. The bus is not connected, or orders' own commands wait in its outbox for longer than
 *    `outageAfterMs` (its relay cannot publish) → nothing is judged and the heartbeat is not
 *    beaten: this time will count as an outage.
 * 2. The shared heartbeat (one row, every replica) is beaten; a gap since the previous beat
 *    longer than `outageAfterMs` — every orders process down, the database unreachable, the bus
 *    away — restarts every waiting step's clock: its deadline becomes a full step timeout from
 *    now. Not just the gap added: the platform's recovery is not instant either (relays retry
 *    with back-off up to 5 s, a delivery held by a dead process waits for its redelivery), and
 *    the time a step had used before the outage may have been spent on a reply the outage
 *    stranded.
 * 3. Only if some deadline has passed: the orders consumer's backlog is asked for, and a saga is
 *    timed out only if every event published before its deadline has been handled. A reply that
 *    was waiting in the queue therefore always wins over the deadline it beat.
 */
import type { EventBus } from '../../../platform/events/bus.ts';
import { OutageLog } from '../../../platform/database/outage.ts';
import { createLogger, errorFields } from '../../../platform/logging/logger.ts';
import type { OrderSagaRunner, SagaTransaction } from './saga-runner.ts';

export interface DeadlineSweeperOptions {
  /** How often the heartbeat is beaten and overdue sagas looked for. @default 500 */
  sweepIntervalMs?: number;
  /**
   * A gap between two heartbeats longer than this is an outage that deadlines do not count. Well
   * above `sweepIntervalMs` plus a slow tick on a loaded machine, so that ordinary jitter is not
   * mistaken for one (and does not rewrite every running saga's row); below the step timeout, so
   * that an outage shorter than a step is still given back. @default 2_000
   */
  outageAfterMs?: number;
}

/** The database of the heartbeat: raw SQL, as the runner's. */
interface HeartbeatDatabase {
  $queryRaw<T = unknown>(query: TemplateStringsArray, ...values: unknown[]): PromiseLike<T>;
}

/** What one tick did, for logs and tests. */
export interface SweepOutcome {
  /** Why nothing was judged, if so. */
  waitingFor?: 'bus' | 'commands' | 'backlog';
  /** The outage found since the previous heartbeat, in ms (0 if none). */
  outageMs: number;
  /** Sagas timed out. */
  timedOut: number;
}

export class DeadlineSweeper<Tx extends SagaTransaction> {
  private readonly log = createLogger('orders.saga.deadlines');
  private readonly sweepIntervalMs: number;
  private readonly outageAfterMs: number;
  /** Whether the last tick was held back by a backlog, so that it is logged once, not every tick. */
  private heldByBacklog = false;

  constructor(
    private readonly db: HeartbeatDatabase,
    private readonly runner: OrderSagaRunner<Tx>,
    /** The bus the replies come on, and the name of the consumer that applies them; none in bus-less tests. */
    private readonly replies: { bus: Pick<EventBus, 'health' | 'backlog'>; consumer: string } | undefined,
    options: DeadlineSweeperOptions = {},
  ) {
    this.sweepIntervalMs = options.sweepIntervalMs ?? 500;
    this.outageAfterMs = options.outageAfterMs ?? 2_000;
    if (!(this.sweepIntervalMs > 0) || !(this.outageAfterMs > this.sweepIntervalMs)) {
      throw new Error('DeadlineSweeper: sweepIntervalMs must be positive and outageAfterMs above it');
    }
  }

  /** Ticks every `sweepIntervalMs` (one tick at a time, however long one takes) until stopped. */
  start(): { stop(): Promise<void> } {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<void> = Promise.resolve();
    // An unreachable database fails every tick: said once when it starts and once when it ends.
    const outage = new OutageLog({
      logger: this.log,
      failure: 'deadline sweep failed; retrying every tick, and the time until it works again will not count',
      recovery: 'deadline sweeps work again',
    });
    const schedule = () => {
      timer = setTimeout(() => {
        running = this.tick()
          .then(
            () => outage.recovered(),
            (error: unknown) => outage.failed(error),
          )
          .finally(() => void (stopped || schedule()));
      }, this.sweepIntervalMs);
    };
    schedule();
    return {
      stop: async () => {
        stopped = true;
        clearTimeout(timer);
        await running;
      },
    };
  }

  async tick(): Promise<SweepOutcome> {
    if (this.replies && !this.replies.bus.health().connected) return { waitingFor: 'bus', outageMs: 0, timedOut: 0 };
    const look = await this.beat();
    if (look.commandsStuck) return { waitingFor: 'commands', outageMs: 0, timedOut: 0 };
    if (!look.overdue) return { outageMs: look.outageMs, timedOut: 0 };

    const beatAt = Date.now();
    const repliesSince = await this.handledUpTo();
    if (repliesSince === undefined) return { waitingFor: 'backlog', outageMs: look.outageMs, timedOut: 0 };
    // A bus that took this long to answer was not working: the next tick's beat finds the gap
    // and gives the steps their time back, rather than this one judging them on stale news.
    if (Date.now() - beatAt > this.outageAfterMs) return { waitingFor: 'bus', outageMs: look.outageMs, timedOut: 0 };
    const timedOut = await this.runner.sweepOnce(repliesSince === null ? {} : { deadlineBefore: repliesSince });
    return { ...(timedOut === 0 && repliesSince !== null ? { waitingFor: 'backlog' as const } : {}), outageMs: look.outageMs, timedOut };
  }

  /**
   * One statement, one round trip per tick (it shares the context's small pool with requests):
   * - whether a row of orders' outbox has waited longer than an outage (its relay cannot
   *   publish, so no step it started can be answered): then no beat;
   * - else the beat, which reads the previous beat and writes this one under the row's lock, so
   *   of two replicas beating at once the second sees the first's beat;
   * - after a gap over `outageAfterMs`, every waiting step's deadline set to a full step from
   *   now (GREATEST: never shortened, e.g. one set by a replica with a longer step timeout);
   * - whether any deadline has passed (read before that reset: at worst one needless look at
   *   the bus, since sweepOnce reads the deadlines anew).
   */
  private async beat(): Promise<{ commandsStuck: boolean; outageMs: number; overdue: boolean }> {
    const outageAfterMs = this.outageAfterMs;
    const [row] = await this.db.$queryRaw<{ stuck: boolean; ticked_at: Date | null; previous_tick_at: Date | null; moved: number; overdue: boolean }[]>`
      WITH stuck AS (
        SELECT EXISTS (SELECT 1 FROM outbox_events WHERE published_at IS NULL
                         AND created_at < now() - ${outageAfterMs}::int * interval '1 millisecond') AS yes
      ), beat AS (
        INSERT INTO order_saga_heartbeat (id, ticked_at) SELECT 1, clock_timestamp() FROM stuck WHERE NOT stuck.yes
        ON CONFLICT (id) DO UPDATE SET previous_tick_at = order_saga_heartbeat.ticked_at,
          ticked_at = GREATEST(clock_timestamp(), order_saga_heartbeat.ticked_at)
        RETURNING ticked_at, previous_tick_at
      ), moved AS (
        UPDATE order_sagas
           SET deadline_at = GREATEST(deadline_at, beat.ticked_at + ${this.runner.stepTimeoutMs}::int * interval '1 millisecond')
          FROM beat
         WHERE beat.ticked_at - beat.previous_tick_at > ${outageAfterMs}::int * interval '1 millisecond'
           AND order_sagas.status = 'RUNNING' AND order_sagas.deadline_at IS NOT NULL
        RETURNING 1
      )
      SELECT (SELECT yes FROM stuck) AS stuck, beat.ticked_at, beat.previous_tick_at, (SELECT count(*) FROM moved)::int AS moved,
             EXISTS (SELECT 1 FROM order_sagas WHERE status = 'RUNNING' AND deadline_at <= now()) AS overdue
        FROM (SELECT 1) AS one LEFT JOIN beat ON true`;
    if (!row || row.stuck) return { commandsStuck: true, outageMs: 0, overdue: false };
    const gapMs = row.ticked_at && row.previous_tick_at ? row.ticked_at.getTime() - row.previous_tick_at.getTime() : 0;
    const outageMs = gapMs > outageAfterMs ? gapMs : 0;
    if (outageMs > 0) {
      this.log.warn('the platform was unavailable to the saga: every waiting step gets its full time again', { outageMs, deadlinesMoved: row.moved });
    }
    return { commandsStuck: false, outageMs, overdue: row.overdue };
  }

  /**
   * Up to when the replies are known to be applied: null if nothing waits (judge every overdue
   * saga), the publication time of the oldest reply still waiting (judge only deadlines before
   * it), or undefined when the bus cannot say (judge none this tick).
   */
  private async handledUpTo(): Promise<Date | null | undefined> {
    if (!this.replies) return null;
    const backlog = await this.replies.bus.backlog(this.replies.consumer).catch((error: unknown) => {
      this.log.warn('could not read the replies backlog; deadlines wait', errorFields(error));
      return undefined;
    });
    const waiting = backlog !== undefined && backlog.oldestPublishedAt !== null;
    if (waiting !== this.heldByBacklog) {
      this.heldByBacklog = waiting;
      if (waiting) this.log.info('overdue saga steps wait for the replies queued before their deadline', { lag: backlog!.lag, oldestPublishedAt: backlog!.oldestPublishedAt });
    }
    return backlog === undefined ? undefined : backlog.oldestPublishedAt;
  }
}
