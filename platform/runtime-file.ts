/**
 * What a running `npm start` tells the platform's command-line tools (`npm run events`) on the
 * same machine: the database URLs it chose (the embedded PostgreSQL's port and password included)
 * and the bus settings, and which process serves what (the chaos benchmark finds there whom to
 * kill). Written under DATA_DIR while the platform runs, rewritten on every restart of a service,
 * removed when it stops.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
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
