/**
 * Runs the platform's services as child processes: starts each, waits for its `/health`, prefixes
 * its output with its name, and stops them all in reverse order. If one dies unexpectedly the
 * whole platform stops, so a half-running platform never pretends to be healthy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ServiceSpec {
  name: string;
  /** Arguments to node (e.g. `['--import', 'tsx', 'subgraphs/accounts/main.ts']`). */
  args: string[];
  env: NodeJS.ProcessEnv;
  healthUrl: string;
}

interface RunningService {
  spec: ServiceSpec;
  child: ChildProcess;
  exited: Promise<number | null>;
}

export class Supervisor {
  private readonly services: RunningService[] = [];
  private stopping = false;

  constructor(
    private readonly write: (line: string) => void,
    /** Called once when a service exits while the platform is not stopping. */
    private readonly onUnexpectedExit: (name: string, code: number | null) => void,
  ) {}

  async start(spec: ServiceSpec, timeoutMs = 60_000): Promise<void> {
    // A process group of its own: a terminal's Ctrl-C reaches only the supervisor, which stops the
    // services in order. The IPC channel tells a service its supervisor is gone, even after SIGKILL.
    const child = spawn(process.execPath, spec.args, { env: spec.env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true });
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream! }).on('line', (line) => this.write(`[${spec.name}] ${line}`));
    }
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const service = { spec, child, exited };
    this.services.push(service);
    let started = false;
    void exited.then((code) => {
      // An exit while starting is reported by start() itself, once.
      if (started && !this.stopping) this.onUnexpectedExit(spec.name, code);
    });
    await this.waitUntilHealthy(service, timeoutMs);
    started = true;
  }

  private async waitUntilHealthy(service: RunningService, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exitCode: number | null | undefined;
    void service.exited.then((code) => (exitCode = code));
    while (Date.now() < deadline) {
      if (exitCode !== undefined) throw new Error(`${service.spec.name} exited with code ${exitCode} while starting (see its output above)`);
      const healthy = await fetch(service.spec.healthUrl, { signal: AbortSignal.timeout(1_000) })
        .then((response) => response.ok)
        .catch(() => false);
      if (healthy) return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`${service.spec.name} did not become healthy at ${service.spec.healthUrl} within ${timeoutMs / 1000} s`);
  }

  /** SIGTERM to each service, newest first (the gateway before the subgraphs); SIGKILL after the grace period. */
  async stopAll(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    for (const service of [...this.services].reverse()) {
      if (service.child.exitCode !== null || service.child.signalCode !== null) continue;
      service.child.kill('SIGTERM');
      const timer = setTimeout(() => service.child.kill('SIGKILL'), graceMs);
      await service.exited;
      clearTimeout(timer);
    }
  }
}
