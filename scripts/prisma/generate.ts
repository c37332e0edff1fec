/**
 * `npm run generate`: the Prisma 7 client of every context, generated concurrently.
 * Prisma insists that a schema-engine binary exists but never runs it to generate, so the
 * repository's stub stands in for the one this machine cannot download.
 *
 * `--if-stale` generates only the clients that are missing or older than their schema. npm here
 * runs no install scripts, so a fresh `npm install` leaves no client behind: `npm start` and the
 * other commands that load a client call this first (their `pre…` scripts), at ~0.3 s when all
 * clients are current.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import type { ContextName } from '../../platform/contexts.ts';
import { engineStub, prismaCliOf, prismaContexts, repoRoot, schemaPathOf } from './paths.ts';
import { runMain, runNode, type RunResult } from './run.ts';

const env = { ...process.env, CHECKPOINT_DISABLE: '1', PRISMA_SCHEMA_ENGINE_BINARY: engineStub };

/** Which schema, and which Prisma, a generated client was made from. */
function fingerprintOf(context: ContextName): string {
  const prismaVersion = (createRequire(import.meta.url)('prisma/package.json') as { version: string }).version;
  return createHash('sha256').update(prismaVersion).update('\0').update(readFileSync(schemaPathOf(context))).digest('hex');
}

const stampPathOf = (context: ContextName) => join(repoRoot, 'prisma', context, 'client', '.generated-from');

function isCurrent(context: ContextName): boolean {
  const stamp = stampPathOf(context);
  return existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === fingerprintOf(context);
}

async function generate(context: ContextName): Promise<RunResult> {
  const schema = relative(repoRoot, schemaPathOf(context));
  const result = await runNode(prismaCliOf('prisma'), ['generate', '--schema', schema], env, repoRoot);
  if (result.code === 0) writeFileSync(stampPathOf(context), `${fingerprintOf(context)}\n`);
  return result;
}

async function main(): Promise<number> {
  const onlyStale = process.argv.includes('--if-stale');
  const contexts = prismaContexts().filter((context) => !onlyStale || !isCurrent(context));
  if (onlyStale && contexts.length > 0) console.log(`generating the Prisma clients of ${contexts.join(', ')} (missing or older than their schema)`);
  const results = await Promise.all(contexts.map(async (context) => ({ context, ...(await generate(context)) })));
  for (const { context, code, stdout, stderr } of results) {
    if (code === 0) {
      console.log(`generated ${context} → prisma/${context}/client`);
    } else {
      console.error(`prisma generate failed for ${context} (exit ${code}):\n${stdout}${stderr}`);
    }
  }
  return results.some((r) => r.code !== 0) ? 1 : 0;
}

runMain(main);
