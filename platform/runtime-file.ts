/**
 * What a running `npm start` tells the platform's command-line tools (`npm run events`,
 * `npm run projections`) on the same machine: the database URLs it chose (the embedded PostgreSQL's port and password included)
 * and the bus settings, and which process serves what (the chaos benchmark finds there whom to
 * kill). Written under DATA_DIR while the platform runs, rewritten on every restart of a service,
 * removed when it stops. `locatePlatform` is how every such tool finds the platform.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { databaseUrlFor } from './config.ts';
import { contextNames, type ContextName } from './contexts.ts';
import type { ServiceStatus } from './process/supervisor.ts';

export interface PlatformRuntime {
  databaseUrls: Record<string, string>;
  /** The environment the services got for the event bus (e.g. NATS_URL or EVENT_BUS_DATABASE_URL). */
  eventBusEnv: Record<string, string>;
  /** The `npm start` process itself. */
  supervisorPid?: number;
  /** The embedded PostgreSQL server, when `npm start` started one (restarted by it when it exits). */
  postgres?: { pid: number | undefined; port: number; restarts: number };
  /** Each service by name: its current pid (absent while it waits to be restarted), port and restarts so far. */
  services?: Record<string, ServiceStatus>;
}

export function runtimeFilePath(dataDir: string): string {
  return resolve(dataDir, 'runtime.json');
}

export function writeRuntimeFile(dataDir: string, runtime: PlatformRuntime): void {
  mkdirSync(dataDir, { recursive: true });
  // Holds the embedded server's password: readable by its owner only. Renamed into place, so a
  // reader polling it during restarts never sees half a file.
  const path = runtimeFilePath(dataDir);
  writeFileSync(`${path}.tmp`, JSON.stringify(runtime, null, 2), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

export function readRuntimeFile(dataDir: string): PlatformRuntime | undefined {
  const path = runtimeFilePath(dataDir);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as PlatformRuntime) : undefined;
}

export function removeRuntimeFile(dataDir: string): void {
  rmSync(runtimeFilePath(dataDir), { force: true });
}

/** The platform a command-line tool operates on. */
export interface LocatedPlatform<C extends ContextName = ContextName> {
  /** The database of each context the tool asked for. */
  databaseUrls: Record<C, string>;
  /** The environment that reaches the event bus: the runtime file's, overridden by the tool's own. */
  busEnv: NodeJS.ProcessEnv;
}

/** Raised when a tool finds no platform; its message tells the operator what to do. */
export class PlatformNotFoundError extends Error {
  override readonly name = 'PlatformNotFoundError';
}

/** Whether a process with this pid runs (as anyone). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Finds the platform the same way for every `npm run <tool>`: through the environment the
 * services get (`<CONTEXT>_DATABASE_URL`, else `DATABASE_URL`, for every context the tool needs),
 * or else through the runtime file of a running `npm start` under `DATA_DIR`. A tool names only
 * the contexts it works on, so `ORDERS_DATABASE_URL` alone is enough for the orders projections.
 * A runtime file whose `npm start` no longer runs (killed before it could remove it) is refused:
 * its embedded PostgreSQL is gone too.
 * @param contexts @default every context
 * @param env @default process.env (DATA_DIR @default `.data`)
 */
export function locatePlatform<C extends ContextName = ContextName>(contexts: readonly C[] = contextNames as readonly C[], env: NodeJS.ProcessEnv = process.env): LocatedPlatform<C> {
  const configured = contexts.map((name) => [name, databaseUrlFor(name, env)] as const);
  if (configured.every(([, url]) => url)) return { databaseUrls: Object.fromEntries(configured) as Record<C, string>, busEnv: env };
  const dataDir = resolve(env.DATA_DIR ?? '.data');
  const runtime = readRuntimeFile(dataDir);
  const howToFix = 'start it with `npm start`, or set DATABASE_URL (and NATS_URL) as its services have them';
  if (!runtime) throw new PlatformNotFoundError(`No platform found: ${howToFix}`);
  if (runtime.supervisorPid !== undefined && !isRunning(runtime.supervisorPid)) {
    throw new PlatformNotFoundError(`No platform found: ${runtimeFilePath(dataDir)} is left from an \`npm start\` that no longer runs (pid ${runtime.supervisorPid}); ${howToFix}`);
  }
  const missing = contexts.filter((name) => !runtime.databaseUrls[name]);
  if (missing.length > 0) throw new PlatformNotFoundError(`${runtimeFilePath(dataDir)} names no database for ${missing.join(', ')}: restart \`npm start\``);
  const databaseUrls = Object.fromEntries(contexts.map((name) => [name, runtime.databaseUrls[name]!])) as Record<C, string>;
  return { databaseUrls, busEnv: { ...runtime.eventBusEnv, ...env } };
}
