/**
 * Brute-force protection of signIn and throttling of signUp at the accounts subgraph, with small
 * limits so the tests are quick, on both stores the limits can be counted in: Redis (REDIS_URL)
 * and the accounts database (RateLimiterPostgres). The client's address is what the gateway puts
 * in `x-commerce-client-address`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { dropDatabase } from '../platform/database/provision.ts';
import { GatewayIdentitySigner, gatewayIdentityHeader } from '../platform/identity/gateway-identity.ts';
import type { RunningContextSubgraph } from '../platform/subgraph/context-subgraph.ts';
import type { ThrottlePolicy } from '../subgraphs/accounts/domain/throttling.ts';
import { connectAccountsDatabase, type AccountsDatabase } from '../subgraphs/accounts/infrastructure/database.ts';
import { startAccountsSubgraph } from '../subgraphs/accounts/subgraph.ts';
import { errorCodes, type GraphQLResponse } from './support/graphql.ts';
import { cloneDatabase } from './support/postgres.ts';
import { freshDatabaseName, templateDatabaseName } from './support/run.ts';
import { generateTestKeys } from './support/stack.ts';
import { waitFor } from './support/wait.ts';

const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const policy: Partial<ThrottlePolicy> = {
  freeFailures: 3,
  firstLockSeconds: 1,
  maxLockSeconds: 4,
  failuresPerAddress: 6,
  signUpsPerAddress: 3,
};

const password = 'correct horse battery';

/** A fresh address per test: address limits of one test never touch another. */
const newAddress = () => `203.0.113.${randomBytes(1)[0]}-${randomUUID().slice(0, 8)}`;

