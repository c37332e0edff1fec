/** Running a child process and the small command-line conventions of the Prisma scripts. */
import { spawn } from 'node:child_process';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a Node script with the current Node, capturing its output; never rejects on exit code. */
export function runNode(script: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), stdout, stderr }));
  });
}

/** A failure the user can fix from the message alone: printed without a stack trace. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * Runs a script's main function and turns its outcome into an exit code. Expected errors
 * (UsageError, MigrationError, PostgreSQL and connection errors) print their message only.
 */
export function runMain(main: () => Promise<number | void>): void {
  main().then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (error: unknown) => {
      console.error(isExpected(error) ? `error: ${(error as Error).message}` : error);
      process.exitCode = 1;
    },
  );
}

function isExpected(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error.name === 'UsageError' || error.name === 'MigrationError') return true;
  // pg's DatabaseError and Node's system errors (ECONNREFUSED, …) carry a code.
  return typeof (error as { code?: unknown }).code === 'string';
}
