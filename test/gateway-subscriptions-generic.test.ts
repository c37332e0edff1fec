/**
 * The gateway's subscription path is generic: a supergraph of two throwaway subgraphs (none of
 * ours), composed here, with a subscription field on one and entity fields on the other.
 */
import { composeServices } from '@apollo/composition';
import { createClient, type Client } from 'graphql-ws';
import { parse } from 'graphql';
import { generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startGateway, type RunningGateway } from '../gateway/server.ts';
import { PushIterator } from '../platform/async/push-iterator.ts';
import { issueCustomerToken } from '../platform/identity/customer-token.ts';
import { GatewayIdentitySigner } from '../platform/identity/gateway-identity.ts';
import { signingAlgorithm } from '../platform/identity/keys.ts';
import { startSubgraph, type RequestScope, type RunningSubgraph } from '../platform/subgraph/server.ts';
import { waitFor } from './support/wait.ts';

const link = 'extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])';

const tickerTypeDefs = parse(`
  ${link}
  type Query {
    ticker: String
  }
  type Subscription {
    "Counts down from from to 1, then completes; \`viewer\` is the caller the subgraph was told about."
    countdown(from: Int!, failAt: Int): Tick!
    "Each value published to the channel after subscribing (like myOrderUpdates)."
    changes(channel: String!): Tick!
    "The channel's value on subscribing, then each one published (like orderStatusChanged)."
    current(channel: String!): Tick!
  }
  type Tick @key(fields: "id") {
    id: ID!
    n: Int!
    viewer: String
  }
`);

const labelsTypeDefs = parse(`
  ${link}
  type Query {
    labels: String
  }
  type Tick @key(fields: "id") {
    id: ID!
    label: String!
    shout: String!
  }
`);

/** Channels the test publishes to, and the subgraph subscriptions listening to each. */
interface Channel {
  value: number;
  listeners: Set<(n: number) => void>;
  /** Subscriptions the subgraph started on it, ever. */
  subscribed: number;
}
const channels = new Map<string, Channel>();
function channel(name: string): Channel {
  let found = channels.get(name);
  if (!found) channels.set(name, (found = { value: 0, listeners: new Set(), subscribed: 0 }));
  return found;
}
function publish(name: string, n: number): void {
  const found = channel(name);
  found.value = n;
  for (const listener of found.listeners) listener(n);
}
function listen(field: 'changes' | 'current', name: string) {
  const found = channel(name);
  found.subscribed++;
  const events = new PushIterator<Record<string, { id: string; n: number }>>();
  const send = (n: number) => events.push({ [field]: { id: `${name}-${n}`, n } });
  found.listeners.add(send);
  events.setCleanup(async () => void found.listeners.delete(send));
  if (field === 'current') send(found.value);
  return events;
}

