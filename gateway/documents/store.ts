/**
 * Where each client app's trusted documents are kept: the gateway reads them, the `documents`
 * command (scripts/documents.ts) publishes them.
 * - In Redis when `REDIS_URL` is set: one hash per app (`<prefix>:<client>`, id → body) and a set
 *   of the apps; a publication replaces an app's hash at once (written aside, then renamed), so
 *   every gateway replica sees the new manifest on its next request.
 * - Else in a directory (`GATEWAY_TRUSTED_DOCUMENTS_DIR`, default `.data/trusted-documents`): one
 *   `<client>.json` manifest per app, written aside and renamed; a gateway re-reads a file whose
 *   modification time changed (looked at most once per `refreshMs`).
 * Client names are checked before they name a file or a key (client-awareness.ts): no path in them.
 */
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { closeRedis, firstConnection } from '../../platform/redis/connection.ts';
import { clientNamePattern } from '../plugins/client-awareness.ts';
import { checkManifest, type Manifest } from './manifest.ts';

export interface PublishedManifest {
  client: string;
  operations: number;
}

export interface TrustedDocumentStore {
  /** Where it keeps them, for messages: a directory or a Redis prefix. */
  readonly location: string;
  /** The body of the app's trusted document with this id, if its manifest has one. */
  find(client: string, id: string): Promise<string | undefined>;
  /** Replaces the app's manifest (checked again here: nothing unchecked is stored). */
  publish(client: string, manifest: Manifest): Promise<PublishedManifest>;
  /** Every app with a manifest, and how many operations it holds. */
  list(): Promise<PublishedManifest[]>;
  close(): Promise<void>;
}

function checkedClient(client: string): string {
  if (!clientNamePattern.test(client)) throw new Error(`client name "${client}" must be letters, digits or . _ - (at most 64)`);
  return client;
}

export const defaultTrustedDocumentsDir = '.data/trusted-documents';

/** Manifests as files in one directory. */
export function directoryDocumentStore(directory: string, options: { refreshMs?: number } = {}): TrustedDocumentStore {
  const refreshMs = options.refreshMs ?? 1_000;
  const cache = new Map<string, { checkedAt: number; mtimeMs: number; documents: Map<string, string> }>();
  const fileOf = (client: string) => join(directory, `${checkedClient(client)}.json`);
  const documentsOf = async (client: string): Promise<Map<string, string>> => {
    const cached = cache.get(client);
    const now = Date.now();
    if (cached && now - cached.checkedAt < refreshMs) return cached.documents;
    const file = fileOf(client);
    const mtimeMs = await stat(file).then((found) => found.mtimeMs, () => -1);
    if (cached && cached.mtimeMs === mtimeMs) {
      cached.checkedAt = now;
      return cached.documents;
    }
    const documents = new Map<string, string>();
    if (mtimeMs >= 0) for (const operation of checkManifest(JSON.parse(await readFile(file, 'utf8'))).operations) documents.set(operation.id, operation.body);
    cache.set(client, { checkedAt: now, mtimeMs, documents });
    return documents;
  };
  return {
    location: directory,
    async find(client, id) {
      return (await documentsOf(client)).get(id);
    },
    async publish(client, manifest) {
      const checked = checkManifest(manifest);
      await mkdir(directory, { recursive: true });
      const file = fileOf(client);
      const aside = `${file}.${process.pid}.tmp`;
      await writeFile(aside, `${JSON.stringify(checked, null, 2)}\n`);
      await rename(aside, file);
      cache.delete(client);
      return { client, operations: checked.operations.length };
    },
    async list() {
      const files = await readdir(directory).catch(() => [] as string[]);
      const published: PublishedManifest[] = [];
      for (const file of files.filter((name) => name.endsWith('.json')).sort()) {
        const client = file.slice(0, -'.json'.length);
        published.push({ client, operations: (await documentsOf(client)).size });
      }
      return published;
    },
    async close() {},
  };
}

/** Manifests in Redis, shared by every gateway replica. */
export function redisDocumentStore(redis: Redis, options: { keyPrefix?: string; owned?: boolean } = {}): TrustedDocumentStore {
  const prefix = options.keyPrefix ?? 'gateway:trusted-documents';
  const clientsKey = `${prefix}:clients`;
  const keyOf = (client: string) => `${prefix}:client:${checkedClient(client)}`;
  // The first requests wait for the connection being made (a client without an offline queue fails them meanwhile).
  const connected = firstConnection(redis, 1_000);
  return {
    location: `redis ${prefix}`,
    async find(client, id) {
      await connected;
      return (await redis.hget(keyOf(client), id)) ?? undefined;
    },
    async publish(client, manifest) {
      const checked = checkManifest(manifest);
      const key = keyOf(client);
      const aside = `${key}:publishing:${process.pid}`;
      const transaction = redis.multi().del(aside);
      if (checked.operations.length > 0) transaction.hset(aside, Object.fromEntries(checked.operations.map((operation) => [operation.id, operation.body]))).rename(aside, key);
      else transaction.del(key);
      await transaction.sadd(clientsKey, client).exec();
      return { client, operations: checked.operations.length };
    },
    async list() {
      const clients = (await redis.smembers(clientsKey)).sort();
      return Promise.all(clients.map(async (client) => ({ client, operations: await redis.hlen(keyOf(client)) })));
    },
    async close() {
      if (options.owned) await closeRedis(redis);
    },
  };
}