describe.each(['postgres', 'redis'] as const)('throttling counted in %s', (store) => {
  let accounts: RunningContextSubgraph;
  let databaseUrl: string;
  let db: AccountsDatabase;
  let signer: GatewayIdentitySigner;
  const keyPrefix = `test-${randomUUID()}`;

  beforeAll(async () => {
    const keys = await generateTestKeys();
    signer = new GatewayIdentitySigner(keys.gatewayIdentity.privateKey);
    databaseUrl = await cloneDatabase(inject('testServerUrl'), templateDatabaseName(inject('runPrefix'), 'accounts'), freshDatabaseName(inject('runPrefix'), 'accounts'));
    db = connectAccountsDatabase(databaseUrl).db;
    accounts = await startAccountsSubgraph({
      databaseUrl,
      port: 0,
      host: '127.0.0.1',
      gatewayPublicKey: keys.gatewayIdentity.publicKey,
      production: true,
      authTokenPrivateKey: keys.authToken.privateKey,
      throttling: policy,
      // Keys of their own in the machine's shared Redis.
      ...(store === 'redis' ? { redisUrl, throttlingKeyPrefix: keyPrefix } : {}),
    });
  });

  afterAll(async () => {
    await db?.$disconnect();
    await accounts?.stop();
    if (databaseUrl) await dropDatabase(databaseUrl);
    if (store === 'redis') {
      const redis = new Redis(redisUrl);
      const keys = await redis.keys(`${keyPrefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });

  async function call(query: string, variables: Record<string, unknown>, address: string): Promise<GraphQLResponse> {
    const response = await fetch(accounts.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [gatewayIdentityHeader]: await signer.sign({ customerId: null, roles: [] }, 'accounts'),
        'x-commerce-client-address': address,
      },
      body: JSON.stringify({ query, variables }),
    });
    return { status: response.status, ...((await response.json()) as Omit<GraphQLResponse, 'status'>) };
  }

  const signUp = (email: string, address: string, pass = password, name = 'Tess') =>
    call('mutation($e: String!, $p: String!, $n: String!) { signUp(email: $e, password: $p, name: $n) { message } }', { e: email, p: pass, n: name }, address);

  const signIn = (email: string, pass: string, address: string) =>
    call('mutation($e: String!, $p: String!) { signIn(email: $e, password: $p) { accessToken customer { id } } }', { e: email, p: pass }, address);

  async function newAccount(): Promise<string> {
    const email = `throttle-${randomUUID().slice(0, 12)}@example.com`;
    expect((await signUp(email, newAddress())).errors).toBeUndefined();
    return email;
  }

  const retryAfterOf = (res: GraphQLResponse) => {
    expect(errorCodes(res)).toEqual(['TOO_MANY_ATTEMPTS']);
    return res.errors![0]!.extensions!.retryAfter as number;
  };

  /** Fails sign-in until a failure is counted again (the lock has passed), then answers the lock that follows. */
  async function nextLock(email: string): Promise<number> {
    await waitFor('the lock to pass', async () => {
      const res = await signIn(email, 'wrong password', newAddress());
      return errorCodes(res)[0] === 'UNAUTHENTICATED' ? true : undefined;
    });
    return retryAfterOf(await signIn(email, password, newAddress()));
  }

  /** The keys the limiters wrote in the store under test (not an in-process fallback). */
  async function storedKeys(): Promise<string[]> {
    if (store === 'postgres') return (await db.loginThrottle.findMany({ select: { key: true } })).map((row) => row.key);
    const redis = new Redis(redisUrl);
    try {
      return await redis.keys(`${keyPrefix}:*`);
    } finally {
      redis.disconnect();
    }
  }

  it('counts failures in the shared store, keyed without the email itself', async () => {
    const email = await newAccount();
    const address = newAddress();
    expect(errorCodes(await signIn(email, 'wrong password', address))).toEqual(['UNAUTHENTICATED']);

    const keys = await storedKeys();
    expect(keys.some((key) => key.includes('signin-failures:'))).toBe(true);
    expect(keys.some((key) => key.endsWith(`signin-address:${address}`))).toBe(true);
    expect(keys.join(' ')).not.toContain(email);
  });

  it('locks an account after repeated wrong passwords, from any address, for longer each time', async () => {
    const email = await newAccount();
    for (let i = 0; i < 3; i++) expect(errorCodes(await signIn(email, 'wrong password', newAddress()))).toEqual(['UNAUTHENTICATED']);

    // Locked: even the right password, from another address, is refused without being checked.
    const first = await signIn(email, password, newAddress());
    expect(first.data ?? null).toBeNull();
    expect(retryAfterOf(first)).toBe(1);
    expect(first.errors![0]!.message).toMatch(/try again in 1 seconds/);

    expect(await nextLock(email)).toBe(2);
    expect(await nextLock(email)).toBe(4);
    // The longest lock is the policy's maximum.
    expect(await nextLock(email)).toBe(4);
  });

  it('forgets the failures of an account after a successful sign-in', async () => {
    const email = await newAccount();
    const address = newAddress();
    for (let i = 0; i < 2; i++) expect(errorCodes(await signIn(email, 'wrong password', address))).toEqual(['UNAUTHENTICATED']);
    expect((await signIn(email, password, address)).errors).toBeUndefined();

    for (let i = 0; i < 2; i++) expect(errorCodes(await signIn(email, 'wrong password', address))).toEqual(['UNAUTHENTICATED']);
    expect((await signIn(email, password, address)).errors).toBeUndefined();
  });

  it('refuses an address that failed too often, whatever the account, while other addresses sign in', async () => {
    const sprayer = newAddress();
    // Password spraying: one guess per account, never enough to lock any of them.
    for (let i = 0; i < 6; i++) expect(errorCodes(await signIn(`victim-${randomUUID().slice(0, 8)}@example.com`, 'Summer2026!', sprayer))).toEqual(['UNAUTHENTICATED']);
    const email = await newAccount();

    const refused = await signIn(email, password, sprayer);
    expect(retryAfterOf(refused)).toBeGreaterThan(3600);
    expect((await signIn(email, password, newAddress())).errors).toBeUndefined();
  });

  it('refuses sign-ups past the limit of an address with TOO_MANY_ATTEMPTS and writes nothing, while other addresses sign up', async () => {
    const address = newAddress();
    for (let i = 0; i < 3; i++) expect((await signUp(`many-${randomUUID().slice(0, 8)}@example.com`, address)).errors).toBeUndefined();
    const email = `one-too-many-${randomUUID().slice(0, 8)}@example.com`;

    const refused = await signUp(email, address);

    expect(retryAfterOf(refused)).toBeGreaterThan(0);
    expect(retryAfterOf(refused)).toBeLessThanOrEqual(3600);
    expect(await db.customer.findUnique({ where: { email } })).toBeNull();
    expect((await signUp(email, newAddress())).errors).toBeUndefined();
    expect(await db.customer.findUnique({ where: { email } })).not.toBeNull();
  });

  it('answers the sign-up of a taken email exactly like that of a free one, and writes nothing', async () => {
    const taken = await newAccount();
    const before = await db.customer.findUniqueOrThrow({ where: { email: taken } });
    const free = `free-${randomUUID().slice(0, 8)}@example.com`;

    const takenAnswer = await signUp(taken.toUpperCase(), newAddress(), 'a hijacker password', 'Mallory');
    const freeAnswer = await signUp(free, newAddress(), 'a hijacker password', 'Mallory');

    expect(takenAnswer).toEqual(freeAnswer);
    expect(takenAnswer).toEqual({ status: 200, data: { signUp: { message: 'If this email can be used, the account is ready: sign in' } } });
    expect(await db.customer.findMany({ where: { email: taken } })).toEqual([before]);
    expect((await signIn(taken, password, newAddress())).errors).toBeUndefined();
    expect(errorCodes(await signIn(taken, 'a hijacker password', newAddress()))).toEqual(['UNAUTHENTICATED']);
  });
});
