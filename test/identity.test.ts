import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCustomerToken } from '../platform/identity/customer-token.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader, subgraphAudience } from '../platform/identity/gateway-identity.ts';
import { signingAlgorithm } from '../platform/identity/keys.ts';
import { contextNames } from '../platform/contexts.ts';
import { errorCodes, graphql } from './support/graphql.ts';
import { startStack, type Stack } from './support/stack.ts';

const customerId = '6a96527f-26b5-5517-8241-d043cd7b10d4';

describe('identity between clients, the gateway and the subgraphs', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.stop());

  describe('a request sent straight to a subgraph', () => {
    const operations = {
      'a query': '{ __typename }',
      'an _entities call': '{ _entities(representations: [{ __typename: "Product", id: "6a96527f-26b5-5517-8241-d043cd7b10d4" }]) { __typename } }',
      'a _service call': '{ _service { sdl } }',
    };

    for (const context of contextNames) {
      for (const [what, query] of Object.entries(operations)) {
        it(`is refused with 401 by ${context} for ${what} without the gateway's signature`, async () => {
          const response = await graphql(stack.subgraphs[context].url, { query });
          expect(response.status).toBe(401);
          expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
          expect(response.data ?? null).toBeNull();
        });
      }
    }

    it('is refused with 401 when the signature was made with another key', async () => {
      const { privateKey } = await generateKeyPair(signingAlgorithm);
      const forged = await new GatewayIdentitySigner(privateKey).sign({ customerId, roles: ['admin'] }, 'inventory');
      const response = await graphql(stack.subgraphs.inventory.url, { query: '{ _service { sdl } }', headers: { [gatewayIdentityHeader]: forged } });
      expect(response.status).toBe(401);
      expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
    });

    it('is refused with 401 when the gateway signature has expired', async () => {
      const expired = await new SignJWT({ roles: ['customer'] })
        .setProtectedHeader({ alg: signingAlgorithm })
        .setIssuer('commerce-gateway')
        .setAudience(subgraphAudience('accounts'))
        .setSubject(customerId)
        .setIssuedAt(Math.floor(Date.now() / 1000) - 600)
        .setExpirationTime(Math.floor(Date.now() / 1000) - 300)
        .sign(stack.keys.gatewayIdentity.privateKey);
      const response = await graphql(stack.subgraphs.accounts.url, { query: '{ me { id } }', headers: { [gatewayIdentityHeader]: expired } });
      expect(response.status).toBe(401);
    });

    it("is refused with 401 when it carries a client's bearer token instead of the gateway's signature", async () => {
      const token = await stack.tokenFor({ customerId, roles: ['admin'] });
      const response = await graphql(stack.subgraphs.accounts.url, { query: '{ me { id } }', token, headers: { [gatewayIdentityHeader]: token } });
      expect(response.status).toBe(401);
    });

    it('is answered when the gateway signed it', async () => {
      const signed = await stack.signer.sign({ customerId: null, roles: [] }, 'catalog');
      const response = await graphql(stack.subgraphs.catalog.url, { query: '{ _service { sdl } }', headers: { [gatewayIdentityHeader]: signed } });
      expect(response.status).toBe(200);
      expect(response.data?._service.sdl).toContain('type Product');
    });
  });

  describe('a client calling the gateway', () => {
    it('browses the catalog anonymously, and gets `me` null with the gateway\'s UNAUTHORIZED_FIELD_OR_TYPE', async () => {
      const response = await graphql(stack.gatewayUrl, { query: '{ products(first: 1) { totalCount } me { id } }' });
      expect(response.status).toBe(200);
      expect(errorCodes(response)).toEqual(['UNAUTHORIZED_FIELD_OR_TYPE']);
      expect(response.data).toEqual({ products: { totalCount: 0 }, me: null });
    });

    const refusals: Record<string, () => Promise<Record<string, string>>> = {
      'a malformed token': async () => ({ authorization: 'Bearer not.a.jwt' }),
      'an Authorization header that is not a bearer token': async () => ({ authorization: 'Basic YWRtaW46YWRtaW4=' }),
      'a token signed with the wrong key': async () => {
        const { privateKey } = await generateKeyPair(signingAlgorithm);
        return { authorization: `Bearer ${await issueCustomerToken(privateKey, { customerId, roles: ['admin'] }, 600)}` };
      },
      'an expired token': async () => {
        const token = await new SignJWT({ roles: ['customer'] })
          .setProtectedHeader({ alg: signingAlgorithm })
          .setIssuer('commerce-accounts')
          .setAudience('commerce-gateway')
          .setSubject(customerId)
          .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
          .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
          .sign(stack.keys.authToken.privateKey);
        return { authorization: `Bearer ${token}` };
      },
      'a token for another audience': async () => {
        const token = await new SignJWT({ roles: ['admin'] })
          .setProtectedHeader({ alg: signingAlgorithm })
          .setIssuer('commerce-accounts')
          .setAudience('someone-else')
          .setSubject(customerId)
          .setExpirationTime('5m')
          .sign(stack.keys.authToken.privateKey);
        return { authorization: `Bearer ${token}` };
      },
      'an unsigned token (alg none)': async () => {
        const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
        const claims = { sub: customerId, roles: ['admin'], iss: 'commerce-accounts', aud: 'commerce-gateway', exp: Math.floor(Date.now() / 1000) + 600 };
        return { authorization: `Bearer ${encode({ alg: 'none' })}.${encode(claims)}.` };
      },
    };

    for (const [what, headers] of Object.entries(refusals)) {
      it(`is refused with 401 UNAUTHENTICATED for ${what}, never served as anonymous`, async () => {
        const response = await graphql(stack.gatewayUrl, { query: '{ products(first: 1) { totalCount } }', headers: await headers() });
        expect(response.status).toBe(401);
        expect(errorCodes(response)).toEqual(['UNAUTHENTICATED']);
        expect(response.data ?? null).toBeNull();
      });
    }

    it('tells the client its token expired, so it knows to sign in again', async () => {
      const response = await graphql(stack.gatewayUrl, { query: '{ me { id } }', headers: await refusals['an expired token']!() });
      expect(response.errors?.[0]?.message).toMatch(/expired/);
    });

    it("forwards the caller's identity so a subgraph knows who is calling", async () => {
      await graphql(stack.gatewayUrl, { query: 'mutation { signUp(email: "identity-check@example.com", password: "long enough secret", name: "Ida") { message } }' });
      const signIn = await graphql(stack.gatewayUrl, {
        query: 'mutation { signIn(email: "identity-check@example.com", password: "long enough secret") { accessToken customer { id } } }',
      });
      const { accessToken: token, customer } = signIn.data!.signIn;
      const me = await graphql(stack.gatewayUrl, { query: '{ me { id email roles } }', token });
      expect(me.data?.me).toEqual({ id: customer.id, email: 'identity-check@example.com', roles: ['CUSTOMER'] });
    });
  });
});
