/**
 * Operating the event backbone (`npm run events -- <command>`):
 *   status                                outbox backlog per context, lag and dead letters per consumer
 *   dlq list [--consumer <name>]          dead letters with their error and attempt count
 *   dlq replay <id…> | --all [--consumer <name>]   puts dead letters back (each delivered once more)
 *   republish <context> --since <ISO time>         marks published outbox rows unpublished (broker loss)
 * It finds the platform as every operator command does (`locatePlatform`): through the environment
 * (DATABASE_URL / <CONTEXT>_DATABASE_URL, NATS_URL or EVENT_BUS_DATABASE_URL), or else through the
 * runtime file of a running `npm start`.
 *
 * It never declares anything on the bus: a stream created here would have no consumers, and every
 * event published into it until the services declared them would be lost (docs/decisions/0018).
 * When the stream is missing it says so; the services declare it again with its consumers.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { contextNames, isContextName } from '../platform/contexts.ts';
import type { EventBus } from '../platform/events/bus.ts';
import { createEventBus } from '../platform/events/bus/factory.ts';
import { OutboxRelay } from '../platform/events/relay.ts';
import { locatePlatform, type LocatedPlatform } from '../platform/runtime-file.ts';

async function outboxBacklog(databaseUrl: string): Promise<number> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM outbox_events WHERE published_at IS NULL');
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

async function status(platform: LocatedPlatform, bus: EventBus): Promise<void> {
  console.log(`Event bus: ${bus.kind}`);
  console.log('\nOutbox backlog (events committed, not yet on the bus)');
  for (const name of contextNames) console.log(`  ${name.padEnd(12)} ${await outboxBacklog(platform.databaseUrls[name])}`);
  const consumers = await bus.status();
  console.log('\nConsumers');
  if (consumers.length === 0) console.log('  (none yet)');
  for (const c of consumers) console.log(`  ${c.consumer.padEnd(12)} lag ${String(c.lag).padStart(6)}   dead letters ${c.deadLetters}`);
  console.log(`\nDead letters: ${consumers.reduce((sum, c) => sum + c.deadLetters, 0)}`);
}

async function listDeadLetters(bus: EventBus, consumer?: string): Promise<void> {
  const letters = await bus.deadLetters(consumer);
  if (letters.length === 0) return void console.log('No dead letters.');
  for (const letter of letters) {
    console.log(`${letter.id}  ${letter.deadAt}  consumer=${letter.consumer}  ${letter.event.type} ${letter.event.aggregateType}/${letter.event.aggregateId} v${letter.event.aggregateVersion}`);
    console.log(`    event ${letter.event.eventId}, ${letter.attempts} attempts, last error: ${letter.error}`);
  }
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { consumer: { type: 'string' }, all: { type: 'boolean' }, since: { type: 'string' } },
  });
  const [command, sub, ...rest] = positionals;
  const platform = locatePlatform();
  if (command === 'republish') {
    if (!sub || !isContextName(sub) || !values.since || Number.isNaN(Date.parse(values.since))) {
      throw new Error('usage: npm run events -- republish <context> --since <ISO time>');
    }
    const relay = new OutboxRelay({ databaseUrl: platform.databaseUrls[sub], publish: async () => {} });
    try {
      console.log(`${await relay.republish({ since: new Date(values.since) })} events of ${sub} will be published again by its relay.`);
    } finally {
      await relay.stop();
    }
    return;
  }
  const bus = await createEventBus(platform.busEnv, { nats: { declare: false } });
  try {
    if (command === 'status') return await status(platform, bus);
    if (command === 'dlq' && sub === 'list') return await listDeadLetters(bus, values.consumer);
    if (command === 'dlq' && sub === 'replay') {
      if (!values.all && rest.length === 0) throw new Error('usage: npm run events -- dlq replay <id…> | --all [--consumer <name>]');
      const selection = values.all ? { all: true as const, ...(values.consumer ? { consumer: values.consumer } : {}) } : { ids: rest };
      return void console.log(`Replayed ${await bus.replayDeadLetters(selection)} dead letter(s).`);
    }
    throw new Error('usage: npm run events -- status | dlq list [--consumer <name>] | dlq replay <id…>|--all | republish <context> --since <time>');
  } finally {
    await bus.close();
  }
}

main().catch((error: unknown) => {
  console.error((error as Error).message);
  process.exit(1);
});
