/**
 * Trusted documents and automatic persisted queries, per client app (docs/decisions/0025), on
 * every transport (the core's `resolveDocument`, before anything is parsed):
 * - An app bound to its manifest (a mobile app by default) runs only the operations of its
 *   published manifest: sent by id (`extensions.persistedQuery.sha256Hash`) or as full text whose
 *   hash is in the manifest. Anything else: PERSISTED_QUERY_NOT_IN_LIST.
 * - A free app (web by default) runs any valid operation; its manifest's ids work too.
 * - APQ: an app allowed to register (`apq: true`) that sends an unknown hash gets
 *   PERSISTED_QUERY_NOT_FOUND, then sends text and hash; the hash is checked
 *   (PERSISTED_QUERY_HASH_MISMATCH) and the text registered. An app not allowed gets
 *   PERSISTED_QUERY_NOT_SUPPORTED (Apollo Client then sends text), and registers nothing.
 * The codes and messages are Apollo's (and Apollo Router's), so its clients' links react to them.
 */
import type { Redis } from 'ioredis';
import { createLogger } from '../../platform/logging/logger.ts';
import { connectRedis } from '../../platform/redis/connection.ts';
import { memoryApqStore, redisApqStore, type ApqStore } from '../documents/apq.ts';
import { documentId, documentIdPattern } from '../documents/manifest.ts';
import { defaultTrustedDocumentsDir, directoryDocumentStore, redisDocumentStore, type TrustedDocumentStore } from '../documents/store.ts';
import type { GatewayPlugin } from '../pipeline/plugin.ts';
import { GatewayRefusal } from '../pipeline/refusal.ts';
import type { ClientRegistry } from './client-awareness.ts';

type Env = Record<string, string | undefined>;

export const TrustedDocumentsCode = {
  PERSISTED_QUERY_NOT_IN_LIST: 'PERSISTED_QUERY_NOT_IN_LIST',
  PERSISTED_QUERY_NOT_FOUND: 'PERSISTED_QUERY_NOT_FOUND',
  PERSISTED_QUERY_NOT_SUPPORTED: 'PERSISTED_QUERY_NOT_SUPPORTED',
  PERSISTED_QUERY_HASH_MISMATCH: 'PERSISTED_QUERY_HASH_MISMATCH',
} as const;

export interface TrustedDocumentsOptions {
  registry: ClientRegistry;
  store: TrustedDocumentStore;
  apq: ApqStore;
  /** The longest document an app may register. @default 65_536 */
  maxRegisteredBytes?: number;
}

/** Where the stores are: `REDIS_URL`, else `GATEWAY_TRUSTED_DOCUMENTS_DIR` and this process's memory. */
export interface DocumentStoresSettings {
  redis?: string | Redis;
  /** @default '.data/trusted-documents' */
  directory?: string;
}

export function documentStoresFromEnv(env: Env = process.env): DocumentStoresSettings {
  return { ...(env.REDIS_URL ? { redis: env.REDIS_URL } : {}), directory: env.GATEWAY_TRUSTED_DOCUMENTS_DIR || defaultTrustedDocumentsDir };
}

const log = createLogger('gateway.trusted-documents');

/** The manifest store and the APQ store the settings name (a Redis URL is connected here, and closed by `store.close`). */
export function openDocumentStores(settings: DocumentStoresSettings): { store: TrustedDocumentStore; apq: ApqStore } {
  if (settings.redis === undefined) return { store: directoryDocumentStore(settings.directory ?? defaultTrustedDocumentsDir), apq: memoryApqStore() };
  const owned = typeof settings.redis === 'string';
  // Without Redis, no manifest can be read: requests that need one are refused (retryable), never let through.
  const redis = typeof settings.redis === 'string' ? connectRedis(settings.redis, { purpose: 'trusted documents', whileDown: 'apps bound to a manifest are refused until it is back', log }) : settings.redis;
  return { store: redisDocumentStore(redis, { owned }), apq: redisApqStore(redis) };
}

const hashOf = (extensions: Readonly<Record<string, unknown>> | undefined): string | undefined => {
  const persisted = extensions?.persistedQuery as { version?: unknown; sha256Hash?: unknown } | undefined;
  if (!persisted || typeof persisted !== 'object') return undefined;
  if (persisted.version !== undefined && persisted.version !== 1) throw new GatewayRefusal('BAD_REQUEST', 'Unsupported persisted query version: only 1', { status: 400 });
  const hash = typeof persisted.sha256Hash === 'string' ? persisted.sha256Hash.toLowerCase() : '';
  if (!documentIdPattern.test(hash)) throw new GatewayRefusal('BAD_REQUEST', 'extensions.persistedQuery.sha256Hash must be a SHA-256 in hex', { status: 400 });
  return hash;
};

export function trustedDocuments(options: TrustedDocumentsOptions): GatewayPlugin {
  const { registry, store, apq } = options;
  const maxRegistered = options.maxRegisteredBytes ?? 65_536;
  const notInList = (name: string) =>
    new GatewayRefusal(TrustedDocumentsCode.PERSISTED_QUERY_NOT_IN_LIST, `This operation is not in the trusted documents of ${name}: publish its manifest with the operation first`, { status: 400 });
  // Apollo's messages, which older Apollo Client links compare; status 200 as Apollo Server answers them.
  const notFound = () => new GatewayRefusal(TrustedDocumentsCode.PERSISTED_QUERY_NOT_FOUND, 'PersistedQueryNotFound', { status: 200 });
  const notSupported = () => new GatewayRefusal(TrustedDocumentsCode.PERSISTED_QUERY_NOT_SUPPORTED, 'PersistedQueryNotSupported', { status: 200 });
  /** A store that cannot answer refuses, retryably: a manifest must never be skipped. */
  const find = async (client: string | undefined, id: string) => {
    if (client === undefined) return undefined;
    try {
      return await store.find(client, id);
    } catch (error) {
      log.warn('trusted documents could not be read', { client, error: (error as Error).message });
      throw new GatewayRefusal('SERVICE_UNAVAILABLE', 'Trusted documents cannot be read now: try again', { status: 503, retryAfterSeconds: 1 });
    }
  };

  return {
    name: 'trusted-documents',
    async resolveDocument({ client, query, extensions }) {
      // Before any store is read: an app refused anyway learns nothing of the manifests.
      registry.refuseUnknown(client);
      const policy = registry.policyOf(client);
      const bound = policy.documents === 'manifest' && policy.name !== undefined;
      const hash = hashOf(extensions);
      if (hash === undefined) {
        if (!bound || query === undefined) return undefined;
        if ((await find(policy.name, documentId(query))) === undefined) throw notInList(policy.name!);
        return undefined;
      }
      if (query !== undefined) {
        if (documentId(query) !== hash) throw new GatewayRefusal(TrustedDocumentsCode.PERSISTED_QUERY_HASH_MISMATCH, 'provided sha does not match query', { status: 400 });
        if (bound) {
          if ((await find(policy.name, hash)) === undefined) throw notInList(policy.name!);
          return query;
        }
        // Registered before validation: only apps trusted to register may, and the store is bounded.
        if (policy.apq && query.length <= maxRegistered) await apq.set(hash, query).catch((error: Error) => log.warn('a persisted query could not be registered', { error: error.message }));
        return query;
      }
      const trusted = await find(policy.name, hash);
      if (trusted !== undefined) return trusted;
      if (bound) throw notInList(policy.name!);
      if (!policy.apq) throw notSupported();
      const registered = await apq.get(hash).catch(() => undefined);
      if (registered === undefined) throw notFound();
      return registered;
    },
    async stop() {
      await store.close();
    },
  };
}
