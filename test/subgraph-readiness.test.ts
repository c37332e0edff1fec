/**
 * A subgraph's `/ready` tells whether it can serve, naming the dependency that is down — its
 * database or its event bus — while `/health` keeps answering 200 as long as the process does.
 * The catalog subgraph stands in for all six (they share platform/subgraph), on a private
 * nats-server the test stops and a TCP proxy in front of its database the test cuts.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { withDatabase } from '../platform/config.ts';
import { dropDatabase, ensureDatabase } from '../platform/database/provision.ts';
import type { EventBus } from '../platform/events/bus.ts';
import { createJetStreamBus } from '../platform/events/bus/nats-jetstream.ts';
import { createPostgresQueueBus } from '../platform/events/bus/postgres-queue.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import { startCatalogSubgraph } from '../subgraphs/catalog/subgraph.ts';
import { quietLogger, testDatabases } from './support/events.ts';
import { startPrivateNats, type PrivateNats } from './support/private-nats.ts';
import { generateTestKeys } from './support/stack.ts';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.ts';
import { waitFor } from './support/wait.ts';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  const failures: unknown[] = [];
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch((error) => failures.push(error));
  if (failures.length > 0) throw new AggregateError(failures, 'cleanup failed');
});

interface Probe {
  status: number;
  body: { status: string; subgraph: string; dependencies: Record<string, { status: string; detail?: string }> };
  text: string;
}

/** `databaseUrl` reached through a TCP proxy the test can cut. */
async function behindProxy(databaseUrl: string): Promise<{ url: string; proxy: TcpProxy }> {
  const url = new URL(databaseUrl);
  const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
  cleanups.push(() => proxy.close());
  url.host = proxy.address;
  return { url: url.toString(), proxy };
}

/** The catalog subgraph on a private NATS, its database reached through a proxy the test can cut. */
async function catalogWithBreakableDependencies(): Promise<{ subgraph: RunningContextSubgraph; nats: PrivateNats; database: TcpProxy }> {
  const nats = await startPrivateNats();
  cleanups.push(() => nats.dispose());
  const eventBus = await createJetStreamBus({ servers: nats.url, timeoutMs: 1_000, logger: quietLogger });
  cleanups.push(() => eventBus.close());
  const { subgraph, database } = await catalogOn(eventBus);
  return { subgraph, nats, database };
}

async function catalogOn(eventBus: EventBus): Promise<{ subgraph: RunningContextSubgraph; database: TcpProxy }> {
  const databases = testDatabases();
  cleanups.push(() => databases.dropAll());
  const { url: databaseUrl, proxy: database } = await behindProxy(await databases.fresh('catalog'));
  const subgraph = await startCatalogSubgraph({
    databaseUrl, eventBus, relay: { pollIntervalMs: 200, logger: quietLogger },
    port: 0, host: '127.0.0.1', gatewayPublicKey: (await generateTestKeys()).gatewayIdentity.publicKey, production: true,
  });
  cleanups.push(() => subgraph.stop());
  return { subgraph, database };
}

async function probe(subgraph: RunningContextSubgraph, path: '/ready' | '/health'): Promise<Probe> {
  const response = await fetch(new URL(path, subgraph.url), { signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text), text };
}

/** Waits until `/ready` answers `status` with the given dependency states. */
function readyAnswers(subgraph: RunningContextSubgraph, status: number, dependencies: Record<string, 'up' | 'down'>): Promise<Probe> {
  return waitFor(`/ready to answer ${status} with ${JSON.stringify(dependencies)}`, async () => {
    const answer = await probe(subgraph, '/ready');
    const states = Object.fromEntries(Object.entries(answer.body.dependencies).map(([name, state]) => [name, state.status]));
    return answer.status === status && JSON.stringify(states) === JSON.stringify(dependencies) ? answer : undefined;
  }, 30_000);
}

/** Nothing an outsider should read: no URL, host, port, user or driver message. */
function expectNothingInternal(answer: Probe, ...secrets: string[]): void {
  for (const secret of ['nats://', 'postgres', '127.0.0.1', 'ECONNREFUSED', ...secrets]) expect(answer.text).not.toContain(secret);
}

describe('a subgraph’s readiness', { timeout: 120_000 }, () => {
  it('answers /ready with 503 naming the bus while NATS is down, and 200 again once it is back; /health stays 200', async () => {
    const { subgraph, nats } = await catalogWithBreakableDependencies();
    const ready = await readyAnswers(subgraph, 200, { database: 'up', bus: 'up' });
    expect(ready.body).toMatchObject({ status: 'ready', subgraph: 'catalog' });

    await nats.stop();
    const down = await readyAnswers(subgraph, 503, { database: 'up', bus: 'down' });
    expect(down.body).toMatchObject({ status: 'unavailable', subgraph: 'catalog', dependencies: { bus: { status: 'down', detail: expect.any(String) } } });
    expectNothingInternal(down, new URL(nats.url).port);
    expect((await probe(subgraph, '/health')).status).toBe(200);

    await nats.start();
    await readyAnswers(subgraph, 200, { database: 'up', bus: 'up' });
  });

  it('answers /ready with 503 naming the database while it is unreachable, and 200 again once it answers; /health stays 200', async () => {
    const { subgraph, database } = await catalogWithBreakableDependencies();
    await readyAnswers(subgraph, 200, { database: 'up', bus: 'up' });

    database.pause();
    const down = await readyAnswers(subgraph, 503, { database: 'down', bus: 'up' });
    expect(down.body.dependencies.database).toEqual({ status: 'down', detail: expect.stringMatching(/unreachable|no answer within/) });
    expectNothingInternal(down, String(database.port));
    expect((await probe(subgraph, '/health')).status).toBe(200);

    database.resume();
    await readyAnswers(subgraph, 200, { database: 'up', bus: 'up' });
  });
});

describe('a subgraph’s readiness on the PostgreSQL queue', { timeout: 120_000 }, () => {
  it('answers /ready with 503 naming the bus while the queue’s database is unreachable, and 200 again once it answers', async () => {
    const queueUrl = withDatabase(inject('testServerUrl'), `${inject('runPrefix')}_readybus_${randomBytes(4).toString('hex')}`);
    await ensureDatabase(queueUrl);
    cleanups.push(() => dropDatabase(queueUrl));
    const { url, proxy } = await behindProxy(queueUrl);
    const eventBus = await createPostgresQueueBus({ databaseUrl: url, pollingIntervalMs: 200, poolSize: 2, logger: quietLogger });
    cleanups.push(() => eventBus.close());
    const { subgraph } = await catalogOn(eventBus);
    await readyAnswers(subgraph, 200, { database: 'up', bus: 'up' });

    proxy.pause();
    const down = await readyAnswers(subgraph, 503, { database: 'up', bus: 'down' });
    expectNothingInternal(down, String(proxy.port));

    proxy.resume();
    await readyAnswers(subgraph, 200, { database: 'up', bus: 'up' });
  });
});
