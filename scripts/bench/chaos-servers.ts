/**
 * The chaos benchmark's own PostgreSQL and NATS servers: private to one run (a temp data folder,
 * a free port), so that restarting, stopping or wiping them disturbs nobody else on the machine.
 *
 * PostgreSQL is the system's (`initdb`, `pg_ctl` on PATH). PostgreSQL refuses to run as root, so
 * as root its commands run as the `postgres` user (`runuser`), which then owns the data folder.
 * NATS is `nats-server` with JetStream, its store in a folder of ours, so "wipe NATS's data" is
 * stop, delete the folder, start.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './processes.ts';
import { sleep } from './support.ts';

const execFileAsync = promisify(execFile);

/** Polls `probe` until it resolves true; throws `what` after `timeoutMs`. */
async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

/** The system user PostgreSQL runs as when we are root, else ourselves. */
const postgresUser = process.getuid?.() === 0 ? 'postgres' : undefined;

async function runAsPostgres(command: string, args: string[]): Promise<string> {
  const [file, argv] = postgresUser ? ['runuser', ['-u', postgresUser, '--', command, ...args]] : [command, args];
  const { stdout } = await execFileAsync(file, argv, { maxBuffer: 4 * 1024 * 1024 });
  return stdout;
}

export interface PrivatePostgresOptions {
  /** A folder of the run's; the cluster goes in `<dir>/data`, its socket and log beside it. */
  dir: string;
  /**
   * The server's connection limit. The platform opens six pools and its listeners; this server
   * is ours alone, so it can be generous. @default 200
   */
  maxConnections?: number;
}

export class PrivatePostgres {
  private constructor(
    readonly port: number,
    private readonly dataDir: string,
    private readonly logFile: string,
  ) {}

  /** Server URL (maintenance database `postgres`), trust authentication on 127.0.0.1. */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  static async start(options: PrivatePostgresOptions): Promise<PrivatePostgres> {
    const dataDir = join(options.dir, 'data');
    const socketDir = join(options.dir, 'socket');
    for (const dir of [options.dir, socketDir]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (postgresUser) await execFileAsync('chown', [postgresUser, dir]);
    }
    await runAsPostgres('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync']);
    const port = await freePort();
    // Settings go to the cluster's config so that `pg_ctl restart` keeps them.
    const settings = [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${socketDir}'`,
      `max_connections = ${options.maxConnections ?? 200}`,
      // A benchmark cluster: losing it in a machine crash is fine, fsync costs the shared disk.
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
    ];
    await runAsPostgres('sh', ['-c', `printf '%s\\n' ${settings.map((s) => `"${s}"`).join(' ')} >> '${join(dataDir, 'postgresql.conf')}'`]);
    const server = new PrivatePostgres(port, dataDir, join(options.dir, 'postgres.log'));
    await server.#pgCtl('start');
    await server.waitUntilAccepting();
    return server;
  }

  async #pgCtl(action: 'start' | 'stop' | 'restart'): Promise<void> {
    const args = [action, '-D', this.dataDir, '-w', '-t', '60'];
    if (action !== 'start') args.push('-m', 'fast');
    if (action !== 'stop') args.push('-l', this.logFile);
    await runAsPostgres('pg_ctl', args);
  }

  /** `pg_ctl restart -m fast`: every connection is terminated, the server is back when it returns. */
  async restart(): Promise<void> {
    await this.#pgCtl('restart');
    await this.waitUntilAccepting();
  }

  async waitUntilAccepting(timeoutMs = 60_000): Promise<void> {
    await waitFor(`PostgreSQL on port ${this.port} did not accept connections`, async () => {
      const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 2_000 });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT 1');
        return true;
      } finally {
        await client.end().catch(() => {});
      }
    }, timeoutMs);
  }

  /** Stops the server (fast: open connections are cut); idempotent. */
  async stop(): Promise<void> {
    await this.#pgCtl('stop').catch(() => {});
  }
}

export interface PrivateNatsOptions {
  /** A folder of the run's; the JetStream store goes in `<dir>/store`. */
  dir: string;
  /** @default '/usr/sbin/nats-server' (NATS_SERVER_BIN) */
  binary?: string;
}

export class PrivateNats {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly port: number,
    private readonly storeDir: string,
    private readonly binary: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  static async start(options: PrivateNatsOptions): Promise<PrivateNats> {
    const server = new PrivateNats(await freePort(), join(options.dir, 'store'), options.binary ?? process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server');
    await server.start();
    return server;
  }

  /** Starts the server on its port and store; resolves once it accepts TCP connections. */
  async start(): Promise<void> {
    if (this.running) return;
    mkdirSync(this.storeDir, { recursive: true });
    const child = spawn(this.binary, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], { stdio: 'ignore' });
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await waitFor(`nats-server on port ${this.port} did not start`, async () => {
      if (!this.running) throw new Error('nats-server exited while starting');
      return greetsWithInfo(this.port);
    }, 30_000);
  }

  /** SIGTERM (JetStream flushes its store), SIGKILL after 10 s; idempotent. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.#child!.kill('SIGTERM');
    const timer = setTimeout(() => this.#child?.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Deletes the JetStream store: streams, consumers and messages are gone. Only while stopped. */
  wipe(): void {
    if (this.running) throw new Error('wipe NATS only while it is stopped');
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}

/** Whether a NATS server answers on the port: it greets every new connection with `INFO {…}`. */
function greetsWithInfo(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const done = (answer: boolean) => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (chunk) => done(chunk.toString('latin1').startsWith('INFO')));
  });
}
