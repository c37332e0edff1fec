import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type RunningPostgres } from '../platform/database/embedded.ts';
import { freePort, isListening, startProcess, type TestProcess } from './support/processes.ts';
import { waitFor } from './support/wait.ts';

async function query(url: string, sql: string): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('the embedded PostgreSQL', () => {
  const folders: string[] = [];
  const servers: RunningPostgres[] = [];
  const processes: TestProcess[] = [];
  const newFolder = (): string => {
    const folder = mkdtempSync(join(tmpdir(), 'commerce-embedded-test-'));
    // mkdtemp makes it 0700; run as root, the server runs as `postgres`, which must enter it.
    chmodSync(folder, 0o755);
    folders.push(folder);
    return folder;
  };
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.stop();
    for (const started of processes.splice(0)) {
      started.signalGroup('SIGKILL');
      await started.exited;
    }
    for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  });

  it('is started again, with its data, when it is killed, and says so', { timeout: 180_000 }, async () => {
    const lines: string[] = [];
    const server = await startEmbeddedPostgres({ dataDir: join(newFolder(), 'data'), port: await freePort(), ephemeral: true, onStatus: (line) => lines.push(line) });
    servers.push(server);
    await query(server.url, 'CREATE TABLE kept (id int); INSERT INTO kept VALUES (42)');
    const killed = server.pid!;

    process.kill(killed, 'SIGKILL');

    await waitFor('PostgreSQL back', () => lines.find((line) => line.startsWith('PostgreSQL is back')), 120_000);
    expect(lines[0]).toBe('PostgreSQL exited (signal SIGKILL); restarting in 0.25 s (restart 1)');
    expect(server.pid).not.toBe(killed);
    expect(server.restarts).toBe(1);
    expect(await query(server.url, 'SELECT id FROM kept')).toEqual([{ id: 42 }]);
  });

  it('is out of reach of a Ctrl-C to its starter’s process group, and stops when its starter is killed', { timeout: 180_000 }, async () => {
    const port = await freePort();
    const starter = startProcess(process.execPath, ['--import', 'tsx', 'test/support/embedded-postgres-child.ts', join(newFolder(), 'data'), String(port)], process.env);
    processes.push(starter);
    const pid = Number((await starter.waitForOutput(/^ready \d+$/, 120_000)).split(' ')[1]);
    const url = `postgres://postgres:commerce-embedded@127.0.0.1:${port}/postgres`;

    // What a terminal does on Ctrl-C: the whole foreground process group gets SIGINT.
    starter.signalGroup('SIGINT');
    await starter.waitForOutput(/^got SIGINT$/);
    expect(await query(url, 'SELECT 1 AS up')).toEqual([{ up: 1 }]);
    expect(isAlive(pid)).toBe(true);

    // Killed, the starter can stop nothing itself: the server must notice and stop on its own.
    starter.signalGroup('SIGKILL');
    await waitFor('the server to stop', () => (isAlive(pid) ? undefined : true), 60_000);
    expect(await isListening(port)).toBe(false);
  });
});
