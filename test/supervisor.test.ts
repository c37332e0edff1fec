import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Supervisor, type ServiceSpec, type SupervisorOptions } from '../platform/process/supervisor.ts';
import { freePort, isListening } from './support/processes.ts';
import { waitFor } from './support/wait.ts';

/** How the tiny service behaves; every file is optional. */
interface Behaviour {
  /** /health answers 503 while this file is missing. */
  healthyFile?: string;
  /** Exits with `exitCode` as soon as this file exists. */
  exitFile?: string;
  /** Exits with `exitCode` this long after it listens. */
  exitAfterMs?: number;
  exitCode?: number;
}

/**
 * A tiny service (plain node, no tsx: it starts in ~50 ms, so back-off and crash loops take
 * seconds to test): answers /health, exits when its behaviour says so, and at once on SIGTERM.
 */
const healthServer = `
const fs = require('node:fs');
const { port, healthyFile, exitFile, exitAfterMs, exitCode } = JSON.parse(process.argv[1]);
const server = require('node:http').createServer((request, response) => {
  response.writeHead(!healthyFile || fs.existsSync(healthyFile) ? 200 : 503).end();
});
server.listen(port, '127.0.0.1', () => {
  console.log('listening on ' + port);
  if (exitAfterMs !== undefined) setTimeout(() => process.exit(exitCode), exitAfterMs);
});
if (exitFile) setInterval(() => fs.existsSync(exitFile) && process.exit(exitCode), 20);
process.on('SIGTERM', () => process.exit(0));
`;

async function service(name: string, behaviour: Behaviour = {}): Promise<ServiceSpec> {
  const port = await freePort();
  return { name, args: ['-e', healthServer, JSON.stringify({ port, ...behaviour })], env: process.env, healthUrl: `http://127.0.0.1:${port}/health`, port };
}

