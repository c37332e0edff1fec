/**
 * The platform as `npm start` runs it — the supervisor (`node --import tsx scripts/start.ts`)
 * and its processes — pointed at the chaos run's private PostgreSQL and NATS, on free ports, with
 * its DATA_DIR in the run's temp folder. Its output goes to a log file there (shown on failure),
 * so the benchmark's table is not buried under the services' JSON lines.
 *
 * The processes to kill are found in `<DATA_DIR>/runtime.json` (`services.<name>.pid`, written by
 * the supervisor) or, when the supervisor does not write them, among the supervisor's own
 * children by their command line: never a process of someone else's on this machine.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { contextNames, type ContextName } from '../../platform/contexts.ts';
import { isRunning, readRuntimeFile } from '../../platform/runtime-file.ts';
import { freePort, repoRoot } from './processes.ts';
import { sleep } from './support.ts';

const execFileAsync = promisify(execFile);

export type ServiceName = ContextName | 'gateway';
export const serviceNames: readonly ServiceName[] = [...contextNames, 'gateway'];

export interface ChaosPlatformOptions {
  /** The run's temp folder: DATA_DIR and the log go there. */
  dir: string;
  /** PostgreSQL server URL; becomes DATABASE_URL (databases `chaos_<context>`). */
  serverUrl: string;
  natsUrl: string;
  /** Extra environment for every process (e.g. SAGA_STEP_TIMEOUT_MS). @default {} */
  env?: Record<string, string>;
  /** How long `npm start` may take until the gateway answers /health. @default 180_000 */
  startTimeoutMs?: number;
}

/** Variables of the caller's shell that would point the platform at someone else's servers. */
const inheritedButNotOurs = /^(?:[A-Z]+_DATABASE_URL|DATABASE_URL|EVENT_BUS_DATABASE_URL|NATS_URL|PORT|HOST|GATEWAY_PORT|[A-Z]+_PORT|DATA_DIR|(?:AUTH_TOKEN|GATEWAY_IDENTITY)_(?:PRIVATE|PUBLIC)_KEY(?:_FILE)?)$/;

export class ChaosPlatform {
  #supervisor: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #log: WriteStream;
  /** Every service pid ever seen, so that cleanup can make sure none outlives the run. */
  readonly #seenPids = new Set<number>();
  /** How many times the benchmark had to start the platform again because `npm start` had exited. */
  restartsByBenchmark = 0;

  private constructor(
    private readonly options: ChaosPlatformOptions,
    readonly ports: Record<ServiceName, number>,
    readonly adminPassword: string,
  ) {
    this.#log = createWriteStream(this.logFile, { flags: 'a' });
  }

  get dataDir(): string {
    return join(this.options.dir, 'data');
  }

  get logFile(): string {
    return join(this.options.dir, 'platform.log');
  }

  get gatewayUrl(): string {
    return `http://127.0.0.1:${this.ports.gateway}/graphql`;
  }

  get gatewayWsUrl(): string {
    return `ws://127.0.0.1:${this.ports.gateway}/graphql`;
  }

  get gatewayOrigin(): string {
    return `http://127.0.0.1:${this.ports.gateway}`;
  }

  /** The database of a context, as `npm start` derives it from DATABASE_URL. */
  databaseUrl(context: ContextName): string {
    const url = new URL(this.options.serverUrl);
    url.pathname = `/chaos_${context}`;
    return url.toString();
  }

  get running(): boolean {
    return this.#supervisor !== undefined && this.#supervisor.exitCode === null && this.#supervisor.signalCode === null;
  }

  static async start(options: ChaosPlatformOptions): Promise<ChaosPlatform> {
    const ports = {} as Record<ServiceName, number>;
    for (const name of serviceNames) ports[name] = await freePort();
    const adminPassword = `chaos-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`;
    const platform = new ChaosPlatform(options, ports, adminPassword);
    await platform.#start();
    return platform;
  }

