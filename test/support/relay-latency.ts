/**
 * Test-only measurement (not part of `npm test`): commit-to-publish latency of the outbox relay
 * woken by the outbox trigger's NOTIFY. Commits N one-event transactions on a scratch database
 * and reports p50/p99/max of (publish done − COMMIT sent), in milliseconds.
 *
 *   tsx test/support/relay-latency.ts [--events 500] [--gap-ms 2] [--server postgres://…/postgres] [--nats nats://…]
 *
 * Without --nats the publish function only records the time: this measures the relay alone.
 * With --nats it publishes through the JetStream bus (a stream of its own, deleted afterwards)
 * and records the time once the server has acknowledged the event.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNats } from '@nats-io/transport-node';
import pg from 'pg';
import { withDatabase } from '../../platform/config.ts';
import { applyMigrations, migrationsDirOf } from '../../platform/database/migrations.ts';
import { dropDatabase, ensureDatabase } from '../../platform/database/provision.ts';
import type { EventBus } from '../../platform/events/bus.ts';
import { createEventBus } from '../../platform/events/bus/factory.ts';
import { appendToOutbox } from '../../platform/events/outbox.ts';
import { OutboxRelay } from '../../platform/events/relay.ts';
import { asTransaction, productEvent, quietLogger } from './events.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '500' },
    'gap-ms': { type: 'string', default: '2' },
    server: { type: 'string', default: process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    nats: { type: 'string' },
  },
});
const count = Number(values.events);
const gapMs = Number(values['gap-ms']);
const databaseUrl = withDatabase(values.server, `ctest_latency_${randomBytes(4).toString('hex')}`);

const stream = `RELAY_LATENCY_${randomBytes(4).toString('hex')}`;
const bus: EventBus | undefined = values.nats
  ? await createEventBus({ NATS_URL: values.nats }, { nats: { stream, subjectPrefix: stream.toLowerCase(), logger: quietLogger } })
  : undefined;

await ensureDatabase(databaseUrl);
try {
  await applyMigrations({ databaseUrl, migrationsDir: migrationsDirOf('catalog') });
  const publishedAt = new Map<string, number>();
  const relay = new OutboxRelay({
    databaseUrl,
    logger: quietLogger,
    publish: async (event) => {
      await bus?.publish(event);
      publishedAt.set(event.eventId, performance.now());
    },
  }).start();
  while (relay.state !== 'leading') await new Promise((resolve) => setTimeout(resolve, 10));

  const producer = new pg.Client({ connectionString: databaseUrl });
  await producer.connect();
  const commitSentAt = new Map<string, number>();
  for (let i = 0; i < count; i += 1) {
    const event = productEvent(1);
    await producer.query('BEGIN');
    await appendToOutbox(asTransaction(producer), [event]);
    commitSentAt.set(event.eventId, performance.now());
    await producer.query('COMMIT');
    if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
  while (publishedAt.size < count) await new Promise((resolve) => setTimeout(resolve, 10));
  await producer.end();
  await relay.stop();

  const latencies = [...commitSentAt].map(([id, sent]) => publishedAt.get(id)! - sent).sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)]!.toFixed(2);
  console.log(`${count} events, ${gapMs} ms between commits, ${bus ? 'through NATS JetStream' : 'relay only'}: p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${at(1)} ms`);
} finally {
  await dropDatabase(databaseUrl);
  if (bus && values.nats) {
    await bus.close();
    const nc = await connectNats({ servers: values.nats });
    const jsm = await jetstreamManager(nc);
    for (const name of [stream, `${stream}_DEAD_LETTERS`]) await jsm.streams.delete(name).catch(() => false);
    await nc.close();
  }
}
