/**
 * Counts sign-in failures and sign-ups in a store every accounts replica shares
 * (rate-limiter-flexible): Redis when REDIS_URL is set, else the accounts database's own
 * `login_throttle` table. The policy (how many, how long) is domain/throttling.ts.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterPostgres, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { tooManyAttempts } from '../../../platform/errors/index.ts';
import { createPool } from '../../../platform/database/pool.ts';
import type { Logger } from '../../../platform/logging/logger.ts';
import { connectRedis } from '../../../platform/redis/connection.ts';
import { checkThrottlePolicy, defaultThrottlePolicy, lockSecondsAfter, type ThrottlePolicy } from '../domain/throttling.ts';

export interface AttemptGuard {
  /** TOO_MANY_ATTEMPTS when the account is locked or the address has failed too often. */
  admitSignIn(email: string, address: string): Promise<void>;
  /** Counts a failed sign-in against the account and the address; locks the account past the policy's free failures. */
  signInFailed(email: string, address: string): Promise<void>;
  /** A success forgets the account's failures (not the address's). */
  signInSucceeded(email: string): Promise<void>;
  /** Counts a sign-up of the address, or TOO_MANY_ATTEMPTS past the policy's limit. */
  admitSignUp(address: string): Promise<void>;
  close(): Promise<void>;
}

export interface AttemptGuardOptions {
  /** Redis (shared by replicas); without it, the accounts database. */
  redisUrl?: string;
  databaseUrl: string;
  policy?: Partial<ThrottlePolicy>;
  /** Prefix of every key in the store (tests isolate themselves with it). @default 'accounts' */
  keyPrefix?: string;
  log: Logger;
}

interface LimiterSpec {
  keyPrefix: string;
  points: number;
  duration: number;
}

/** Emails are keyed by a hash: the throttling store holds no customer data. */
function accountKey(email: string): string {
  return createHash('sha256').update(email).digest('hex').slice(0, 32);
}

/** TOO_MANY_ATTEMPTS for `what`, until the limiter's answer `res` frees up again. */
function refused(what: string, res: RateLimiterRes | null) {
  const seconds = Math.ceil((res?.msBeforeNext ?? 1000) / 1000);
  return tooManyAttempts(`Too many ${what}: try again in ${seconds} seconds`, seconds);
}

export function createAttemptGuard(options: AttemptGuardOptions): AttemptGuard {
  const policy = checkThrottlePolicy({ ...defaultThrottlePolicy, ...options.policy });
  const prefix = options.keyPrefix ?? 'accounts';
  let redis: Redis | undefined;
  let pool: pg.Pool | undefined;
  let limiter: (spec: LimiterSpec) => RateLimiterAbstract;
  if (options.redisUrl) {
    const client = connectRedis(options.redisUrl, { purpose: 'sign-in throttling', whileDown: 'counting in this process only', log: options.log });
    redis = client;
    // While Redis is away each replica counts on its own: weaker, but sign-in keeps working.
    limiter = (spec) => new RateLimiterRedis({ storeClient: client, ...spec, insuranceLimiter: new RateLimiterMemory(spec) });
  } else {
    const store = createPool({ connectionString: options.databaseUrl, max: 2, logger: options.log, allowExitOnIdle: true });
    pool = store;
    limiter = (spec) => new RateLimiterPostgres({ storeClient: store, storeType: 'pool', tableName: 'login_throttle', tableCreated: true, ...spec });
  }
  // An account's failures in a row; the count decides the lock (lockSecondsAfter).
  const accountFailures = limiter({ keyPrefix: `${prefix}:signin-failures`, points: 1_000_000, duration: policy.failureMemorySeconds });
  // The lock itself: blocked (`block`) for the lock's length, empty otherwise.
  const accountLocks = limiter({ keyPrefix: `${prefix}:signin-lock`, points: 1, duration: policy.maxLockSeconds });
  const addressFailures = limiter({ keyPrefix: `${prefix}:signin-address`, points: policy.failuresPerAddress, duration: policy.addressWindowSeconds });
  const signUps = limiter({ keyPrefix: `${prefix}:signup-address`, points: policy.signUpsPerAddress, duration: policy.signUpWindowSeconds });

  return {
    async admitSignIn(email, address) {
      const [lock, spent] = await Promise.all([accountLocks.get(accountKey(email)), addressFailures.get(address)]);
      if (lock && lock.consumedPoints > 1 && lock.msBeforeNext > 0) {
        throw refused('failed sign-ins for this account', lock);
      }
      if (spent && spent.consumedPoints >= policy.failuresPerAddress && spent.msBeforeNext > 0) {
        throw refused('failed sign-ins from your address', spent);
      }
    },
    async signInFailed(email, address) {
      const key = accountKey(email);
      const [failures] = await Promise.all([accountFailures.penalty(key), addressFailures.penalty(address)]);
      const lockSeconds = lockSecondsAfter(failures.consumedPoints, policy);
      if (lockSeconds > 0) await accountLocks.block(key, lockSeconds);
    },
    async signInSucceeded(email) {
      const key = accountKey(email);
      await Promise.all([accountFailures.delete(key), accountLocks.delete(key)]);
    },
    async admitSignUp(address) {
      try {
        await signUps.consume(address);
      } catch (refusal) {
        if (!(refusal instanceof RateLimiterRes)) throw refusal;
        throw refused('sign-ups from your address', refusal);
      }
    },
    async close() {
      redis?.disconnect();
      await pool?.end();
    },
  };
}
