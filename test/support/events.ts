/** Helpers of the outbox, relay and inbox tests: databases, events and waiting. */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import type { ContextName } from '../../platform/contexts.ts';
import type { Logger } from '../../platform/logging/logger.ts';
import { dropDatabase } from '../../platform/database/provision.ts';
import { createEnvelope, type EventEnvelope } from '../../platform/events/envelope.ts';
import type { OutboxTransaction } from '../../platform/events/outbox.ts';
import { cloneDatabase } from './postgres.ts';
import { freshDatabaseName, templateDatabaseName } from './run.ts';

/** Databases of one test file: each a clone of the run's migrated template, all dropped by `dropAll`. */
export function testDatabases() {
  const urls: string[] = [];
  return {
    async fresh(context: ContextName): Promise<string> {
      const runPrefix = inject('runPrefix');
      const url = await cloneDatabase(inject('testServerUrl'), templateDatabaseName(runPrefix, context), freshDatabaseName(runPrefix, context));
      urls.push(url);
      return url;
    },
    async dropAll(): Promise<void> {
      await Promise.all(urls.splice(0).map((url) => dropDatabase(url)));
    },
  };
}

/** A catalog event of one product, version `version`. */
export function productEvent(version: number, productId: string = randomUUID(), type = 'ProductPriceChanged'): EventEnvelope {
  return createEnvelope(
    'catalog',
    { type, aggregateType: 'Product', aggregateId: productId, aggregateVersion: version, payload: { version } },
    { correlationId: randomUUID(), causationId: randomUUID() },
  );
}

/** A plain pg connection in a transaction, seen as the `$executeRaw` of a Prisma transaction. */
export function asTransaction(client: pg.ClientBase): OutboxTransaction {
  return {
    $executeRaw: async (strings: TemplateStringsArray, ...values: unknown[]) => {
      const sql = strings.reduce((text, part, i) => `${text}$${i}${part}`);
      return (await client.query(sql, values)).rowCount ?? 0;
    },
  };
}

/** Connects a pg client that the caller must end. */
export async function connect(databaseUrl: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  return client;
}

/** Resolves once `condition` holds, polling; rejects after `timeoutMs` with `what` in the message. */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A publish function that records what it was given, in order (a test of the relay, not a broker). */
export function recordingPublisher() {
  const published: EventEnvelope[] = [];
  return {
    published,
    ids: () => published.map((e) => e.eventId),
    publish: async (event: EventEnvelope) => {
      published.push(event);
    },
  };
}

/** A logger that drops everything: the tests provoke failures the relay would rightly warn about. */
export const quietLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quietLogger };
