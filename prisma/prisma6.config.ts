/**
 * Prisma 6.19 CLI config for writing and checking migration SQL offline, used only by
 * scripts/prisma/migrate.ts (pass `--config prisma/prisma6.config.ts`). The wasm schema engine
 * runs over a driver adapter because the native engine cannot be downloaded here.
 * The runtime and `prisma generate` use Prisma 7 and do not read this file.
 */
import { migrationAdapter } from '../scripts/prisma/migrate-adapter.ts';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set (scripts/prisma/migrate.ts sets it)`);
  return value;
}

export default {
  experimental: { adapter: true },
  engine: 'js',
  adapter: async () =>
    migrationAdapter(required('MIGRATE_DATABASE_URL'), required('MIGRATE_SHADOW_DATABASE_URL')),
};
