/**
 * Publishing client apps' trusted documents (`npm run documents -- <command>`):
 *   publish --client <name> <manifest.json>   checks the manifest (format, each id the SHA-256 of its
 *                                             body, each body one operation of its type) and replaces
 *                                             the app's manifest in the store the gateway reads
 *   list                                      the apps with a manifest, and their operation counts
 * The store is the gateway's: Redis when `REDIS_URL` is set, else the directory
 * `GATEWAY_TRUSTED_DOCUMENTS_DIR` (default `.data/trusted-documents`). A manifest that does not
 * check out is refused whole (exit code 1), and nothing is written.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { checkManifest, InvalidManifest } from '../gateway/documents/manifest.ts';
import { directoryDocumentStore, redisDocumentStore, type TrustedDocumentStore } from '../gateway/documents/store.ts';
import { documentStoresFromEnv } from '../gateway/plugins/trusted-documents.ts';

const usage = 'usage: npm run documents -- publish --client <name> <manifest.json> | list';

function openStore(): TrustedDocumentStore {
  const settings = documentStoresFromEnv(process.env);
  if (typeof settings.redis === 'string') return redisDocumentStore(new Redis(settings.redis, { maxRetriesPerRequest: 1, connectTimeout: 5_000 }), { owned: true });
  return directoryDocumentStore(settings.directory!);
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: argv, options: { client: { type: 'string' } }, allowPositionals: true });
  const [command, ...rest] = positionals;
  if (command === 'publish') {
    const [file] = rest;
    if (!values.client || !file || rest.length !== 1) throw new Error(usage);
    let manifest;
    try {
      manifest = checkManifest(JSON.parse(await readFile(file, 'utf8')));
    } catch (error) {
      if (error instanceof InvalidManifest || error instanceof SyntaxError) throw new InvalidManifest(`${file} is refused: ${error.message}`);
      throw error;
    }
    const store = openStore();
    try {
      const published = await store.publish(values.client, manifest);
      console.log(`published ${published.operations} operation(s) for ${published.client} to ${store.location}`);
    } finally {
      await store.close();
    }
    return;
  }
  if (command === 'list') {
    const store = openStore();
    try {
      const published = await store.list();
      if (published.length === 0) console.log(`no manifest in ${store.location}`);
      for (const { client, operations } of published) console.log(`${client}\t${operations} operation(s)`);
    } finally {
      await store.close();
    }
    return;
  }
  throw new Error(usage);
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  console.error((error as Error).message);
  process.exitCode = 1;
}
