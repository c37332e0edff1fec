/**
 * Metrics of a context's event flow (issue 13): its outbox (backlog and the age of its oldest
 * unpublished event, read at scrape time), its relay (publishes and the delay from the event's
 * commit to the broker's acknowledgement) and its consumers (deliveries by outcome, redeliveries,
 * lag and dead letters as the bus reports them at scrape time). Labels: consumer names and
 * outcomes only, never event ids or types of unbounded number.
 */
import client from 'prom-client';
import type { EventBus, EventHandler } from '../events/bus.ts';
import type { EventEnvelope } from '../events/envelope.ts';
import { durationBuckets } from './metrics.ts';

interface OutboxDatabase {
  $queryRaw(query: TemplateStringsArray, ...values: unknown[]): PromiseLike<unknown>;
}

export interface EventMetrics {
  /** Wraps the relay's publish: counts it and observes the delay from the event's commit to the broker's acknowledgement. */
  publishing(publish: (event: EventEnvelope) => Promise<void>): (event: EventEnvelope) => Promise<void>;
  /** Wraps a consumer's handler: counts each delivery by outcome, and redeliveries. */
  consuming(consumer: string, handle: EventHandler): EventHandler;
}

export function createEventMetrics(registry: client.Registry, options: { db: OutboxDatabase; bus: EventBus; consumers: readonly string[] }): EventMetrics {
  const registers = [registry];
  // Both outbox gauges come from one query per scrape. prom-client reads every metric of a scrape
  // at once, so each gauge awaits the same read: a gauge set from another's collect would be
  // read before that query answered, and show the previous scrape's value.
  let reading: Promise<void> | undefined;
  const readOutbox = () =>
    (reading ??= (async () => {
      const [row] = (await options.db.$queryRaw`
        SELECT count(*)::int AS n, EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest FROM outbox_events WHERE published_at IS NULL`) as { n: number; oldest: number | null }[];
      backlog.set(row?.n ?? 0);
      oldest.set(row?.oldest ?? 0);
    })().finally(() => {
      reading = undefined;
    }));
  const oldest = new client.Gauge({
    name: 'outbox_oldest_unpublished_age_seconds',
    help: 'Age of the oldest event in this context’s outbox not yet published (0 when none waits).',
    registers,
    collect: () => readOutbox(),
  });
  const backlog = new client.Gauge({
    name: 'outbox_backlog_events',
    help: 'Events committed to this context’s outbox and not yet published to the bus.',
    registers,
    collect: () => readOutbox(),
  });
  const published = new client.Counter({ name: 'outbox_published_events_total', help: 'Events the relay published and the bus acknowledged.', registers });
  const publishDelay = new client.Histogram({
    name: 'outbox_publish_delay_seconds',
    help: 'From an event’s commit (its occurredAt) to the bus acknowledging its publication.',
    buckets: durationBuckets,
    registers,
  });
  const deliveries = new client.Counter({
    name: 'event_deliveries_total',
    help: 'Deliveries to this context’s consumers, by consumer and outcome (handled, failed: redelivered later or parked).',
    labelNames: ['consumer', 'outcome'] as const,
    registers,
  });
  const redeliveries = new client.Counter({
    name: 'event_redeliveries_total',
    help: 'Deliveries of an event to a consumer after its first (attempt > 1).',
    labelNames: ['consumer'] as const,
    registers,
  });
  // Read from the bus at scrape time, once for the three gauges (as the outbox's above); a bus that
  // does not answer leaves the last values (its outage is /ready's to report).
  let asking: Promise<void> | undefined;
  const readBus = () =>
    (asking ??= (async () => {
      try {
        const status = await options.bus.status();
        for (const consumer of status.filter((entry) => options.consumers.includes(entry.consumer))) {
          lag.set({ consumer: consumer.consumer }, consumer.lag);
          deadLetters.set({ consumer: consumer.consumer }, consumer.deadLetters);
        }
        answered.set(1);
      } catch {
        answered.set(0);
      }
    })().finally(() => {
      asking = undefined;
    }));
  const lag = new client.Gauge({
    name: 'event_consumer_lag_events',
    help: 'Events published and not yet handled by this context’s consumer, as the bus reports it.',
    labelNames: ['consumer'] as const,
    registers,
    collect: () => readBus(),
  });
  const deadLetters = new client.Gauge({
    name: 'event_dead_letters',
    help: 'Events parked as dead letters for this context’s consumer.',
    labelNames: ['consumer'] as const,
    registers,
    collect: () => readBus(),
  });
  const answered = new client.Gauge({
    name: 'event_bus_status_scrape_ok',
    help: '1 when the bus answered the last scrape’s status read, 0 when it did not.',
    registers,
    collect: () => readBus(),
  });
  return {
    publishing: (publish) => async (event) => {
      await publish(event);
      published.inc();
      const committed = Date.parse(event.occurredAt);
      if (Number.isFinite(committed)) publishDelay.observe(Math.max(0, (Date.now() - committed) / 1000));
    },
    consuming: (consumer, handle) => async (event, delivery) => {
      if (delivery.attempt > 1) redeliveries.inc({ consumer });
      try {
        await handle(event, delivery);
        deliveries.inc({ consumer, outcome: 'handled' });
      } catch (error) {
        deliveries.inc({ consumer, outcome: 'failed' });
        throw error;
      }
    },
  };
}
