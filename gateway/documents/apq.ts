/**
 * Automatic persisted queries (Apollo's APQ protocol): documents registered by the apps allowed
 * to (client-awareness.ts `apq`), by their SHA-256, so that later requests send only the hash.
 * In Redis when `REDIS_URL` is set (every replica finds what one registered; each entry expires),
 * else in this process, bounded by bytes (least recently used goes first).
 */
import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { firstConnection } from '../../platform/redis/connection.ts';

export interface ApqStore {
  get(id: string): Promise<string | undefined>;
  /** Keeps the document under its id (the caller has checked that the id is its hash). */
  set(id: string, body: string): Promise<void>;
}

export interface ApqStoreOptions {
  /** Bytes of documents kept in memory. @default 16 MiB */
  maxBytes?: number;
  /** How long Redis keeps an entry not used since. @default 86_400 (a day) */
  ttlSeconds?: number;
  /** Prefix of the Redis keys. @default 'gateway:apq' */
  keyPrefix?: string;
}

export function memoryApqStore(options: ApqStoreOptions = {}): ApqStore {
  const cache = new LRUCache<string, string>({ maxSize: options.maxBytes ?? 16 * 1024 * 1024, sizeCalculation: (body, id) => body.length * 2 + id.length });
  return {
    get: async (id) => cache.get(id),
    set: async (id, body) => void cache.set(id, body),
  };
}

export function redisApqStore(redis: Redis, options: ApqStoreOptions = {}): ApqStore {
  const prefix = options.keyPrefix ?? 'gateway:apq';
  const ttl = options.ttlSeconds ?? 86_400;
  const connected = firstConnection(redis, 1_000);
  return {
    // GETEX: an entry in use does not expire.
    async get(id) {
      await connected;
      return (await redis.getex(`${prefix}:${id}`, 'EX', ttl)) ?? undefined;
    },
    async set(id, body) {
      await connected;
      await redis.set(`${prefix}:${id}`, body, 'EX', ttl);
    },
  };
}
