/**
 * `npm run generate`: the Prisma 7 client of every context, generated concurrently.
 * Prisma insists that a schema-engine binary exists but never runs it to generate, so the
 * repository's stub stands in for the one this machine cannot download.
 */
import { relative } from 'node:path';
import type { ContextName } from '../../platform/contexts.ts';
import { engineStub, prismaCliOf, prismaContexts, repoRoot, schemaPathOf } from './paths.ts';
import { runMain, runNode, type RunResult } from './run.ts';

const env = { ...process.env, CHECKPOINT_DISABLE: '1', PRISMA_SCHEMA_ENGINE_BINARY: engineStub };

async function generate(context: ContextName): Promise<RunResult> {
  const schema = relative(repoRoot, schemaPathOf(context));
  return runNode(prismaCliOf('prisma'), ['generate', '--schema', schema], env, repoRoot);
}

async function main(): Promise<number> {
  const results = await Promise.all(prismaContexts().map(async (context) => ({ context, ...(await generate(context)) })));
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
