/**
 * The storefront's build: plain TypeScript and Apollo Client, bundled by Vite. The gateway it
 * talks to is fixed at build time (`STOREFRONT_GATEWAY_URL`); the storefront's own origin must be
 * listed in the gateway's GATEWAY_CORS_ORIGINS (the cookie session is refused from any other).
 */
import { defineConfig } from 'vite';

/** @default 'http://localhost:4000/graphql' (the gateway of `npm start`) */
const gatewayUrl = process.env.STOREFRONT_GATEWAY_URL ?? 'http://localhost:4000/graphql';

export default defineConfig({
  root: import.meta.dirname,
  // Beside vitest's cache, not in a node_modules/ of its own under clients/.
  cacheDir: '../../node_modules/.vite/storefront',
  // Same host name as the gateway's default (localhost): the session cookie is per host, and
  // 127.0.0.1 and localhost are different sites to a browser.
  server: { host: 'localhost', port: 5173, strictPort: true },
  preview: { host: 'localhost', port: 4173, strictPort: true },
  define: { __GATEWAY_URL__: JSON.stringify(gatewayUrl) },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  // One graphql module in the bundle (Apollo Client and graphql-ws import it too).
  resolve: { dedupe: ['graphql'] },
});
