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
  }
`);

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
            return { id: reference.id, label: `label of ${reference.id}` };
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
    const received = { data: [] as Record<string, any>[], errors: [] as { message: string; extensions?: Record<string, unknown> }[], completed: false };
    client.subscribe<Record<string, any>>(
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
});
