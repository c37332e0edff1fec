/** Where the Prisma tooling finds things, relative to the repository rather than the cwd. */
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ContextName } from '../../platform/contexts.ts';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

const require = createRequire(import.meta.url);

/** The committed (Prisma 7) schema of a context. */
export function schemaPathOf(context: ContextName): string {
  return join(repoRoot, 'prisma', context, 'schema.prisma');
}

/** The entry point of an installed Prisma CLI: `prisma` (7) or its `prisma6` alias (6.19). */
export function prismaCliOf(packageName: 'prisma' | 'prisma6'): string {
  return join(dirname(require.resolve(`${packageName}/package.json`)), 'build', 'index.js');
}

/**
 * The executable stub that stands in for Prisma's native engines, which cannot be downloaded
 * here. The CLIs check that engine files exist but never load them for what we use them for.
 */
export const engineStub = join(repoRoot, 'prisma', 'engine-stub.sh');

/** Git-ignored scratch space for throwaway schema copies. */
export const scratchDir = join(repoRoot, 'prisma', '.migrate');

/** The Prisma 6.19 config that runs the wasm schema engine over a driver adapter. */
export const prisma6Config = join(repoRoot, 'prisma', 'prisma6.config.ts');

/**
 * Every context with a Prisma schema, found on disk (`prisma/<context>/schema.prisma`), so a new
 * context's client and migrations can be made before it is wired into the platform.
 */
export function prismaContexts(): ContextName[] {
  return readdirSync(join(repoRoot, 'prisma'), { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(repoRoot, 'prisma', entry.name, 'schema.prisma')))
    .map((entry) => entry.name as ContextName)
    .sort();
}
