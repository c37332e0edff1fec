/**
 * `npm run bench -- events [--events 2000] [--light 200] [--rate 50] [--concurrency 1]`
 *
 * Events through the whole backbone, on each adapter: a transaction commits an event to a
 * context's outbox → the outbox relay publishes it → the bus delivers it → a consumer applies it
 * through its inbox (handleOnce, its own database). Measured:
 * - light load: `--light` events committed one at a time at `--rate` per second; latency from
 *   commit to the broker's acknowledgement of the relay's publish (the relay's own cost), and
 *   from commit to the consumer's inbox commit, p50/p99/max;
 * - throughput: `--events` events committed by 8 concurrent writers as fast as they go; events
 *   per second from the first commit to the last one consumed, and latency under that load.
 * Baseline: the same 8 writers committing the same outbox transactions with no relay, bus or
 * consumer — what PostgreSQL alone sustains here — so the backbone's cost is visible.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { PrismaClient as CatalogClient } from '../../prisma/catalog/client/client.ts';
import { PrismaClient as InventoryClient } from '../../prisma/inventory/client/client.ts';
import { prismaClientOptions } from '../../platform/database/prisma.ts';
import type { EventBus } from '../../platform/events/bus.ts';
import { createJetStreamBus } from '../../platform/events/bus/nats-jetstream.ts';
import { createPostgresQueueBus } from '../../platform/events/bus/postgres-queue.ts';
import { createEnvelope } from '../../platform/events/envelope.ts';
import { handleOnce } from '../../platform/events/inbox.ts';
import { appendToOutbox } from '../../platform/events/outbox.ts';
import { OutboxRelay } from '../../platform/events/relay.ts';
import { benchNatsUrl, machineLine, ms, printTable, sleep, summarize, ThrowawayDatabases } from './support.ts';

const eventType = 'BenchmarkEventHappened';
const writers = 8;

function commitOne(source: CatalogClient): Promise<{ eventId: string; committedAt: number }> {
  const event = createEnvelope('bench', { type: eventType, aggregateType: 'Benchmark', aggregateId: randomUUID(), aggregateVersion: 1, payload: { n: 1 } }, { correlationId: randomUUID(), causationId: randomUUID() });
  return source.$transaction(async (tx) => appendToOutbox(tx, [event])).then(() => ({ eventId: event.eventId, committedAt: performance.now() }));
}

/** Commits `count` events with `writers` concurrent writers; resolves with each commit time. */
async function commitMany(source: CatalogClient, count: number, onCommit: (eventId: string, at: number) => void): Promise<number> {
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (next < count) {
        next += 1;
        const { eventId, committedAt } = await commitOne(source);
        onCommit(eventId, committedAt);
      }
    }),
  );
  return started;
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function baseline(dbs: ThrowawayDatabases, count: number): Promise<number> {
  const source = new CatalogClient(prismaClientOptions(await dbs.create('baseline', 'catalog'), writers + 2));
  try {
    const started = await commitMany(source, count, () => {});
    return count / ((performance.now() - started) / 1000);
  } finally {
    await source.$disconnect();
  }
}

interface AdapterResult {
  adapter: string;
  /** Commit → the broker acknowledged the publish. */
  published: ReturnType<typeof summarize>;
  light: ReturnType<typeof summarize>;
  loaded: ReturnType<typeof summarize>;
  throughput: number;
}

