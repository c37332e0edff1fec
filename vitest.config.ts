import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Node loads graphql's CommonJS build for `import 'graphql'` (the package has no "exports"),
    // and so do Apollo's CommonJS packages; Vite would pick its ESM build for our sources. Two
    // copies break graphql's instanceof checks, so tests load the one production loads.
    alias: [{ find: /^graphql$/, replacement: createRequire(import.meta.url).resolve('graphql') }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores here: more workers than that only makes every server in the tests slower.
    maxWorkers: 2,
    reporters: ['default'],
    // Two files at once each run up to six contexts with their pools: small pools keep the run
    // within a default PostgreSQL's 100 connections.
    env: { LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', DATABASE_POOL_SIZE: process.env.DATABASE_POOL_SIZE ?? '3' },
  },
});
