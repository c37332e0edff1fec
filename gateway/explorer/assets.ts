/**
 * The explorer's static files, served by the gateway itself: no CDN, so it works offline and
 * behind a firewall. GraphiQL comes prebuilt from `@graphql-yoga/graphiql` (one UMD file with
 * React, GraphiQL 5 and Monaco inside, plus Monaco's workers); our own page scripts sit beside
 * this file in `browser/`. Every file is known when the gateway starts: a request names one of
 * them exactly, never a path on disk (no traversal to guard against).
 */
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One file the gateway may send, and how long a browser may keep it. */
export interface StaticAsset {
  readonly file: string;
  readonly contentType: string;
  /** Versioned URLs never change (`immutable`); our own scripts are re-validated on each load. */
  readonly cacheControl: string;
}

const contentTypes: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

const immutable = 'public, max-age=31536000, immutable';
const revalidate = 'no-cache';

/** The GraphiQL bundle's folder and version, or undefined when the package is not installed. */
export function graphiqlBundle(): { dir: string; version: string } | undefined {
  try {
    const require = createRequire(import.meta.url);
    const manifest = require.resolve('@graphql-yoga/graphiql/package.json');
    const { version } = require(manifest) as { version: string };
    const dir = join(dirname(manifest), 'dist');
    return existsSync(join(dir, 'yoga-graphiql.umd.js')) ? { dir, version } : undefined;
  } catch {
    return undefined;
  }
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => join(dir, name))
    .filter((file) => statSync(file).isFile() && extname(file) in contentTypes);
}

/**
 * Every asset by URL path under `base` (e.g. `/graphql/explorer/assets`): the bundle's files
 * under `<base>/graphiql-<version>/` (`bundle` as graphiqlBundle() finds it), ours under `<base>/`.
 */
export function explorerAssets(base: string, bundle = graphiqlBundle()): Map<string, StaticAsset> {
  const assets = new Map<string, StaticAsset>();
  const ours = join(dirname(fileURLToPath(import.meta.url)), 'browser');
  for (const file of filesUnder(ours)) {
    assets.set(`${base}/${relative(ours, file)}`, { file, contentType: contentTypes[extname(file)]!, cacheControl: revalidate });
  }
  if (bundle) {
    for (const file of filesUnder(bundle.dir)) {
      const path = `${base}/graphiql-${bundle.version}/${relative(bundle.dir, file).split('\\').join('/')}`;
      assets.set(path, { file, contentType: contentTypes[extname(file)]!, cacheControl: immutable });
    }
  }
  return assets;
}

/** Streams one asset; HEAD gets the headers alone. */
export function sendAsset(request: IncomingMessage, response: ServerResponse, asset: StaticAsset): void {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  const { size, mtime } = statSync(asset.file);
  response.writeHead(200, {
    'content-type': asset.contentType,
    'content-length': size,
    'cache-control': asset.cacheControl,
    'last-modified': mtime.toUTCString(),
    'x-content-type-options': 'nosniff',
    // Monaco's workers are fetched as module workers from this origin.
    'cross-origin-resource-policy': 'same-origin',
  });
  if (request.method === 'HEAD') return void response.end();
  createReadStream(asset.file).on('error', () => response.destroy()).pipe(response);
}
