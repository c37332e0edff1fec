/**
 * A PostgreSQL server of one test's own (initdb + pg_ctl from PATH, in a temporary folder, on a
 * free port), so that the test may stop and start it under running services: the server every
 * other test shares must never go away. Run as root, the server runs as the `postgres` user.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './processes.ts';

const run = promisify(execFile);

export interface PrivatePostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  serverUrl: string;
  /** Fast shutdown (`pg_ctl stop -m fast`): every session is terminated, as in a restart. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data, once it accepts connections. */
  start(): Promise<void>;
  /** Stops it and deletes its folder. */
  remove(): Promise<void>;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'private-pg-'));
  const dataDir = join(dir, 'data');
  const port = await freePort();
  const asRoot = userInfo().uid === 0;
  // PostgreSQL refuses to run as root: as the `postgres` user then, who must own the folder.
  const pgCommand = (command: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', command, ...args]) : run(command, args));
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: group } = await run('id', ['-g', 'postgres']);
    await chown(dir, Number(stdout.trim()), Number(group.trim()));
  }
  await chmod(dir, 0o700);
  const ctl = (...args: string[]) => pgCommand('pg_ctl', ['-D', dataDir, ...args]);
  const start = async () => {
    // The socket in its own folder: nothing shared with the machine's server.
    await ctl('start', '-w', '-t', '60', '-l', join(dir, 'server.log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=60 -c fsync=off`);
  };
  try {
    await pgCommand('initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    await start();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  let removed = false;
  return {
    serverUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => void (await ctl('stop', '-m', 'fast', '-w', '-t', '60')),
    start,
    async remove() {
      if (removed) return;
      removed = true;
      await ctl('stop', '-m', 'immediate', '-w', '-t', '60').catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
