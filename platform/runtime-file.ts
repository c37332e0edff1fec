/**
 * What a running `npm start` tells the platform's command-line tools (`npm run events`) on the
 * same machine: the database URLs it chose (the embedded PostgreSQL's port and password included)
 * and the bus settings. Written under DATA_DIR while the platform runs, removed when it stops.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

export interface PlatformRuntime {
  databaseUrls: Record<string, string>;
  /** The environment the services got for the event bus (e.g. NATS_URL or EVENT_BUS_DATABASE_URL). */
  eventBusEnv: Record<string, string>;
}

export function runtimeFilePath(dataDir: string): string {
  return resolve(dataDir, 'runtime.json');
}

export function writeRuntimeFile(dataDir: string, runtime: PlatformRuntime): void {
  mkdirSync(dataDir, { recursive: true });
  // Holds the embedded server's password: readable by its owner only.
  writeFileSync(runtimeFilePath(dataDir), JSON.stringify(runtime, null, 2), { mode: 0o600 });
}

export function readRuntimeFile(dataDir: string): PlatformRuntime | undefined {
  const path = runtimeFilePath(dataDir);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as PlatformRuntime) : undefined;
}

export function removeRuntimeFile(dataDir: string): void {
  rmSync(runtimeFilePath(dataDir), { force: true });
}
