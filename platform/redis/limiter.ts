/**
 * A points-per-window limiter shared by gateway replicas through Redis (rate limits, cost
 * budgets): counted in Redis when given a client, in this process's memory otherwise, and in
 * memory while Redis is unreachable, so that an outage neither stalls admissions nor opens the gate.
 */
import type { Redis } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

export interface LimiterSettings {
  points: number;
  /** Seconds. */
  duration: number;
  keyPrefix: string;
}

/** In Redis when `client` is given (this process's memory as its stand-in while it is down), else in memory. */
export function sharedLimiter(settings: LimiterSettings, client: Redis | undefined): RateLimiterAbstract {
  const memory = new RateLimiterMemory(settings);
  return client ? new RateLimiterRedis({ ...settings, storeClient: client, rejectIfRedisNotReady: true, insuranceLimiter: memory }) : memory;
}

/** The whole seconds until a refused key may spend again (at least 1), or rethrows what is not a refusal. */
export function retryAfterSecondsOf(rejection: unknown): number {
  if (!(rejection instanceof RateLimiterRes)) throw rejection;
  return Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
}
