/**
 * A throwaway subgraph and a gateway in front of it, for tests of the gateway's own rules (rate
 * limits, client awareness, trusted documents): a query, two mutations (one that fails as
 * accounts' brute-force lock does) and a subscription, on no database.
 */
import { composeServices } from '@apollo/composition';
import { GraphQLError, parse } from 'graphql';
import { generateKeyPair, type CryptoKey } from 'jose';
import { startGateway, type GatewayOptions, type RunningGateway } from '../../gateway/server.ts';
import { issueCustomerToken } from '../../platform/identity/customer-token.ts';
import { GatewayIdentitySigner } from '../../platform/identity/gateway-identity.ts';
import { signingAlgorithm } from '../../platform/identity/keys.ts';
import { startSubgraph, type RequestScope, type RunningSubgraph } from '../../platform/subgraph/server.ts';

const typeDefs = parse(`
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key"])
  type Query {
    hello(name: String): String!
    products: [String!]!
  }
  type Mutation {
    "Fails with TOO_MANY_ATTEMPTS (retryAfter 42) when the password is 'locked', as accounts' lock does."
    signIn(email: String!, password: String!): String!
    placeOrder: String!
  }
  type Subscription {
    "Counts up every 50 ms, for ever."
    ticks: Int!
  }
`);

export interface ShopSubgraph {
  subgraph: RunningSubgraph;
  supergraphSdl: string;
  identityKeys: { privateKey: CryptoKey; publicKey: CryptoKey };
  tokenKeys: { privateKey: CryptoKey; publicKey: CryptoKey };
  /** The gateway's options for this subgraph; add the rule under test. */
  gatewayOptions(overrides?: Partial<GatewayOptions>): GatewayOptions;
  /** A token of a customer of its own: a caller no other test shares. */
  tokenFor(customerId: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startShopSubgraph(): Promise<ShopSubgraph> {
  const identityKeys = await generateKeyPair(signingAlgorithm);
  const tokenKeys = await generateKeyPair(signingAlgorithm);
  const subgraph = await startSubgraph<RequestScope>({
    name: 'shop',
    typeDefs,
    gatewayPublicKey: identityKeys.publicKey,
    production: false,
    port: 0,
    host: '127.0.0.1',
    subscriptions: true,
    createContext: (scope) => scope,
    resolvers: {
      Query: { hello: (_: unknown, { name }: { name?: string }) => `hello ${name ?? 'you'}`, products: () => ['tea', 'cake'] },
      Mutation: {
        signIn: (_: unknown, { password }: { password: string }) => {
          if (password === 'locked') throw new GraphQLError('Too many failed sign-ins: try again later', { extensions: { code: 'TOO_MANY_ATTEMPTS', retryAfter: 42 } });
          return 'signed in';
        },
        placeOrder: () => 'placed',
      },
      Subscription: {
        ticks: {
          subscribe: async function* () {
            for (let n = 1; ; n++) {
              await new Promise((resolve) => setTimeout(resolve, 50));
              yield { ticks: n };
            }
          },
        },
      },
    },
  });
  const composed = composeServices([{ name: 'shop', url: subgraph.url, typeDefs }]);
  if (composed.errors) throw new Error(composed.errors.map((error) => error.message).join('\n'));
  const supergraphSdl = composed.supergraphSdl!;
  return {
    subgraph,
    supergraphSdl,
    identityKeys,
    tokenKeys,
    gatewayOptions: (overrides = {}) => ({
      supergraphSdl,
      port: 0,
      host: '127.0.0.1',
      customerTokenPublicKey: tokenKeys.publicKey,
      identitySigner: new GatewayIdentitySigner(identityKeys.privateKey),
      production: false,
      ...overrides,
    }),
    tokenFor: (customerId) => issueCustomerToken(tokenKeys.privateKey, { customerId, roles: ['customer'] }, 600),
    stop: () => subgraph.stop(),
  };
}

export type { RunningGateway };
export { startGateway };
