/**
 * A nats-server of one test, with JetStream on a store directory of its own, so the test can stop
 * it, wipe its data and start it again (NATS restarted on a lost disk) without disturbing the
 * machine's NATS that other tests share. `dispose` kills it and removes the directory.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startProcess, type TestProcess } from './processes.ts';

export interface PrivateNats {
  url: string;
  /** Whether the server runs now. */
  readonly running: boolean;
  /** Stops it (SIGTERM: a clean shutdown, its store kept). */
  stop(): Promise<void>;
  /** Starts it again on the same port and store directory. */
  start(): Promise<void>;
  /** Stops it, deletes everything it stored, and starts it again empty on the same port. */
  restartWiped(): Promise<void>;
  dispose(): Promise<void>;
}

export async function startPrivateNats(): Promise<PrivateNats> {
  const port = await freePort();
  const storeDir = await mkdtemp(join(tmpdir(), 'private-nats-'));
  let server: TestProcess | undefined;
  const start = async () => {
    server = startProcess('/usr/sbin/nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], process.env);
    await server.waitForOutput(/Server is ready/, 20_000);
  };
  const stop = async () => {
    await server?.kill('SIGTERM');
    server = undefined;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    get running() {
      return server !== undefined;
    },
    stop,
    start,
    async restartWiped() {
      await stop();
      await rm(storeDir, { recursive: true, force: true });
      await mkdir(storeDir);
      await start();
    },
    async dispose() {
      await server?.kill('SIGKILL');
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