  async #start(): Promise<void> {
    const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !inheritedButNotOurs.test(name)));
    Object.assign(env, {
      NODE_ENV: 'production',
      SEED_DEMO_DATA: 'true',
      DEMO_ADMIN_PASSWORD: this.adminPassword,
      DATABASE_URL: new URL('/chaos', this.options.serverUrl).toString(),
      NATS_URL: this.options.natsUrl,
      DATA_DIR: this.dataDir,
      GATEWAY_PORT: String(this.ports.gateway),
      // The benchmark's clients share one address: per-caller limits would measure themselves, not recovery.
      GATEWAY_RATE_LIMITS: 'off',
      ...Object.fromEntries(contextNames.map((name) => [`${name.toUpperCase()}_PORT`, String(this.ports[name])])),
      ...this.options.env,
    });
    const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts/start.ts')], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#supervisor = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stdout!.pipe(this.#log, { end: false });
    child.stderr!.pipe(this.#log, { end: false });
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 180_000);
    while (!(await this.gatewayHealthy())) {
      if (!this.running) throw new Error(`npm start exited while starting: see ${this.logFile}\n${this.logTail()}`);
      if (Date.now() > deadline) throw new Error(`the gateway did not answer /health: see ${this.logFile}\n${this.logTail()}`);
      await sleep(500);
    }
    await this.servicePids();
  }

  /** Starts `npm start` again after it exited (a platform whose supervisor gave up). */
  async startAgain(): Promise<void> {
    this.restartsByBenchmark += 1;
    this.#log.write(`\n──── the chaos benchmark starts the platform again (npm start had exited) ────\n`);
    await this.#start();
  }

  /** Whether the gateway's /health (liveness) answers 2xx. */
  async gatewayHealthy(timeoutMs = 2_000): Promise<boolean> {
    return fetch(`${this.gatewayOrigin}/health`, { signal: AbortSignal.timeout(timeoutMs) }).then(
      (response) => response.ok,
      () => false,
    );
  }

  /** What the gateway's /ready says (`ready`, `degraded`, `unavailable`…), `HTTP_<status>` without a status, `no answer` when it does not answer. */
  async readiness(): Promise<string> {
    try {
      const response = await fetch(`${this.gatewayOrigin}/ready`, { signal: AbortSignal.timeout(1_000) });
      const body = (await response.json().catch(() => undefined)) as { status?: unknown } | undefined;
      return typeof body?.status === 'string' ? body.status : `HTTP_${response.status}`;
    } catch {
      return 'no answer';
    }
  }

  /** Whether the gateway has a /ready endpoint at all (404 means it does not exist yet). */
  async hasReadyEndpoint(): Promise<boolean> {
    return fetch(`${this.gatewayOrigin}/ready`, { signal: AbortSignal.timeout(2_000) }).then(
      (response) => response.status !== 404,
      () => false,
    );
  }

  /** The pid of each running service: from runtime.json when it lists them, else from `ps`. */
  async servicePids(): Promise<Partial<Record<ServiceName, number>>> {
    const pids: Partial<Record<ServiceName, number>> = {};
    const runtime = readRuntimeFile(this.dataDir);
    for (const name of serviceNames) {
      const pid = runtime?.services?.[name]?.pid;
      if (typeof pid === 'number' && isRunning(pid)) pids[name] = pid;
    }
    if (Object.keys(pids).length < serviceNames.length && this.#supervisor?.pid) {
      const { stdout } = await execFileAsync('ps', ['-eo', 'pid=,ppid=,args=']);
      for (const line of stdout.split('\n')) {
        const match = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line);
        if (!match || Number(match[2]) !== this.#supervisor.pid) continue;
        const name = serviceNames.find((service) => match[3]!.includes(service === 'gateway' ? 'gateway/main.ts' : `subgraphs/${service}/main.ts`));
        if (name && pids[name] === undefined) pids[name] = Number(match[1]);
      }
    }
    for (const pid of Object.values(pids)) this.#seenPids.add(pid);
    return pids;
  }

  /** SIGKILLs one service; returns its pid, or undefined when it is not running. */
  async kill(name: ServiceName): Promise<number | undefined> {
    const pid = (await this.servicePids())[name];
    if (pid === undefined) return undefined;
    process.kill(pid, 'SIGKILL');
    return pid;
  }

  /** The last lines of the platform's log, for an error message. */
  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Ctrl-C to `npm start` (it stops its services in order), SIGKILL to whatever is left after 30 s. */
  async stop(): Promise<void> {
    if (this.running) {
      this.#supervisor!.kill('SIGINT');
      const timer = setTimeout(() => this.#supervisor?.kill('SIGKILL'), 30_000);
      await this.#exited;
      clearTimeout(timer);
    }
    // Only a process that still carries our DATA_DIR: a pid seen earlier may belong to someone else now.
    for (const pid of this.#seenPids) if (isRunning(pid) && this.#isOurs(pid)) process.kill(pid, 'SIGKILL');
    this.#log.end();
  }

  #isOurs(pid: number): boolean {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`DATA_DIR=${this.dataDir}`);
    } catch {
      return false;
    }
  }
}
