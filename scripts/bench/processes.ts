/**
 * Child processes for the benchmarks that must measure one service alone: started with an IPC
 * channel (a service started so stops when the benchmark goes away, see
 * platform/process/lifecycle.ts), waited for on its /health, and read from /proc: its CPU time
 * (all threads, user + system) and its resident memory; with scripts/bench/memory-probe.ts
 * preloaded, its JavaScript heap after a full garbage collection too.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** Clock ticks per second of /proc/<pid>/stat (Linux's USER_HZ, 100 on every current kernel). */
const clockTicksPerSecond = 100;

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const memoryProbe = fileURLToPath(new URL('./memory-probe.ts', import.meta.url));

/** A port free right now on 127.0.0.1 (for a child that must be told its port). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** CPU milliseconds (user + system, all threads) of a process so far; undefined once it is gone. */
export async function cpuMsOf(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond;
  } catch {
    return undefined;
  }
}

/** CPU time of the whole machine so far (all cores), busy and in total, in ms. */
export function machineCpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const { times } of cpus()) {
    const all = times.user + times.nice + times.sys + times.irq + times.idle;
    total += all;
    busy += all - times.idle;
  }
  return { busy, total };
}

/** Resident memory now and at its peak (VmRSS, VmHWM), in bytes. */
export async function residentMemoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/**
 * TCP connections of a process, ESTABLISHED, by the remote port they go to and by the local
 * port they were accepted on: from /proc/<pid>/fd (its socket inodes) and /proc/net/tcp{,6}.
 */
export async function establishedConnectionsOf(pid: number): Promise<{ toRemotePort: Map<number, number>; onLocalPort: Map<number, number> }> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match) inodes.add(match[1]!);
  }
  const toRemotePort = new Map<number, number>();
  const onLocalPort = new Map<number, number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10 || fields[3] !== '01' || !inodes.has(fields[9]!)) continue;
      const local = parseInt(fields[1]!.split(':')[1]!, 16);
      const remote = parseInt(fields[2]!.split(':')[1]!, 16);
      toRemotePort.set(remote, (toRemotePort.get(remote) ?? 0) + 1);
      onLocalPort.set(local, (onLocalPort.get(local) ?? 0) + 1);
    }
  }
  return { toRemotePort, onLocalPort };
}

export interface ServiceSpec {
  name: string;
  /** The module to run, and its arguments. */
  module: string;
  args?: string[];
  /** Node's own flags before the module (e.g. `--import tsx`). */
  execArgv: string[];
  env: NodeJS.ProcessEnv;
  /** Polled until it answers 2xx. */
  healthUrl: string;
  /** @default 60_000 */
  startTimeoutMs?: number;
}

export interface JsMemory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  /** Whether a full GC ran first (the process was started with --expose-gc). */
  collected: boolean;
}

export class ServiceProcess {
  readonly #child: ChildProcess;
  readonly #exited: Promise<number | null>;
  #probes = 0;
  #stopping = false;