describe('subscriptions through the gateway for any subgraph', () => {
  let ticker: RunningSubgraph;
  let labels: RunningSubgraph;
  let gateway: RunningGateway;
  let token: string;
  const clients: Client[] = [];
  let entityFetches = 0;

  beforeAll(async () => {
    const identityKeys = await generateKeyPair(signingAlgorithm);
    const tokenKeys = await generateKeyPair(signingAlgorithm);
    const common = { gatewayPublicKey: identityKeys.publicKey, isHealthy: async () => true, production: false, port: 0, host: '127.0.0.1', createContext: (scope: RequestScope) => scope };
    ticker = await startSubgraph<RequestScope>({
      ...common,
      name: 'ticker',
      typeDefs: tickerTypeDefs,
      subscriptions: true,
      resolvers: {
        Subscription: {
          countdown: {
            subscribe: async function* (_: unknown, { from, failAt }: { from: number; failAt?: number }, context: RequestScope) {
              for (let n = from; n >= 1; n--) {
                await new Promise((resolve) => setTimeout(resolve, 20));
                if (n === failAt) throw new Error(`tick ${n} failed`);
                yield { countdown: { id: `tick-${n}`, n, viewer: context.identity.customerId } };
              }
            },
          },
          changes: { subscribe: (_: unknown, args: { channel: string }) => listen('changes', args.channel) },
          current: { subscribe: (_: unknown, args: { channel: string }) => listen('current', args.channel) },
        },
      },
    });
    labels = await startSubgraph<RequestScope>({
      ...common,
      name: 'labels',
      typeDefs: labelsTypeDefs,
      resolvers: {
        Tick: {
          __resolveReference: (reference: { id: string }) => {
            entityFetches++;
            return { id: reference.id, label: `label of ${reference.id}`, shout: `${reference.id.toUpperCase()}!` };
          },
        },
      },
    });
    const composed = composeServices([
      { name: 'ticker', url: ticker.url, typeDefs: tickerTypeDefs },
      { name: 'labels', url: labels.url, typeDefs: labelsTypeDefs },
    ]);
    expect(composed.errors).toBeUndefined();
    gateway = await startGateway({
      supergraphSdl: composed.supergraphSdl!,
      port: 0,
      host: '127.0.0.1',
      customerTokenPublicKey: tokenKeys.publicKey,
      identitySigner: new GatewayIdentitySigner(identityKeys.privateKey),
      production: false,
    });
    token = await issueCustomerToken(tokenKeys.privateKey, { customerId: 'viewer-1', roles: ['customer'] }, 600);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.dispose()));
    await gateway?.stop();
    await ticker?.stop();
    await labels?.stop();
  });

  function run(query: string, variables: Record<string, unknown>) {
    const client = createClient({ url: gateway.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: { Authorization: `Bearer ${token}` } });
    clients.push(client);
    const received = { data: [] as Record<string, any>[], errors: [] as { message: string; extensions?: Record<string, unknown> }[], completed: false, dispose: () => {} };
    received.dispose = client.subscribe<Record<string, any>>(
      { query, variables },
      {
        next: (result) => {
          if (result.data) received.data.push(result.data);
          if (result.errors) received.errors.push(...(result.errors as typeof received.errors));
        },
        error: (error) => received.errors.push({ message: String(error) }),
        complete: () => (received.completed = true),
      },
    );
    return received;
  }

  it('resolves each event across both subgraphs with aliases and fragments, passes the caller on, and completes when the subgraph completes', async () => {
    const before = entityFetches;
    const received = run(
      `subscription Count($from: Int!) { tick: countdown(from: $from) { n ...Labelled who: viewer } } fragment Labelled on Tick { label }`,
      { from: 3 },
    );
    await waitFor('complete', () => (received.completed ? true : undefined));
    expect(received.errors).toEqual([]);
    expect(received.data).toEqual([3, 2, 1].map((n) => ({ tick: { n, label: `label of tick-${n}`, who: 'viewer-1' } })));
    expect(entityFetches - before).toBe(3); // one entity fetch per event, at the other subgraph
    await waitFor('nothing left upstream', () => (gateway.subscriptionStats().upstreamSubscriptions === 0 ? true : undefined));
  });

  it('sends the events before a subgraph error, then the error, then complete', async () => {
    const received = run(`subscription { countdown(from: 3, failAt: 1) { n label } }`, {});
    await waitFor('complete', () => (received.completed ? true : undefined));
    expect(received.data.map((d) => d.countdown.n)).toEqual([3, 2]);
    expect(received.errors).toHaveLength(1);
    expect(received.errors[0]!.message).toMatch(/tick 1 failed/);
  });

  describe('sharing an upstream subscription among the clients of one caller', () => {
    const changes = `subscription Changes($channel: String!) { changes(channel: $channel) { n label } }`;
    const current = `subscription Current($channel: String!) { current(channel: $channel) { n label } }`;
    const ns = (received: ReturnType<typeof run>, field: string) => received.data.map((d) => d[field].n as number);
    const has = (received: ReturnType<typeof run>, field: string, n: number) => () => (ns(received, field).includes(n) ? true : undefined);
    const listeners = (name: string, count: number) => () => (channel(name).listeners.size === count ? true : undefined);

    it('gives a client joining after events were sent none of them when the subscription sends only changes, then shares the upstream again', async () => {
      const first = run(changes, { channel: 'a' });
      await waitFor('the first subscribed at the subgraph', listeners('a', 1));
      publish('a', 1);
      await waitFor('1 for the first', has(first, 'changes', 1));

      const late = run(changes, { channel: 'a' });
      await waitFor('the late joiner subscribed at the gateway', () => (gateway.subscriptionStats().clients === 2 ? true : undefined));
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(late.data).toEqual([]); // not 1, sent before it joined
      // Its own subscription at the subgraph, until it has caught up with the shared one.
      await waitFor('the late joiner subscribed at the subgraph', listeners('a', 2));
      publish('a', 2);
      await waitFor('2 for both', () => (has(first, 'changes', 2)() && has(late, 'changes', 2)() ? true : undefined));
      await waitFor('one subscription at the subgraph again', listeners('a', 1));
      publish('a', 3);
      await waitFor('3 for both', () => (has(first, 'changes', 3)() && has(late, 'changes', 3)() ? true : undefined));

      expect(first.data).toEqual([1, 2, 3].map((n) => ({ changes: { n, label: `label of a-${n}` } })));
      expect(late.data).toEqual([2, 3].map((n) => ({ changes: { n, label: `label of a-${n}` } })));
      expect([...first.errors, ...late.errors]).toEqual([]);
      expect(gateway.subscriptionStats()).toMatchObject({ clients: 2, upstreamSubscriptions: 1 });
      first.dispose();
      late.dispose();
      await waitFor('nothing left upstream', () => (gateway.subscriptionStats().upstreamSubscriptions === 0 && channel('a').listeners.size === 0 ? true : undefined));
    });

    it('resolves each operation sharing an upstream by its own plan', async () => {
      const labelled = run(`subscription Watch($channel: String!) { changes(channel: $channel) { n label } }`, { channel: 'c' });
      const shouted = run(`subscription Watch($channel: String!) { changes(channel: $channel) { n shout } }`, { channel: 'c' });
      await waitFor('both subscribed at the gateway', () => (gateway.subscriptionStats().clients === 2 ? true : undefined));
      await waitFor('subscribed at the subgraph', listeners('c', 1));
      // Same name, same primary fetch: one upstream subscription; the rest differs (the labels subgraph).
      expect(gateway.subscriptionStats().upstreamSubscriptions).toBe(1);
      publish('c', 1);
      publish('c', 2);
      await waitFor('2 for both', () => (has(labelled, 'changes', 2)() && has(shouted, 'changes', 2)() ? true : undefined));
      expect([...labelled.errors, ...shouted.errors]).toEqual([]);
      expect(labelled.data).toEqual([1, 2].map((n) => ({ changes: { n, label: `label of c-${n}` } })));
      expect(shouted.data).toEqual([1, 2].map((n) => ({ changes: { n, shout: `C-${n}!` } })));
      labelled.dispose();
      shouted.dispose();
      await waitFor('nothing left upstream', () => (gateway.subscriptionStats().upstreamSubscriptions === 0 && channel('c').listeners.size === 0 ? true : undefined));
    });

    it('gives a client joining after events were sent the latest first when the subscription starts with the state; once that is proven, without another subgraph subscription', async () => {
      publish('b', 5);
      const first = run(current, { channel: 'b' });
      await waitFor('5 for the first', has(first, 'current', 5));
      publish('b', 6);
      await waitFor('6 for the first', has(first, 'current', 6));

      const second = run(current, { channel: 'b' });
      await waitFor('the state for the second', () => (second.data.length > 0 ? true : undefined));
      expect(ns(second, 'current')).toEqual([6]);
      expect(channel('b').subscribed).toBe(2); // its catch-up subscription, whose first event proved it starts with the state
      await waitFor('one subscription at the subgraph again', listeners('b', 1));

      const third = run(current, { channel: 'b' });
      await waitFor('the state for the third', () => (third.data.length > 0 ? true : undefined));
      expect(ns(third, 'current')).toEqual([6]);
      expect(channel('b').subscribed).toBe(2);

      publish('b', 7);
      await waitFor('7 for all', () => ([first, second, third].every((r) => has(r, 'current', 7)()) ? true : undefined));
      expect(ns(first, 'current')).toEqual([5, 6, 7]);
      expect(ns(second, 'current')).toEqual([6, 7]);
      expect(ns(third, 'current')).toEqual([6, 7]);
      expect(third.data.at(-1)).toEqual({ current: { n: 7, label: 'label of b-7' } });
      expect(channel('b').listeners.size).toBe(1);
      for (const received of [first, second, third]) received.dispose();
      await waitFor('nothing left upstream', () => (gateway.subscriptionStats().upstreamSubscriptions === 0 && channel('b').listeners.size === 0 ? true : undefined));
    });
  });
});