async function measureAdapter(adapter: 'postgres' | 'nats', dbs: ThrowawayDatabases, options: { events: number; light: number; rate: number; concurrency: number }): Promise<AdapterResult> {
  const stream = `BENCH_${randomUUID().slice(0, 8).toUpperCase()}`;
  const bus: EventBus =
    adapter === 'postgres'
      ? await createPostgresQueueBus({ databaseUrl: await dbs.create(`${adapter}_bus`) })
      : await createJetStreamBus({ servers: benchNatsUrl, stream });
  const sourceUrl = await dbs.create(`${adapter}_source`, 'catalog');
  const producer = new CatalogClient(prismaClientOptions(sourceUrl, writers + 2));
  const sink = new InventoryClient(prismaClientOptions(await dbs.create(`${adapter}_sink`, 'inventory'), options.concurrency + 2));
  const committed = new Map<string, number>();
  const consumed = new Map<string, number>();
  const published = new Map<string, number>();
  const liveRelay = new OutboxRelay({
    databaseUrl: sourceUrl,
    name: `bench-${adapter}`,
    publish: async (event) => {
      await bus.publish(event);
      published.set(event.eventId, performance.now());
    },
  }).start();
  const subscription = await bus.subscribe('bench', { types: [eventType], concurrency: options.concurrency }, async (event) => {
    await handleOnce(sink, 'bench', event, async () => {}, { ordering: 'monotonic' });
    consumed.set(event.eventId, performance.now());
  });
  try {
    // Warm-up: connections, prepared statements, JIT.
    for (let i = 0; i < 20; i++) await commitOne(producer);
    await waitFor(() => consumed.size >= 20, 30_000, 'warm-up');
    committed.clear();
    consumed.clear();
    published.clear();

    for (let i = 0; i < options.light; i++) {
      const { eventId, committedAt } = await commitOne(producer);
      committed.set(eventId, committedAt);
      await sleep(1000 / options.rate);
    }
    await waitFor(() => consumed.size >= options.light, 60_000, 'light-load events');
    const light = summarize([...committed].map(([id, at]) => consumed.get(id)! - at));
    // A publish acknowledged before the producer saw its COMMIT return counts as 0.
    const toBroker = summarize([...committed].map(([id, at]) => Math.max(0, published.get(id)! - at)));
    committed.clear();
    consumed.clear();

    const started = await commitMany(producer, options.events, (id, at) => committed.set(id, at));
    await waitFor(() => consumed.size >= options.events, 300_000, 'all events');
    const finished = Math.max(...consumed.values());
    return {
      adapter: adapter === 'postgres' ? 'PostgreSQL queue (pg-boss)' : 'NATS JetStream',
      published: toBroker,
      light,
      loaded: summarize([...committed].map(([id, at]) => consumed.get(id)! - at)),
      throughput: options.events / ((finished - started) / 1000),
    };
  } finally {
    await subscription.stop();
    await liveRelay.stop();
    await bus.close();
    await producer.$disconnect();
    await sink.$disconnect();
    if (adapter === 'nats') {
      const nc = await connect({ servers: benchNatsUrl });
      const jsm = await jetstreamManager(nc);
      for (const name of [stream, `${stream}_DEAD_LETTERS`]) await jsm.streams.delete(name).catch(() => {});
      await nc.close();
    }
  }
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      events: { type: 'string', default: '2000' },
      light: { type: 'string', default: '200' },
      rate: { type: 'string', default: '50' },
      concurrency: { type: 'string', default: '1' },
      adapters: { type: 'string', default: 'postgres,nats' },
    },
  });
  const options = { events: Number(values.events), light: Number(values.light), rate: Number(values.rate), concurrency: Number(values.concurrency) };
  const dbs = new ThrowawayDatabases();
  try {
    console.log(`events benchmark — ${machineLine()}`);
    console.log(`outbox → relay → bus → consumer inbox; ${writers} writers; consumer concurrency ${options.concurrency}\n`);
    const baselineRate = await baseline(dbs, options.events);
    const results: AdapterResult[] = [];
    for (const adapter of values.adapters.split(',') as ('postgres' | 'nats')[]) results.push(await measureAdapter(adapter, dbs, options));
    printTable(
      ['adapter', 'events/s (commit → consumed)', `light load (${options.rate}/s): commit → broker p50`, 'p99', 'commit → consumed p50', 'p99', 'max', `under load p50`, 'p99'],
      results.map((r) => [r.adapter, r.throughput.toFixed(0), ms(r.published.p50), ms(r.published.p99), ms(r.light.p50), ms(r.light.p99), ms(r.light.max), ms(r.loaded.p50), ms(r.loaded.p99)]),
    );
    console.log(`\nbaseline: PostgreSQL alone commits the same outbox transactions at ${baselineRate.toFixed(0)}/s with ${writers} writers (no relay, bus or consumer).`);
  } finally {
    await dbs.dropAll();
  }
}