  private constructor(
    readonly name: string,
    child: ChildProcess,
  ) {
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    // The services log JSON lines on stderr; warnings and errors are worth seeing.
    for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream! }).on('line', (line) => console.error(`[${name}] ${line}`));
    void this.#exited.then((code) => {
      if (!this.#stopping) console.error(`[${name}] exited unexpectedly (code ${code})`);
    });
  }

  get pid(): number {
    return this.#child.pid!;
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  static async start(spec: ServiceSpec): Promise<ServiceProcess> {
    const child = fork(spec.module, spec.args ?? [], { cwd: repoRoot, env: spec.env, execArgv: spec.execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const service = new ServiceProcess(spec.name, child);
    const deadline = Date.now() + (spec.startTimeoutMs ?? 60_000);
    try {
      while (true) {
        if (!service.running) throw new Error(`${spec.name} exited with code ${child.exitCode} while starting (see its output above)`);
        const healthy = await fetch(spec.healthUrl, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
        if (healthy) return service;
        if (Date.now() > deadline) throw new Error(`${spec.name} did not become healthy at ${spec.healthUrl}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } catch (error) {
      await service.stop();
      throw error;
    }
  }

  cpuMs(): Promise<number | undefined> {
    return cpuMsOf(this.pid);
  }

  residentMemory(): Promise<{ rss: number; peak: number }> {
    return residentMemoryOf(this.pid);
  }

  /** Its heap after a full GC (needs scripts/bench/memory-probe.ts preloaded). */
  jsMemory(timeoutMs = 30_000): Promise<JsMemory> {
    const id = ++this.#probes;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#child.off('message', onMessage);
        reject(new Error(`${this.name} did not answer the memory probe (is scripts/bench/memory-probe.ts preloaded?)`));
      }, timeoutMs);
      const onMessage = (message: { memoryProbe?: number; collected: boolean; usage: NodeJS.MemoryUsage }) => {
        if (message?.memoryProbe !== id) return;
        clearTimeout(timer);
        this.#child.off('message', onMessage);
        resolve({ ...message.usage, collected: message.collected });
      };
      this.#child.on('message', onMessage);
      this.#child.send({ memoryProbe: id });
    });
  }

  /** SIGTERM (the service stops gracefully), SIGKILL after `graceMs`; idempotent. */
  async stop(graceMs = 15_000): Promise<void> {
    this.#stopping = true;
    if (this.running) {
      this.#child.kill('SIGTERM');
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs);
      await this.#exited;
      clearTimeout(timer);
    }
  }
}

/** A child speaking request/response over IPC: `{ requestId, command }` → `{ requestId, result | error }`. */
export class IpcWorker<Command, Name extends string = string> {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (value: any) => void; reject: (error: Error) => void }>();
  readonly #ready: Promise<void>;
  #next = 0;
  #stopping = false;

  constructor(
    readonly name: Name,
    module: string,
    args: string[],
    execArgv: string[],
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.#child = fork(module, args, { cwd: repoRoot, env, execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    this.#ready = new Promise((resolve, reject) => {
      this.#child.once('exit', (code) => {
        const error = new Error(`${name} exited (code ${code})`);
        reject(error);
        for (const pending of this.#pending.values()) pending.reject(error);
        this.#pending.clear();
        if (!this.#stopping) console.error(`[${name}] exited unexpectedly (code ${code})`);
      });
      this.#child.on('message', (message: { ready?: boolean; requestId?: number; result?: unknown; error?: string }) => {
        if (message.ready) return resolve();
        const pending = this.#pending.get(message.requestId!);
        if (!pending) return;
        this.#pending.delete(message.requestId!);
        if (message.error) pending.reject(new Error(`${name}: ${message.error}`));
        else pending.resolve(message.result);
      });
    });
    this.#ready.catch(() => {});
  }

  get pid(): number {
    return this.#child.pid!;
  }

  async request<T>(command: Command): Promise<T> {
    await this.#ready;
    const requestId = ++this.#next;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(requestId, { resolve, reject });
      this.#child.send({ requestId, command });
    });
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.disconnect();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * `gateway/main.ts` as a process of its own, on a free port, in front of the given subgraph URLs,
 * once its /health answers.
 */
export async function startGatewayProcess(options: {
  subgraphUrls: Record<string, string>;
  execArgv: string[];
  env: NodeJS.ProcessEnv;
}): Promise<{ gateway: ServiceProcess; port: number; httpUrl: string; wsUrl: string }> {
  const port = await freePort();
  const gateway = await ServiceProcess.start({
    name: 'gateway',
    module: `${repoRoot}gateway/main.ts`,
    args: [
      '--supergraph',
      `${repoRoot}schema/supergraph.graphql`,
      '--port',
      String(port),
      '--host',
      '127.0.0.1',
      ...Object.entries(options.subgraphUrls).flatMap(([name, url]) => ['--subgraph-url', `${name}=${url}`]),
    ],
    execArgv: options.execArgv,
    env: options.env,
    healthUrl: `http://127.0.0.1:${port}/health`,
  });
  return { gateway, port, httpUrl: `http://127.0.0.1:${port}/graphql`, wsUrl: `ws://127.0.0.1:${port}/graphql` };
}
