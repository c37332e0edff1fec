/**
 * Runs the platform's services as child processes and keeps them running: starts each, waits for
 * its `/health`, prefixes its output with its name, restarts one that exits with exponential
 * back-off (and says so), reports one that keeps crashing, and stops them all in reverse order.
 *
 * Two phases. While the platform is first starting (until `supervise()`), any exit is a start
 * failure: a misconfiguration shows one clear error instead of a restart loop. From then on an
 * exit, whatever its code, is a crash: that service alone is restarted, with the same environment
 * and port; the others are never touched. The rules and their numbers: docs/decisions/0014.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ServiceSpec {
  name: string;
  /** Arguments to node (e.g. `['--import', 'tsx', 'subgraphs/accounts/main.ts']`). */
  args: string[];
  env: NodeJS.ProcessEnv;
  healthUrl: string;
  /** The port it serves on, reported in `status()` for tools that look for it. */
  port?: number;
}

/** What tools (the runtime file, the chaos benchmark) need to know about one service. */
export interface ServiceStatus {
  /** Its current process; undefined while it waits to be restarted. */
  pid: number | undefined;
  port: number | undefined;
  /** How many times it was restarted since the platform started. */
  restarts: number;
}

export interface SupervisorOptions {
  /** Where the supervisor's lines and the services' (prefixed) output go. */
  write: (line: string) => void;
  /** Called after every change of a service's pid or restart count. @default nothing */
  onChange?: (services: Record<string, ServiceStatus>) => void;
  /** Delay before the first restart after a healthy spell; doubles with each further crash. @default 250 */
  initialBackoffMs?: number;
  /** Cap of the doubling delay, and the delay of a service that keeps crashing. @default 10_000 */
  maxBackoffMs?: number;
  /** A service healthy for this long before it exits starts again from `initialBackoffMs`. @default 30_000 */
  resetAfterMs?: number;
  /** This many exits within `crashLoopWindowMs` and a service "keeps crashing". @default 5 */
  crashLoopExits?: number;
  /** @default 60_000 */
  crashLoopWindowMs?: number;
  /** How long a started or restarted service has to answer its health check; past it, it is killed (a crash). @default 60_000 */
  healthTimeoutMs?: number;
  /** Between SIGTERM and SIGKILL when stopping a service. @default 10_000 */
  stopGraceMs?: number;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Service {
  spec: ServiceSpec;
  child: ChildProcess | undefined;
  exited: Promise<Exit>;
  exit: Exit | undefined;
  restarts: number;
  /** Crashes since the last healthy spell longer than `resetAfterMs`: the back-off's exponent. */
  crashesInARow: number;
  /** When it exited, within the crash-loop window. */
  recentExits: number[];
  healthySince: number | undefined;
  /** Set when the supervisor killed it for not becoming healthy, so the report says so. */
  killedUnhealthy: boolean;
  /** Cancels the back-off wait in progress. */
  cancelWait: (() => void) | undefined;
}

type HealthOutcome = 'healthy' | 'exited' | 'timeout' | 'stopping' | 'start-failed';

// Back-offs start at a quarter second: two decimals below one second, one above.
const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 1000 ? 2 : 1)} s`;
const describeExit = ({ code, signal }: Exit) => (signal ? `signal ${signal}` : `code ${code}`);

export class Supervisor {
  private readonly services: Service[] = [];
  private readonly options: Required<SupervisorOptions>;
  private phase: 'starting' | 'supervising' | 'stopping' = 'starting';
  /** The first exit while the platform was starting; fails the start in progress. */
  private startFailure: Error | undefined;

  constructor(options: SupervisorOptions) {
    this.options = {
      onChange: () => {},
      initialBackoffMs: 250,
      maxBackoffMs: 10_000,
      resetAfterMs: 30_000,
      crashLoopExits: 5,
      crashLoopWindowMs: 60_000,
      healthTimeoutMs: 60_000,
      stopGraceMs: 10_000,
      ...options,
    };
  }

  /** Starts a service and waits until it is healthy; throws if it (or one started before it) exits first. */
  async start(spec: ServiceSpec): Promise<void> {
    if (this.phase !== 'starting') throw new Error('Supervisor.start() is for the start phase; services are restarted by the supervisor');
    if (this.startFailure) throw this.startFailure;
    const service: Service = {
      spec,
      child: undefined,
      exited: Promise.resolve({ code: null, signal: null }),
      exit: undefined,
      restarts: 0,
      crashesInARow: 0,
      recentExits: [],
      healthySince: undefined,
      killedUnhealthy: false,
      cancelWait: undefined,
    };
    this.services.push(service);
    this.spawn(service);
    const outcome = await this.waitUntilHealthy(service);
    if (outcome === 'exited') throw new Error(`${spec.name} exited with ${describeExit(service.exit!)} while starting (see its output above)`);
    if (outcome === 'timeout') throw new Error(`${spec.name} did not become healthy at ${spec.healthUrl} within ${seconds(this.options.healthTimeoutMs)}`);
    if (outcome === 'start-failed') throw this.startFailure!;
    if (outcome === 'stopping') throw new Error('stopped while starting');
    service.healthySince = Date.now();
    void service.exited.then((exit) => {
      if (this.phase === 'starting') this.startFailure ??= new Error(`${spec.name} exited with ${describeExit(exit)} while the platform was starting (see its output above)`);
    });
  }

  /** Ends the start phase: from now on a service that exits is restarted. Throws if one exited already. */
  supervise(): void {
    if (this.startFailure) throw this.startFailure;
    this.phase = 'supervising';
    for (const service of this.services) void this.keepRunning(service);
  }

  status(): Record<string, ServiceStatus> {
    return Object.fromEntries(this.services.map(({ spec, child, exit, restarts }) => [spec.name, { pid: exit ? undefined : child?.pid, port: spec.port, restarts }]));
  }

  /**
   * Cancels pending restarts, then SIGTERM to each service, newest first (the gateway before the
   * subgraphs), one at a time, SIGKILL after the grace period; says when each has stopped.
   */
  async stopAll(): Promise<void> {
    this.phase = 'stopping';
    for (const service of this.services) service.cancelWait?.();
    for (const service of [...this.services].reverse()) {
      if (service.exit || !service.child) continue;
      const startedAt = Date.now();
      service.child.kill('SIGTERM');
      const timer = setTimeout(() => {
        this.options.write(`${service.spec.name} did not stop within ${seconds(this.options.stopGraceMs)}: killing it`);
        service.child?.kill('SIGKILL');
      }, this.options.stopGraceMs);
      await service.exited;
      clearTimeout(timer);
      this.options.write(`${service.spec.name} stopped (${seconds(Date.now() - startedAt)})`);
    }
  }

  private spawn(service: Service): void {
    const { spec } = service;
    // A process group of its own: a terminal's Ctrl-C reaches only the supervisor, which stops the
    // services in order. The IPC channel tells a service its supervisor is gone, even after SIGKILL.
    const child = spawn(process.execPath, spec.args, { env: spec.env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true });
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => this.options.write(`[${spec.name}] ${line}`));
    }
    service.child = child;
    service.exit = undefined;
    service.healthySince = undefined;
    service.exited = new Promise<Exit>((resolve) => {
      const settle = (exit: Exit) => {
        service.exit ??= exit;
        resolve(service.exit);
      };
      child.once('exit', (code, signal) => settle({ code, signal }));
      child.on('error', (error) => {
        // No process at all (EAGAIN when the machine is out of processes): 'exit' never comes.
        // Any other error (a failed kill or IPC write) leaves the process running: its exit will tell.
        if (child.pid !== undefined) return;
        this.options.write(`${spec.name} could not be started: ${error.message}`);
        settle({ code: null, signal: null });
      });
    });
    this.options.onChange(this.status());
  }

  /** The supervising loop of one service: wait for its exit, back off, restart, wait for health. */
  private async keepRunning(service: Service): Promise<void> {
    const { name } = service.spec;
    for (;;) {
      const exit = await service.exited;
      if (this.phase === 'stopping') return;
      const delay = this.recordCrash(service, exit);
      if (!(await this.wait(service, delay))) return;
      const restartedAt = Date.now();
      const exitedAt = service.recentExits.at(-1)!;
      service.restarts += 1;
      this.spawn(service);
      const outcome = await this.waitUntilHealthy(service);
      if (outcome === 'healthy') {
        service.healthySince = Date.now();
        this.options.write(`${name} is back (healthy after ${seconds(Date.now() - restartedAt)}, down for ${seconds(Date.now() - exitedAt)})`);
      } else if (outcome === 'timeout') {
        this.options.write(`${name} did not become healthy within ${seconds(this.options.healthTimeoutMs)} of its restart: killing it`);
        service.killedUnhealthy = true;
        service.child!.kill('SIGKILL');
      } else if (outcome === 'stopping') {
        return;
      }
      // 'exited': the next turn of the loop reports it.
    }
  }

  /** Counts an exit, says what happened and what comes next, and returns the back-off delay. */
  private recordCrash(service: Service, exit: Exit): number {
    const { name } = service.spec;
    const { initialBackoffMs, maxBackoffMs, resetAfterMs, crashLoopExits, crashLoopWindowMs } = this.options;
    const now = Date.now();
    if (service.healthySince !== undefined && now - service.healthySince >= resetAfterMs) service.crashesInARow = 0;
    service.crashesInARow += 1;
    service.recentExits = [...service.recentExits.filter((at) => now - at < crashLoopWindowMs), now];
    const unhealthy = service.killedUnhealthy;
    service.killedUnhealthy = false;
    const why = unhealthy ? 'never became healthy' : `exited (${describeExit(exit)})`;
    const crashLooping = service.recentExits.length >= crashLoopExits;
    const delay = crashLooping ? maxBackoffMs : Math.min(maxBackoffMs, initialBackoffMs * 2 ** (service.crashesInARow - 1));
    this.options.write(`${name} ${why}; restarting in ${seconds(delay)} (restart ${service.restarts + 1})`);
    if (crashLooping) {
      const last = unhealthy ? 'killed for never becoming healthy' : `last exit ${describeExit(exit)}`;
      this.options.write(
        `${name} keeps crashing: ${service.recentExits.length} exits in ${crashLoopWindowMs / 1000} s, ${last}; see its output above. Retrying every ${maxBackoffMs / 1000} s until it stays up.`,
      );
    }
    this.options.onChange(this.status());
    return delay;
  }

  /** Resolves true after `ms`, or false at once when the platform starts stopping. */
  private wait(service: Service, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        service.cancelWait = undefined;
        resolve(this.phase !== 'stopping');
      }, ms);
      service.cancelWait = () => {
        clearTimeout(timer);
        service.cancelWait = undefined;
        resolve(false);
      };
    });
  }

  private async waitUntilHealthy(service: Service): Promise<HealthOutcome> {
    const deadline = Date.now() + this.options.healthTimeoutMs;
    for (;;) {
      if (service.exit) return 'exited';
      if (this.phase === 'stopping') return 'stopping';
      if (this.phase === 'starting' && this.startFailure) return 'start-failed';
      if (Date.now() > deadline) return 'timeout';
      const healthy = await fetch(service.spec.healthUrl, { signal: AbortSignal.timeout(1_000) })
        .then((response) => response.ok)
        .catch(() => false);
      if (healthy && !service.exit) return 'healthy';
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