describe('Supervisor', () => {
  const running: { supervisor: Supervisor; specs: ServiceSpec[] }[] = [];
  const folders: string[] = [];
  afterEach(async () => {
    for (const { supervisor, specs } of running.splice(0)) {
      await supervisor.stopAll();
      for (const spec of specs) expect(await isListening(spec.port!), `${spec.name} still listening`).toBe(false);
    }
    for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
  });

  /** A file in a folder removed after the test (it does not exist yet). */
  function fileInTemporaryFolder(name: string): string {
    const folder = mkdtempSync(join(tmpdir(), 'supervisor-test-'));
    folders.push(folder);
    return join(folder, name);
  }

  /** A supervisor whose output is collected, with back-offs short enough for a test. */
  function supervisorOf(specs: ServiceSpec[], options: Partial<SupervisorOptions> = {}) {
    const lines: string[] = [];
    const changes: ReturnType<Supervisor['status']>[] = [];
    const supervisor = new Supervisor({ write: (line) => lines.push(line), onChange: (status) => changes.push(status), initialBackoffMs: 50, maxBackoffMs: 400, healthTimeoutMs: 20_000, ...options });
    running.push({ supervisor, specs });
    const said = (pattern: RegExp) => waitFor(`a line matching ${pattern} in:\n${lines.join('\n')}`, () => lines.find((line) => pattern.test(line)), 30_000);
    return { supervisor, lines, changes, said };
  }

  it('restarts a killed service with the same port, says so, and leaves the other services alone', async () => {
    const specs = [await service('catalog'), await service('orders')];
    const { supervisor, lines, changes, said } = supervisorOf(specs);
    for (const spec of specs) await supervisor.start(spec);
    supervisor.supervise();
    const before = supervisor.status();

    process.kill(before.orders!.pid!, 'SIGKILL');

    expect(await said(/^orders exited/)).toBe('orders exited (signal SIGKILL); restarting in 0.05 s (restart 1)');
    expect(await said(/^orders is back/)).toMatch(/^orders is back \(healthy after \d+\.\d+ s, down for \d+\.\d+ s\)$/);
    const after = supervisor.status();
    expect(after.orders).toEqual({ pid: expect.any(Number), port: specs[1]!.port, restarts: 1 });
    expect(after.orders!.pid).not.toBe(before.orders!.pid);
    expect(after.catalog).toEqual(before.catalog);
    expect((await fetch(specs[1]!.healthUrl)).status).toBe(200);
    // Tools saw it go and come back.
    expect(changes.some((status) => status.orders?.pid === undefined && status.orders?.restarts === 0)).toBe(true);
    expect(changes.at(-1)).toEqual(after);
    expect(lines.filter((line) => line.startsWith('[orders] listening'))).toHaveLength(2);
  });

  it('restarts a service that exits with code 0, since nobody asked it to stop', async () => {
    const exitFile = fileInTemporaryFolder('exit');
    const spec = await service('payments', { exitFile, exitCode: 0 });
    const { supervisor, said } = supervisorOf([spec]);
    await supervisor.start(spec);
    supervisor.supervise();
    writeFileSync(exitFile, '');
    expect(await said(/^payments exited/)).toBe('payments exited (code 0); restarting in 0.05 s (restart 1)');
    rmSync(exitFile);
    await said(/^payments is back/);
  });

  it('doubles the back-off with each crash and reports a service that keeps crashing, at every exit, retrying at the cap', async () => {
    const exitFile = fileInTemporaryFolder('exit');
    const spec = await service('shipping', { exitFile, exitCode: 1 });
    const { supervisor, lines, said } = supervisorOf([spec], { crashLoopExits: 3 });
    await supervisor.start(spec);
    supervisor.supervise();
    // From now on every restart exits at once.
    writeFileSync(exitFile, '');

    await waitFor('two crash-loop reports', () => (lines.filter((line) => line.startsWith('shipping keeps crashing')).length >= 2 ? true : undefined), 60_000);
    expect(lines.filter((line) => line.startsWith('shipping exited')).slice(0, 4)).toEqual([
      'shipping exited (code 1); restarting in 0.05 s (restart 1)',
      'shipping exited (code 1); restarting in 0.10 s (restart 2)',
      // The third exit within the window: straight to the cap.
      'shipping exited (code 1); restarting in 0.40 s (restart 3)',
      'shipping exited (code 1); restarting in 0.40 s (restart 4)',
    ]);
    expect(await said(/keeps crashing/)).toBe('shipping keeps crashing: 3 exits in 60 s, last exit code 1; see its output above. Retrying every 0.4 s until it stays up.');
    // Still trying: it comes back once whatever made it crash is gone.
    rmSync(exitFile);
    await said(/^shipping is back/);
  });

  it('starts the back-off again from its first delay after a service stayed healthy long enough', async () => {
    // Up for 3 s each time, judged healthy within the first 2 s even on a loaded machine.
    const spec = await service('inventory', { exitAfterMs: 3000, exitCode: 1 });
    const { supervisor, lines } = supervisorOf([spec], { resetAfterMs: 1000 });
    await supervisor.start(spec);
    supervisor.supervise();
    await waitFor('three exits', () => (lines.filter((line) => line.startsWith('inventory exited')).length >= 3 ? true : undefined), 60_000);
    expect(lines.filter((line) => line.startsWith('inventory exited')).slice(0, 3)).toEqual([
      'inventory exited (code 1); restarting in 0.05 s (restart 1)',
      'inventory exited (code 1); restarting in 0.05 s (restart 2)',
      'inventory exited (code 1); restarting in 0.05 s (restart 3)',
    ]);
  });

  it('kills a restarted service that never becomes healthy, and counts it as a crash', async () => {
    const healthyFile = fileInTemporaryFolder('healthy');
    writeFileSync(healthyFile, '');
    const spec = await service('accounts', { healthyFile });
    const { supervisor, said } = supervisorOf([spec], { healthTimeoutMs: 1_000 });
    await supervisor.start(spec);
    supervisor.supervise();
    rmSync(healthyFile);

    process.kill(supervisor.status().accounts!.pid!, 'SIGKILL');

    expect(await said(/did not become healthy/)).toBe('accounts did not become healthy within 1.0 s of its restart: killing it');
    expect(await said(/^accounts never became healthy/)).toBe('accounts never became healthy; restarting in 0.10 s (restart 2)');
    writeFileSync(healthyFile, '');
    await said(/^accounts is back/);
  });

  it('fails the start, restarting nothing, when a service exits while the platform is starting', async () => {
    const failing = await service('catalog', { exitAfterMs: 0, exitCode: 3 });
    const { supervisor, lines } = supervisorOf([failing]);
    await expect(supervisor.start(failing)).rejects.toThrow('catalog exited with code 3 while starting (see its output above)');
    expect(lines.some((line) => /restarting/.test(line))).toBe(false);
  });

  it('fails the start when a service that was already healthy exits before the platform is up', async () => {
    const exitFile = fileInTemporaryFolder('exit');
    const first = await service('accounts', { exitFile, exitCode: 1 });
    const second = await service('catalog', { healthyFile: `${exitFile}.never` });
    const { supervisor, lines } = supervisorOf([first, second]);
    await supervisor.start(first);
    writeFileSync(exitFile, '');
    await expect(supervisor.start(second)).rejects.toThrow('accounts exited with code 1 while the platform was starting (see its output above)');
    expect(() => supervisor.supervise()).toThrow(/accounts exited with code 1/);
    expect(lines.some((line) => /restarting/.test(line))).toBe(false);
  });

  it('cancels a restart waiting in its back-off when the platform stops', async () => {
    const spec = await service('orders');
    const { supervisor, lines, said } = supervisorOf([spec], { initialBackoffMs: 60_000, maxBackoffMs: 60_000 });
    await supervisor.start(spec);
    supervisor.supervise();
    process.kill(supervisor.status().orders!.pid!, 'SIGKILL');
    await said(/^orders exited \(signal SIGKILL\); restarting in 60\.0 s/);

    const stoppedAt = Date.now();
    await supervisor.stopAll();

    // Far less than the minute of back-off: nothing was waiting for it.
    expect(Date.now() - stoppedAt).toBeLessThan(30_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(supervisor.status().orders!.pid).toBeUndefined();
    expect(lines.filter((line) => line.startsWith('[orders] listening'))).toHaveLength(1);
  });

  it('stops the services newest first, each only after the one before it has stopped', async () => {
    const specs = [await service('accounts'), await service('catalog'), await service('gateway')];
    const { supervisor, lines } = supervisorOf(specs);
    for (const spec of specs) await supervisor.start(spec);
    supervisor.supervise();
    await supervisor.stopAll();
    expect(lines.filter((line) => / stopped \(/.test(line)).map((line) => line.split(' ')[0])).toEqual(['gateway', 'catalog', 'accounts']);
    // Stopped on request: nothing is restarted.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(lines.some((line) => /restarting/.test(line))).toBe(false);
  });
});
